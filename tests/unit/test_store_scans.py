"""The readers that scan a table's state (applied high waters, recovery re-sends, the
publisher's index, channel labels, state sizes) go through the store seam partition by
partition, and read the same from Faust's memory store and from RocksDB."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from prometheus_client import CollectorRegistry

from funnelpulse.settings import Settings
from metrics.counts import WIDTH
from metrics.prometheus import Metrics
from metrics.windows import window_specs
from streams.campaign_channels import CampaignChannels, ChannelTally, campaign_partition
from streams.local_store import local_store
from streams.pane_groups import (
    MERGED,
    PARTIAL,
    SENT_MARK,
    PaneGroups,
    block_of,
    encode_group,
)
from streams.partial_counts import MARK_EVERY, RESEND_GROUPS, PartialCounts
from streams.progress import Progress
from streams.publisher import Assignment, KpiPublisher, Outputs
from streams.stage import Stage
from streams.table_state import PartitionState
from streams.tables import Tables

from .stores import Changelog, assign, rocks_table, settle, tp

COUNTS = [2] + [0] * (WIDTH - 1)
SPECS = window_specs(["1h"])
HORIZON = 35 * 86_400.0


@pytest.fixture(params=["memory", "rocksdb"])
def make_table(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Makes a table of the kind under test (value_type=bytes, as all but customers)."""
    if request.param == "memory":
        return lambda name: SimpleNamespace(data={})
    app = faust.App("scans", store="rocksdb://", datadir=str(tmp_path))
    return lambda name: rocks_table(app, name, value_type=bytes)


def partial_counts(
    partials: Any, dedup: Any, active: Callable[[int], bool] = lambda partition: True
) -> PartialCounts:
    return PartialCounts(
        Stage.INTAKE, partials, dedup, horizon=HORIZON, pane_sizes=[60], max_future=60.0,
        dedup_horizon=3600.0, dedup_max_ids=1000, metrics=Metrics(CollectorRegistry(), 10),
        channels=ChannelTally(), active=active,
    )  # fmt: skip


async def recover(counts: PartialCounts) -> None:
    """A recovery, then snapshot ticks until its walk of the stored groups is done."""
    await counts.on_partials_recovered()
    while counts.walks:
        counts.read_stored()


async def stored(table: Any, changelog: Changelog, panes: dict[int, dict[Any, Any]]) -> None:
    """Writes ``partition → pane key → value`` as a batch does, and acks the changelog."""
    for partition, values in panes.items():
        view = PaneGroups(table, partition, PARTIAL)
        for key, value in values.items():
            view[key] = value
        await view.flush()
        view.close()
    changelog.ack()
    await settle()


async def test_high_waters_are_read_per_partition_from_its_panes(
    make_table: Any, changelog: Changelog
) -> None:
    partials = make_table("partials")
    await stored(partials, changelog, {
        0: {("all", 60, 0): [COUNTS, {"0": 7, "1": 3}], ("all", 60, 60): [COUNTS, {"0": 9}]},
        1: {("all", 60, 0): [COUNTS, {"0": 100}]},
    })  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    assert (counts.applied_offset(0, 0), counts.applied_offset(0, 1)) == (9, 3)
    assert counts.applied_offset(0, 5) == -1
    assert {partition for partition, _topic in counts.applied} == {0}  # 1 not read yet
    assert counts.applied_offset(1, 0) == 100


async def test_recovery_resends_every_group_active_here_and_rereads_the_high_waters(
    make_table: Any, changelog: Changelog
) -> None:
    partials = make_table("partials")
    await stored(partials, changelog, {
        0: {("all", 60, 0): [COUNTS, {"0": 7}], ("all", 60, 3600): [COUNTS, {"0": 8}]},
        1: {("campaign:a", 60, 0): [COUNTS, {"0": 1}]},
        2: {("campaign:b", 60, 0): [COUNTS, {"0": 1}]},
    })  # fmt: skip
    actives = {0, 1, 2}
    counts = partial_counts(partials, make_table("dedup"), active=actives.__contains__)
    assert counts.applied_offset(0, 0) == 8
    restored = encode_group(PARTIAL, {0: [COUNTS, {"0": 50}]}, 60, 0)
    local_store(partials).apply(0, {"0|all|60|0": restored}, 12)  # as Faust's recovery does
    actives.discard(2)  # a standby copy now: its owner snapshots it
    await recover(counts)
    assert counts.resending == 3
    actives.discard(1)  # moved away before its re-send went out
    assert counts.take_changed() == ({}, {0: {("all", 60, 0), ("all", 60, block_of(60, 3600))}})
    assert counts.resending == 0
    assert counts.applied_offset(0, 0) == 50


