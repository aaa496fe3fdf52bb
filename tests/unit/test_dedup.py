"""Dedup records and index: persistence shape, rebuild, horizon sweep, size cap, and the
compact id index against a plain dict."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dedup import (
    Dedup,
    MessageDedup,
    RecordTimes,
    cutoff_for_cap,
    encode_record,
    persist,
    rebuild,
    record_entries,
    record_head,
    record_map,
    record_markers,
    sweep,
)
from streams.id_index import IdIndex, identity_digest, pack_marker, unpack_marker
from streams.table_state import PartitionState


class FakeTable:
    """A table with a plain dict store; changelog writes are recorded, not sent."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The changelog records written, instead of sending them."""
    records: list[tuple[str, Any]] = []

    async def fake_send(table: Any, partition: int, key: str, value: Any) -> None:
        records.append((key, value))

    monkeypatch.setattr("streams.table_state.send_changelog", fake_send)
    return records


def digest(name: str) -> int:
    return identity_digest(f"click:{name}")


def state_with(records: dict[str, tuple[float, int]]) -> PartitionState[Any]:
    table = FakeTable()
    state: PartitionState[Any] = PartitionState(table, 0)
    for key, (seen, n) in records.items():
        entries = [(digest(f"{key}-{i}"), pack_marker((0, 1, i)), None) for i in range(n)]
        table.data[f"0|{key}"] = encode_record(seen, entries)
    return state


# --- markers and digests --------------------------------------------------------------
@given(st.integers(0, 15), st.integers(0, 2**44 - 1), st.integers(0, 2**16 - 1))
def test_markers_pack_and_unpack(topic: int, offset: int, index: int) -> None:
    packed = pack_marker((topic, offset, index))
    assert 0 <= packed < 2**64
    assert unpack_marker(packed) == (topic, offset, index)


@pytest.mark.parametrize("marker", [(16, 0, 0), (0, 2**44, 0), (0, 0, 2**16), (0, -1, 0)])
def test_a_marker_that_does_not_fit_is_refused(marker: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pack_marker(marker)


@given(st.text())
def test_digests_are_64_bits_and_never_the_reserved_values(identity: str) -> None:
    assert 1 < identity_digest(identity) < 2**64


def test_digests_do_not_depend_on_the_process() -> None:
    """Records hold digests: a restarted worker must compute the same ones."""
    import subprocess
    import sys

    code = "from streams.id_index import identity_digest as d; print(d('click:e1'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345"})  # fmt: skip
    assert int(other.stdout) == identity_digest("click:e1")


# --- the id index ---------------------------------------------------------------------
OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "remove", "remove_other"]), st.integers(2, 3000), st.integers(0, 5)
    ),
    max_size=3000,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_the_id_index_behaves_as_a_dict(ops: list[tuple[str, int, int]]) -> None:
    """Puts, removes and removes of a value no longer held, with growth and DELETED marks;
    keys share low bits often (they are small), so probing chains are long."""
    index, model = IdIndex(), {}
    for op, key, value in ops:
        if op == "put":
            index.put(key, value)
            model[key] = value
        elif op == "remove":
            assert index.remove(key, value) == (model.get(key) == value)
            if model.get(key) == value:
                del model[key]
        else:
            assert not index.remove(key, value + 100)
        assert len(index) == len(model)
    assert dict(index.items()) == model
    assert all(index.get(k) == v for k, v in model.items())
    assert index.get(3001) is None


def test_the_id_index_stays_between_a_third_and_seven_tenths_full() -> None:
    index = IdIndex()
    grown = [index.slots]
    for key in range(2, 100_002):
        index.put(key * 0x9E3779B97F4A7C15 % 2**64 | 2, key)
        assert len(index) <= 0.7 * index.slots
        if index.slots != grown[-1]:
            grown.append(index.slots)
    assert grown == [1024 << n for n in range(9)]  # doubling each time, never 4x
    assert index.slots == 262_144  # 100,000 ids: 38 % full
    for key in range(2, 100_002):
        assert index.remove(key * 0x9E3779B97F4A7C15 % 2**64 | 2, key)
    index.put(5, 5)  # DELETED marks are dropped when they fill the table
    assert len(index) == 1


# --- records ----------------------------------------------------------------------------
def test_a_record_holds_digests_markers_and_attributions() -> None:
    entries = [(digest("a"), pack_marker((0, 7, 0)), None),
               (digest("b"), pack_marker((7, 9, 3)), ("spring", "email"))]  # fmt: skip
    raw = encode_record(99.5, entries)
    assert record_head(raw) == (99.5, 2)
    assert list(record_entries(raw)) == entries
    assert len(encode_record(1.0, [(digest("a"), 1, None)])) == 12 + 16


