"""A profile sample belongs to the innermost frame of the system's own code, else to the
library it is in (bench/spy.py)."""

from __future__ import annotations

from pathlib import Path

from bench.spy import FRAMEWORK, IDLE, KAFKA_CLIENT, summarize

ROOT = "_run_module_as_main (<frozen runpy>:198);<module> (funnelpulse/cli.py:153)"
LOOP = f"{ROOT};run_worker (funnelpulse/worker.py:59);BaseEventLoop._run_once (asyncio/base_events.py:1922)"  # noqa: E501


def test_the_innermost_own_frame_decides() -> None:
    changelog = (f"{LOOP};FunnelPulse._intake (streams/app.py:237);"
                 "PaneGroups.flush (streams/pane_groups.py:90);send_changelog (streams/table_state.py:40);"  # noqa: E501
                 "AIOKafkaProducer.send (aiokafka/producer/producer.py:500) 3")  # fmt: skip
    validate = (f"{LOOP};FunnelPulse._take_input (streams/app.py:270);"
                "decode_message (streams/events.py:300) 2")  # fmt: skip
    total, parts = summarize(f"{changelog}\n{validate}\n")
    assert total == 5
    assert parts == {"table writes + changelog": 3, "decode + validate events": 2}


def test_stacks_without_own_code_are_library_time() -> None:
    text = "\n".join([
        f"{LOOP};Consumer._drain_messages (faust/transport/consumer.py:1220);Service.wait_first (mode/services.py:777) 4",  # noqa: E501
        f"{LOOP};Fetcher._fetcher (faust/transport/consumer.py:1100);AIOKafkaConsumer.getmany (aiokafka/consumer/consumer.py:1200) 2",  # noqa: E501
        f"{LOOP};EpollSelector.select (selectors.py:468) 1",
        "Stream._c_aiter (faust/streams.py:1180) 1",  # a partial stack (--nonblocking)
        "not a sample line",
    ])  # fmt: skip
    total, parts = summarize(text)
    assert total == 8
    assert parts == {FRAMEWORK: 5, KAFKA_CLIENT: 2, IDLE: 1}


def test_the_entry_points_under_every_stack_are_no_part() -> None:
    assert summarize(f"{ROOT};run_worker (funnelpulse/worker.py:59) 1")[1] == {FRAMEWORK: 1}


def test_restarted_processes_profiles_join_the_drains(tmp_path: Path) -> None:
    from bench.results import RestartRep, RestartResult
    from bench.run import profiles

    path = tmp_path / "restart.txt"
    path.write_text(f"{LOOP};EpollSelector.select (selectors.py:468) 3\n")
    result = RestartResult("rocksdb", 16, reps=[RestartRep(profile=None),
                                                RestartRep(profile=str(path))])  # fmt: skip
    (found,) = profiles([], [result])
    assert (found.title, found.samples, found.parts) == ("restart rocksdb 16×, rep 2", 3, {IDLE: 3})