async def test_the_resend_goes_behind_new_changes_a_share_per_tick(
    make_table: Any, changelog: Changelog
) -> None:
    partials = make_table("partials")
    groups = RESEND_GROUPS + 10
    await stored(partials, changelog, {0: {
        (f"campaign:c{i}", 60, 0): [COUNTS, {"0": i}] for i in range(groups)
    }})  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    await recover(counts)
    counts.pending_groups[0].add(("campaign:new", 60, 0))  # a batch changed it meanwhile
    _panes, first = counts.take_changed()
    assert ("campaign:new", 60, 0) in first[0] and len(first[0]) == RESEND_GROUPS + 1
    _panes, second = counts.take_changed()
    assert len(second[0]) == 10 and not first[0] - {("campaign:new", 60, 0)} & second[0]
    assert counts.take_changed() == ({}, {}) and counts.resending == 0


async def test_a_recovered_partition_is_read_a_slice_per_tick_and_counted_by_marks_meanwhile(
    make_table: Any, changelog: Changelog
) -> None:
    """Until the walk of its stored groups is done, a recovered partition has no high
    water (every message goes against each pane's mark); then the walk's high waters,
    completed with what was counted meanwhile. RocksDB is walked in slices; Faust's
    memory store has no order to resume in and is read in one."""
    partials = make_table("partials")
    await stored(partials, changelog, {0: {
        (f"campaign:c{i:02}", 60, 0): [COUNTS, {"0": i}] for i in range(30)
    }})  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    await counts.on_partials_recovered()
    assert counts.applied_offset(0, 0) is None and counts.resending == 0
    counts.read_stored(seconds=0, slice_groups=10)
    sliced = not isinstance(partials, SimpleNamespace)
    assert (counts.applied_offset(0, 0) is None) is sliced
    assert counts.resending == (10 if sliced else 30)
    counts.counted[(0, 0)] = 40  # a batch counted meanwhile
    counts.counted[(0, 1)] = 2
    counts.read_stored(seconds=60, slice_groups=10)  # slices until done, in one tick
    assert not counts.walks
    assert counts.resending == 30
    expected = (40, 2) if sliced else (29, -1)  # memory: read whole before the counts
    assert (counts.applied_offset(0, 0), counts.applied_offset(0, 1)) == expected


async def test_the_mark_holds_what_was_counted_since_the_recovery_or_was_stored(
    make_table: Any, changelog: Changelog
) -> None:
    """Not the stored high waters: a message re-delivered at or below them may still
    change a pane its crashed first count did not reach, after the mark was taken."""
    partials = make_table("partials")
    await stored(partials, changelog, {0: {
        ("campaign:a", 60, 0): [COUNTS, {"0": 9, "1": 4}],
    }})  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    await recover(counts)
    counts.take_changed()
    assert counts.sent_through() == {}  # nothing counted here yet, no mark stored
    counts.counted[(0, 0)] = 6  # a re-delivered message, below the stored 9
    assert counts.sent_through() == {0: {"0": 6}}
    mark: PartitionState[bytes] = PartitionState(partials, 0)
    mark[SENT_MARK] = b'{"0":3,"1":4}'  # as a snapshot tick stores it
    await mark.flush()
    changelog.ack()
    await settle()
    await recover(counts)
    counts.take_changed()
    assert counts.sent_through() == {0: {"0": 3, "1": 4}}
    counts.counted[(0, 0)] = 5
    assert counts.sent_through() == {0: {"0": 5, "1": 4}}


def delivered_future(ok: bool = True) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if ok:
        future.set_result(SimpleNamespace(offset=0))
    else:
        future.set_exception(RuntimeError("broker said no"))
    return future


async def snapshot_tick(counts: PartialCounts, sends: list[Any], now: float) -> None:
    """What PartialSnapshots does of the mark in one tick (its sends made by the test)."""
    await counts.store_marks(now)
    counts.take_changed()
    counts.snapshot_sent(counts.sent_through(), sends)