ENTRIES = st.lists(
    st.tuples(
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**63 - 1),
        st.none() | st.tuples(st.text(max_size=5), st.sampled_from(["email", "paid_search"])),
    ),
    max_size=40,
)


@given(ENTRIES)
def test_a_record_read_whole_is_its_entries_read_one_by_one(entries: Any) -> None:
    """``record_map`` and ``record_markers`` (the disk index's readers, in C loops) say what
    ``record_entries`` says, a repeated digest's last entry winning."""
    raw = encode_record(1.0, entries)
    one_by_one = {d: (p, a) for d, p, a in record_entries(raw)}
    assert record_map(raw) == one_by_one
    assert record_markers(raw) == {d: p for d, (p, _a) in one_by_one.items()}


def test_rebuild_indexes_every_identity() -> None:
    state = state_with({"0:1": (10.0, 3), "0:2": (20.0, 2)})
    dedup = rebuild(state)
    assert len(dedup) == 5
    assert dedup.ids.get(digest("0:1-2")) == pack_marker((0, 1, 2))


def test_rebuild_keeps_the_first_record_of_an_id_and_its_attribution() -> None:
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    state["a"] = encode_record(1.0, [(digest("x"), 11, ("spring", "email"))])
    state["b"] = encode_record(2.0, [(digest("x"), 22, ("autumn", "social"))])
    dedup = rebuild(state)
    assert dedup.ids.get(digest("x")) == 11
    assert dedup.attributions == {digest("x"): ("spring", "email")}


def test_cutoff_is_the_horizon_under_the_cap() -> None:
    state = state_with({"a": (10.0, 3), "b": (20.0, 3)})
    assert cutoff_for_cap(rebuild(state).times, 6, cap=10, before=5.0) == 5.0


def test_cutoff_drops_oldest_records_until_under_the_cap() -> None:
    state = state_with({"a": (10.0, 3), "b": (20.0, 3), "c": (30.0, 3)})
    cut = cutoff_for_cap(rebuild(state).times, 9, cap=5, before=0.0)
    assert 20.0 < cut < 30.0  # a and b go (6 ids), c stays


def test_cutoff_counts_records_already_past_the_horizon() -> None:
    state = state_with({"old": (1.0, 4), "a": (10.0, 3), "b": (20.0, 3)})
    cut = cutoff_for_cap(rebuild(state).times, 10, cap=6, before=5.0)
    assert cut == 5.0  # dropping "old" (past the horizon) is enough


async def test_sweep_forgets_records_and_their_ids(sent: list[tuple[str, Any]]) -> None:
    state = state_with({"a": (10.0, 2), "b": (30.0, 2)})
    dedup = rebuild(state)
    dropped = await sweep(state, dedup, before=20.0)
    assert dropped == 2
    assert {k for k, _ in dedup.ids.items()} == {digest("b-0"), digest("b-1")}
    assert sent == [("0|a", None)]  # a tombstone for the forgotten record


async def test_sweep_keeps_an_id_a_newer_record_holds(sent: list[tuple[str, Any]]) -> None:
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    state["old"] = encode_record(1.0, [(digest("x"), 11, ("spring", "email"))])
    dedup = rebuild(state)
    dedup.ids.put(digest("x"), 22)  # seen again later at another marker (a lost record)
    dedup.attributions[digest("x")] = ("autumn", "social")
    assert await sweep(state, dedup, before=5.0) == 0
    assert dedup.ids.get(digest("x")) == 22
    assert dedup.attributions == {digest("x"): ("autumn", "social")}


async def test_persist_writes_one_record_per_batch(sent: list[tuple[str, Any]]) -> None:
    state: PartitionState[Any] = PartitionState(FakeTable(), 3)
    dedup = MessageDedup(Dedup())
    dedup.add(digest("e1"), (0, 7, 0), None)
    dedup.add(digest("e2"), (0, 7, 1), ("c", "email"))
    await persist(state, "0:7", dedup, now=99.0)
    assert [key for key, _ in sent] == ["3|0:7"]
    assert list(record_entries(sent[0][1])) == [
        (digest("e1"), pack_marker((0, 7, 0)), None),
        (digest("e2"), pack_marker((0, 7, 1)), ("c", "email")),
    ]