async def test_recovery_resends_only_the_groups_above_the_sent_mark(
    make_table: Any, changelog: Changelog
) -> None:
    """A snapshot tick's high waters become the partition's sent mark once its sends are
    delivered (not before); the next recovery re-sends only the groups holding a pane
    above it, a topic the mark lacks included."""
    partials = make_table("partials")
    await stored(partials, changelog, {0: {
        ("campaign:a", 60, 0): [COUNTS, {"0": 5}],
        ("campaign:b", 60, 0): [COUNTS, {"0": 9}],
    }})  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    await recover(counts)
    assert counts.resending == 2  # no mark yet: every group
    counts.counted[(0, 0)] = 9  # as if re-delivered and counted since the recovery
    now = time.monotonic() + MARK_EVERY
    pending = asyncio.get_running_loop().create_future()
    await snapshot_tick(counts, [pending], now)  # the whole re-send goes out
    assert not counts.marks_due(now)  # not delivered yet
    pending.set_result(SimpleNamespace(offset=3))
    assert counts.marks_due(now)
    await snapshot_tick(counts, [], now)
    assert not counts.marks_due(now + MARK_EVERY)  # stored; nothing newer
    changelog.ack()
    await settle()
    assert orjson.loads(local_store(partials).get(0, f"0|{SENT_MARK}")) == {"0": 9}
    assert len(list(PaneGroups(partials, 0, PARTIAL).group_keys())) == 2  # not a group
    await stored(partials, changelog, {0: {  # counted after the mark
        ("campaign:c", 60, 0): [COUNTS, {"0": 12}],
        ("campaign:d", 60, 0): [COUNTS, {"0": 2, "1": 0}],  # topic 1: not in the mark
    }})  # fmt: skip
    await recover(counts)
    assert counts.resend == {0: {("campaign:c", 60, 0), ("campaign:d", 60, 0)}}
    assert (counts.applied_offset(0, 0), counts.applied_offset(0, 1)) == (12, 0)


async def test_no_mark_moves_past_a_resend_under_way_or_after_a_failed_send(
    make_table: Any, changelog: Changelog
) -> None:
    partials = make_table("partials")
    await stored(partials, changelog, {0: {
        (f"campaign:c{i}", 60, 0): [COUNTS, {"0": i}] for i in range(RESEND_GROUPS + 10)
    }})  # fmt: skip
    counts = partial_counts(partials, make_table("dedup"))
    await recover(counts)
    now = time.monotonic() + MARK_EVERY
    counts.counted[(0, 0)] = RESEND_GROUPS + 9  # counted since the recovery
    counts.take_changed()  # the first share: 10 groups still wait
    assert counts.sent_through() == {}
    counts.snapshot_sent({}, [delivered_future()])
    counts.take_changed()  # the rest
    assert counts.sent_through() == {0: {"0": RESEND_GROUPS + 9}}
    counts.snapshot_sent(counts.sent_through(), [delivered_future(ok=False)])
    assert not counts.marks_due(now)
    counts.snapshot_sent({0: {"0": RESEND_GROUPS + 9}}, [delivered_future()])
    assert not counts.marks_due(now)  # a process whose snapshot failed writes none


async def test_ticks_are_delivered_oldest_first(make_table: Any, changelog: Changelog) -> None:
    """Acks of different merge partitions come in any order: a later tick's mark waits
    for every earlier tick's sends."""
    partials = make_table("partials")
    await stored(partials, changelog, {0: {("all", 60, 0): [COUNTS, {"0": 4}]}})
    counts = partial_counts(partials, make_table("dedup"))
    await recover(counts)
    now = time.monotonic() + MARK_EVERY
    first = asyncio.get_running_loop().create_future()
    counts.take_changed()
    counts.snapshot_sent({0: {"0": 4}}, [first])
    counts.snapshot_sent({0: {"0": 4}}, [delivered_future()])
    assert not counts.marks_due(now)
    first.set_result(SimpleNamespace(offset=0))
    assert counts.marks_due(now)


def publisher(merged: Any, channels: Any) -> KpiPublisher:
    return KpiPublisher(
        Settings(), specs=SPECS, metrics=Metrics(CollectorRegistry(), 10), clock=lambda: 0.0,
        merged=merged, merged_groups=lambda p: PaneGroups(merged, p, MERGED),
        outputs=Outputs(None, None), campaign_channels=CampaignChannels(channels, 4),
        progress=Progress.__new__(Progress), assignment=Assignment(list, lambda: False),
        state_sizes=dict,
    )  # fmt: skip


async def test_the_publisher_indexes_its_partitions_only_and_reads_merges_not_yet_acked(
    make_table: Any, changelog: Changelog
) -> None:
    """The merge stage writes through before its changelog records are acked; the publish
    tick in between must read the new groups (a RocksDB store holds them in memory)."""
    merged = make_table("merged")
    for partition, scope in ((0, "all"), (2, "campaign:x")):
        view = PaneGroups(merged, partition, MERGED)
        view[(scope, 60, 0)] = {"i0": [1, COUNTS]}
        view.write_through()
    kpis = publisher(merged, make_table("channels"))
    kpis._index_partitions({0})
    assert set(kpis.index) == {"all"} and list(kpis.backfill) == ["all"] and not kpis.dirty
    assert kpis.pane_totals("all") == {(60, 0): COUNTS}