async def test_a_large_batch_is_persisted_in_records_far_below_the_message_limit(
    sent: list[tuple[str, Any]],
) -> None:
    """40,000 sign-ups in one batch once made one record the broker refused."""
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    dedup = MessageDedup(Dedup())
    for i in range(2_500):
        dedup.add(identity_digest(f"signup:{i}"), (3, 9, i), ("c" * 200, "email"))
    await persist(state, "3:9", dedup, now=5.0)
    assert sorted(key for key, _ in sent) == ["0|3:9", "0|3:9/1", "0|3:9/2"]
    assert all(len(value) < 512 * 1024 for _, value in sent)
    rebuilt = rebuild(state)
    assert sorted(rebuilt.ids.items()) == sorted((d, p) for d, p, _ in dedup.new)
    assert len(rebuilt.attributions) == 2_500


# --- the sweep reads only what it drops ----------------------------------------------
@pytest.mark.parametrize("key", ["0:0", "3:9", "15:17592186044415", "3:9/2", "a", "0:x", "1:2/0"])
def test_record_times_keep_any_key(key: str) -> None:
    times = RecordTimes()
    times.add(5.0, key, 3)
    assert list(times.oldest()) == [(5.0, 3, key)]
    assert times.first_seen() == 5.0
    assert times.pop() == key
    assert len(times) == 0 and times.first_seen() is None


def test_record_times_compact_as_they_are_popped() -> None:
    times = RecordTimes()
    for i in range(5000):
        times.add(float(i), f"0:{i}", 1)
    for i in range(4000):
        assert times.pop() == f"0:{i}"
    assert len(times) == 1000
    assert [key for _, _, key in times.oldest()][:2] == ["0:4000", "0:4001"]
    assert len(times._seen) < 5000  # the popped entries were let go


async def test_the_sweep_reads_only_the_records_due(
    sent: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a week of records, a scan of all of them every minute was seconds of event
    loop; the sweep now reads the records it drops and nothing else."""
    state = state_with({f"0:{i}": (float(i), 1) for i in range(1000)})
    dedup = rebuild(state)
    read: list[str] = []
    get = PartitionState.get

    def spy(self: Any, key: str, default: Any = None) -> Any:
        read.append(key)
        return get(self, key, default)

    monkeypatch.setattr(PartitionState, "get", spy)
    assert await sweep(state, dedup, before=10.0) == 10
    assert sorted(read) == sorted(f"0:{i}" for i in range(10))
    assert len(dedup) == 990 and len(dedup.times) == 990


async def test_a_replayed_batch_never_writes_over_the_first_record(
    sent: list[tuple[str, Any]],
) -> None:
    """A batch replayed after a crash starts at the same position but holds other
    messages: its new ids go into a record of their own. Written over the first record
    (as once), e1 vanished from the changelog and a later copy of it counted again."""
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    dedup = Dedup()
    first = MessageDedup(dedup)
    first.add(digest("e1"), (0, 7, 0), None)
    await persist(state, "0:7", first, now=10.0)
    again = MessageDedup(dedup)  # the replay: e1 is a replay, e2 (a later message) is new
    again.add(digest("e2"), (0, 8, 0), None)
    await persist(state, "0:7", again, now=50.0)
    assert [key for key, _ in sent] == ["0|0:7", "0|0:7/1"]
    rebuilt = rebuild(state)  # what a restart or a new standby reads from the changelog
    assert rebuilt.ids.get(digest("e1")) == pack_marker((0, 7, 0))
    assert rebuilt.ids.get(digest("e2")) == pack_marker((0, 8, 0))
    want = [(10.0, 1, "0:7"), (50.0, 1, "0:7/1")]
    assert list(dedup.times.oldest()) == want == list(rebuilt.times.oldest())
    assert await sweep(state, dedup, before=20.0) == 1  # each record goes at its own time
    assert "0:7" not in state and "0:7/1" in state


async def test_persist_and_rebuild_agree_on_record_times(sent: list[tuple[str, Any]]) -> None:
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    dedup = Dedup()
    for n, now in ((3, 1.0), (1200, 2.0), (1, 3.0)):
        batch = MessageDedup(dedup)
        for i in range(n):
            batch.add(digest(f"{now}-{i}"), (1, int(now), i), None)
        await persist(state, f"1:{int(now)}", batch, now=now)
    want = [(1.0, 3, "1:1"), (2.0, 1000, "1:2"), (2.0, 200, "1:2/1"), (3.0, 1, "1:3")]
    assert list(dedup.times.oldest()) == want
    assert list(rebuild(state).times.oldest()) == want