async def test_the_publisher_waits_for_a_whole_assignment_before_indexing(
    tmp_path: Path,
) -> None:
    """A fresh app's group may assign the merge partitions before a table's changelog
    topic is in the metadata (the channels table here): reading that table's partition
    raised ``NotHeld`` from the publish timer and stopped the worker. The publisher
    leaves the partition for a later tick instead, and indexes it once it is whole."""
    app = faust.App("whole", store="rocksdb://", datadir=str(tmp_path))
    merged = rocks_table(app, "merged", actives=[0], value_type=bytes)
    channels = rocks_table(app, "channels", actives=[], value_type=bytes)
    view = PaneGroups(merged, 0, MERGED)
    view[("all", 60, 0)] = {"i0": [1, COUNTS]}
    view.write_through()
    kpis = publisher(merged, channels)
    kpis.actives = lambda: [tp(merged, 0)]

    kpis._follow_ownership()
    assert kpis.owned == set()  # not raised, and not taken as done either
    assert not kpis.index and not kpis.backfill  # nothing half-indexed left to publish

    assign(app, channels, actives=[0])
    kpis._follow_ownership()
    assert kpis.owned == {0} and "all" in kpis.index and "all" in kpis.backfill
    kpis.rebuild_index()  # the end of a recovery: the same, now whole
    assert kpis.owned == {0} and "all" in kpis.index


async def test_the_publisher_says_how_many_scopes_wait_for_redis(
    make_table: Any, changelog: Changelog
) -> None:
    """Redis trails the counters while scopes queue (at most 2,000 published a tick):
    ``funnelpulse_publish_pending_scopes`` tells that backlog from a lost count."""
    merged = make_table("merged")
    view = PaneGroups(merged, 0, MERGED)
    for scope in ("all", "campaign:a", "campaign:b"):
        view[(scope, 60, 0)] = {"i0": [1, COUNTS]}
    view.write_through()
    kpis = publisher(merged, make_table("channels"))
    kpis._index_partitions({0})
    kpis.dirty.add("campaign:new")
    kpis.redis_backlog = {"campaign:a", "campaign:b"}
    kpis._health_metrics()
    pending = {queue: kpis.metrics.registry.get_sample_value(
        "funnelpulse_publish_pending_scopes", {"queue": queue})
        for queue in ("due", "backfill", "redis_backlog")}  # fmt: skip
    assert pending == {"due": 1.0, "backfill": 3.0, "redis_backlog": 2.0}


async def test_channel_labels_load_from_the_partitions_taken_over(
    make_table: Any, changelog: Changelog
) -> None:
    channels = make_table("channels")
    owner = CampaignChannels(channels, partitions=4)
    await owner.add(campaign_partition("a", 4), {"a": {"email": 3, "video": 1}})
    await owner.add(campaign_partition("b", 4), {"b": {"video": 2}})
    changelog.ack()
    await settle()
    assert campaign_partition("a", 4) != campaign_partition("b", 4)
    restarted = CampaignChannels(channels, partitions=4)
    restarted.load({campaign_partition("a", 4)})
    assert restarted.label == {"a": "email"}


async def test_state_sizes_count_the_keys_held(make_table: Any, changelog: Changelog) -> None:
    table = make_table("partials")
    await stored(table, changelog, {1: {("all", 60, 960 * n): [COUNTS, {}] for n in range(5)}})
    sizes = Tables(*[table] * 8).sizes()
    assert len(sizes) == 8
    assert all(5 <= size <= 6 for size in sizes.values())  # RocksDB's estimate: + its offset


def test_a_tick_longer_than_the_interval_says_where_it_went(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = publisher(SimpleNamespace(data={}), SimpleNamespace(data={}))
    with caplog.at_level("WARNING", logger="funnelpulse.publisher"):
        p._say_if_slow(10.0, [("lag", 10.5), ("3 new", 10.6), ("201 republished", 11.4)])
        p._say_if_slow(20.0, [("lag", 20.1), ("3 new", 20.2)])  # within the 1 s interval
    assert caplog.messages == [
        "publish tick took 1.40 s: lag 0.50, 3 new 0.10, 201 republished 0.80"
    ]
