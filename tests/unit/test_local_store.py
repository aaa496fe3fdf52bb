"""The store seam (streams/local_store.py): the RocksDB store keeps Faust's format, takes a
write only once the changelog has it, and the table views read the same through either
store. RocksDB is real (rocksdict, through a real Faust store in a temporary directory);
the producer is a fake whose futures the test resolves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from metrics.counts import WIDTH
from streams.local_store import OFFSET_KEY, MemoryStore, NotHeld, RocksStore, local_store
from streams.pane_groups import PARTIAL, PaneGroups
from streams.table_state import PartitionState

from .stores import Changelog, assign, rocks_table, settle, tp

PANE = [[1] + [0] * (WIDTH - 1), {"0": 5}]


def test_one_rocks_store_per_table_and_a_dict_view_per_memory_table(
    rocks_app: faust.App,
) -> None:
    table = rocks_table(rocks_app, value_type=bytes)
    assert local_store(table) is local_store(table)
    assert isinstance(local_store(table), RocksStore)
    assert isinstance(local_store(SimpleNamespace(data={})), MemoryStore)


class _Unequal:
    """A Faust store stand-in whose ``==`` fails: Faust's stores are Mappings, and their
    ``==`` scans and decodes the whole database."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise AssertionError("a store was compared by equality")

    def _db_for_partition(self, partition: int) -> Any:
        raise NotImplementedError


def test_the_table_s_store_is_found_by_identity_never_by_equality() -> None:
    table = SimpleNamespace(data=_Unequal())
    assert local_store(table) is local_store(table)
    other = SimpleNamespace(data=_Unequal())
    assert local_store(other) is not local_store(table)


async def test_a_write_reaches_the_disk_with_its_offset_once_acked(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, value_type=bytes)
    state: PartitionState[bytes] = PartitionState(table, 2)
    state["a"] = b"one"
    await state.flush()
    db = table.data._db_for_partition(2)
    assert state["a"] == b"one"  # read from the overlay
    assert db.get(orjson.dumps("2|a")) is None
    assert table.data.persisted_offset(tp(table, 2)) is None
    changelog.ack()
    await settle()
    assert db.get(orjson.dumps("2|a")) == b"one"  # Faust's format: JSON key, raw value
    assert db.get(OFFSET_KEY) == b"0"
    assert table.data.persisted_offset(tp(table, 2)) == 0
    store = local_store(table)
    assert isinstance(store, RocksStore) and not store.overlay[2]  # the overlay emptied


async def test_the_offset_never_passes_a_record_not_on_disk(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """Two flushes of a partition: the second's records acked alone would claim the
    first's offsets too; nothing is written until everything before is acked."""
    table = rocks_table(rocks_app, value_type=bytes)
    first: PartitionState[bytes] = PartitionState(table, 0)
    first["a"], first["b"] = b"1", b"2"
    await first.flush()
    second: PartitionState[bytes] = PartitionState(table, 0)
    second["c"] = b"3"
    await second.flush()
    changelog.sent[2][3].set_result(SimpleNamespace(offset=2))  # the second flush's record
    await settle()
    assert table.data.persisted_offset(tp(table, 0)) is None
    changelog.sent[0][3].set_result(SimpleNamespace(offset=0))
    changelog.sent[1][3].set_result(SimpleNamespace(offset=1))
    await settle()
    assert table.data.persisted_offset(tp(table, 0)) == 2
    assert sorted(local_store(table).keys(0)) == ["0|a", "0|b", "0|c"]


async def test_keys_one_at_a_time_are_the_keys_with_the_overlay_over_the_disk(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """``iter_keys`` (the eviction walk's) reads what ``keys`` does: records on disk, but
    for those the overlay has deleted, and the overlay's new keys."""
    table = rocks_table(rocks_app, value_type=bytes)
    first: PartitionState[bytes] = PartitionState(table, 0)
    first["a"], first["b"] = b"1", b"2"
    await first.flush()
    changelog.ack()
    await settle()
    second: PartitionState[bytes] = PartitionState(table, 0)
    del second["a"]
    second["c"] = b"3"
    await second.flush()  # not acked: both changes wait in the overlay
    store = local_store(table)
    assert sorted(store.iter_keys(0)) == sorted(store.keys(0)) == ["0|b", "0|c"]


async def test_a_walk_in_slices_reads_every_record_once_and_the_overlay_first(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """``walk`` (a recovery's read of the stored groups, a slice per tick): in key order,
    resumed after the last key read, with the writes not on disk yet in the first slice;
    a record written between slices is read if its key comes after the last one read."""
    table = rocks_table(rocks_app, value_type=bytes)
    first: PartitionState[bytes] = PartitionState(table, 0)
    for i in range(7):
        first[f"k{i}"] = str(i).encode()
    await first.flush()
    changelog.ack()
    await settle()
    pending: PartitionState[bytes] = PartitionState(table, 0)
    pending["new"] = b"n"
    await pending.flush()  # not acked: in the overlay
    store = local_store(table)
    slices, after = [], None
    while True:
        found, after = store.walk(0, after, 3)
        slices.append([key for key, _value in found])
        if after is None:
            break
        if after == "0|k1":
            store.apply(0, {"0|k9": b"9", "0|k0": None}, None)  # ahead of it and behind
    assert slices == [["0|new", "0|k0", "0|k1"], ["0|k2", "0|k3", "0|k4"],
                      ["0|k5", "0|k6", "0|k9"], []]  # fmt: skip
    assert MemoryStore({"0|a": 1, "1|b": 2}).walk(0, None, 1) == ([("0|a", 1)], None)


async def test_a_newer_write_stays_in_the_overlay_when_an_older_one_is_acked(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, value_type=bytes)
    state: PartitionState[bytes] = PartitionState(table, 1)
    state["a"] = b"old"
    await state.flush()
    state["a"] = b"new"  # not flushed yet
    changelog.ack()
    await settle()
    assert state["a"] == b"new"
    assert table.data._db_for_partition(1).get(orjson.dumps("1|a")) == b"old"


async def test_a_failed_send_keeps_the_partition_off_disk(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, value_type=bytes)
    state: PartitionState[bytes] = PartitionState(table, 0)
    state["a"] = b"1"
    await state.flush()
    changelog.sent[0][3].cancel()
    state["b"] = b"2"
    await state.flush()
    changelog.ack()
    await settle()
    assert table.data.persisted_offset(tp(table, 0)) is None
    assert state["a"] == b"1" and state["b"] == b"2"  # still read from the overlay


async def test_deletes_and_json_values_are_stored_as_the_changelog_has_them(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, "customers")  # no value_type: JSON values
    state: PartitionState[Any] = PartitionState(table, 3, decode=tuple)
    state["x"], state["y"] = (1, 2, 3), (4, 5, 6)
    await state.flush()
    changelog.ack()
    await settle()
    assert table.data._db_for_partition(3).get(orjson.dumps("3|x")) == b"[1,2,3]"
    del state["x"]
    await state.flush()
    assert "x" not in state and list(state) == ["y"]
    changelog.ack()
    await settle()
    reread: PartitionState[Any] = PartitionState(table, 3, decode=tuple)
    assert "x" not in reread and reread["y"] == (4, 5, 6)
    assert sorted((key, value) for _p, key, value, _f in changelog.sent[:2]) == [
        ("3|x", (1, 2, 3)),
        ("3|y", (4, 5, 6)),
    ]
    assert changelog.sent[2][1:3] == ("3|x", None)  # a tombstone


def test_faust_recovery_writes_what_the_store_reads(rocks_app: faust.App) -> None:
    """A changelog batch applied by Faust (recovery, standbys) is read back by key."""
    table = rocks_table(rocks_app, value_type=bytes, actives=[1])
    message = SimpleNamespace(
        tp=tp(table, 1), offset=41, partition=1, key=orjson.dumps("1|a"), value=b"v"
    )
    table.data.apply_changelog_batch([SimpleNamespace(message=message)], None, None)
    store = local_store(table)
    assert store.get(1, "1|a") == b"v"
    assert list(store.items(1)) == [("1|a", b"v")]
    assert store.partitions() == {1}
    assert store.estimate(1) >= 1


async def test_pane_groups_read_the_same_through_either_store(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    memory, rocks = SimpleNamespace(data={}), rocks_table(rocks_app, value_type=bytes)
    for table in (memory, rocks):
        view = PaneGroups(table, 0, PARTIAL)
        view[("all", 60, 0)] = PANE
        view[("all", 60, 3600)] = PANE
        await view.flush()
        view.close()
        del view[("all", 60, 3600)]
        view.drop_group("campaign:a", 60, 0)
        await view.flush()
    changelog.ack()
    await settle()
    assert dict(PaneGroups(memory, 0, PARTIAL).items()) == {("all", 60, 0): PANE}
    assert dict(PaneGroups(rocks, 0, PARTIAL).items()) == {("all", 60, 0): PANE}
    assert local_store(rocks).keys(0) == ["0|all|60|0"]


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_the_store_setting_picks_faust_store_and_one_shared_budget(
    store: str, tmp_path: Path
) -> None:
    from funnelpulse.settings import Settings
    from streams.app import create_app
    from streams.rocks_memory import MIB, BudgetedOptions

    env = {"FUNNELPULSE_STORE": store, "FUNNELPULSE_DATA_DIR": str(tmp_path),
           "FUNNELPULSE_ROCKSDB_MEMORY_MB": "24"}  # fmt: skip
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        tables = vars(create_app(Settings.from_env(env)).tables)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    shared = set()
    for table in tables.values():
        if store == "memory":
            assert isinstance(local_store(table), MemoryStore)
            continue
        options = table.data.rocksdb_options
        assert isinstance(local_store(table), RocksStore)
        assert isinstance(options, BudgetedOptions)
        assert options.shared.total == 24 * MIB
        shared.add(id(options.shared))
        assert not options.ttl
    assert len(shared) == (store == "rocksdb")  # one budget for every table


# -- partitions this worker does not hold ---------------------------------------------------


def test_a_partition_not_held_is_an_error_and_no_empty_store(rocks_app: faust.App) -> None:
    """Faust would open an empty database and the read would answer "no data"."""
    table = rocks_table(rocks_app, value_type=bytes, actives=[0])
    store = local_store(table)
    assert store.get(0, "0|a") is None  # assigned: opened
    for read in (lambda: store.get(3, "3|a"), lambda: store.keys(3),
                 lambda: list(store.items(3)), lambda: store.put(3, "3|a", b"x")):  # fmt: skip
        with pytest.raises(NotHeld):
            read()
    assert store.partitions() == {0}
    assert not table.data.partition_path(3).exists()


def test_a_standby_partition_opens_on_first_read(rocks_app: faust.App) -> None:
    table = rocks_table(rocks_app, value_type=bytes, actives=[])
    assign(rocks_app, table, standbys=[2])
    assert local_store(table).keys(2) == []
    assert local_store(table).partitions() == {2}


async def test_an_ack_after_the_revocation_neither_reopens_nor_writes(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, value_type=bytes, actives=[1])
    state: PartitionState[bytes] = PartitionState(table, 1)
    state["a"] = b"old"
    await state.flush()
    assign(rocks_app, table, actives=[])  # the rebalance: the assignment first,
    table.data.revoke_partitions(table, {tp(table, 1)})  # then Faust closes the database
    changelog.ack()
    await settle()
    store = local_store(table)
    assert isinstance(store, RocksStore)
    assert store.partitions() == set(), "the late ack reopened the database"
    assert store.dropped == 1
    assert store.forget_revoked() == {1}
    assert not store.overlay and not store.tickets
    assign(rocks_app, table, actives=[1])  # back: what its database holds, no stale overlay
    assert store.get(1, "1|a") is None
    assert table.data.persisted_offset(tp(table, 1)) is None


async def test_a_partition_revoked_after_its_acks_keeps_them_on_disk(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """The revocation handler waits for ``settled`` before Faust closes the database."""
    table = rocks_table(rocks_app, value_type=bytes, actives=[1])
    state: PartitionState[bytes] = PartitionState(table, 1)
    state["a"] = b"kept"
    await state.flush()
    store = local_store(table)
    assert isinstance(store, RocksStore)
    waiting = asyncio.ensure_future(store.settled())
    await settle()
    assert not waiting.done()
    changelog.ack()
    await asyncio.wait_for(waiting, 5)
    assign(rocks_app, table, actives=[])
    table.data.revoke_partitions(table, {tp(table, 1)})
    assert store.forget_revoked() == {1}
    assign(rocks_app, table, actives=[1])
    assert store.get(1, "1|a") == b"kept"
    assert table.data.persisted_offset(tp(table, 1)) == 0


async def test_an_active_partition_kept_as_a_standby_drops_its_overlay_and_late_acks(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """Moved to another worker but kept here as its standby: the database stays open and
    Faust's standby replication writes it; a late ack must not write over that."""
    table = rocks_table(rocks_app, value_type=bytes, actives=[1])
    state: PartitionState[bytes] = PartitionState(table, 1)
    state["a"] = b"ours"
    await state.flush()
    assign(rocks_app, table, standbys=[1])  # active elsewhere now
    store = local_store(table)
    assert isinstance(store, RocksStore)
    assert store.forget_revoked() == {1}
    assert store.get(1, "1|a") is None  # not the stale overlay
    changelog.ack()
    await settle()
    assert table.data.persisted_offset(tp(table, 1)) is None  # the late ack wrote nothing
    assert store.partitions() == {1}  # still open: a standby copy


def _waiting_store(table: Any, seconds: float) -> RocksStore:
    store = local_store(table)
    assert isinstance(store, RocksStore)
    store.land_after = seconds  # the worker's delay (the tests' default lands at once)
    return store


async def _acked_write(
    app: faust.App, changelog: Changelog, seconds: float
) -> tuple[Any, RocksStore]:
    """A table whose store lands after ``seconds``, with one write to partition 1 acked."""
    table = rocks_table(app, value_type=bytes, actives=[1])
    store = _waiting_store(table, seconds)
    state: PartitionState[bytes] = PartitionState(table, 1)
    state["a"] = b"acked"
    await state.flush()
    changelog.ack()
    await settle()
    return table, store


async def test_acked_writes_land_together_after_the_delay_each_key_once(
    rocks_app: faust.App, changelog: Changelog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three acked flushes rewriting one key: nothing on disk before the delay, then one
    write batch with the last value and the highest offset; readers see the overlay
    meanwhile."""
    table = rocks_table(rocks_app, value_type=bytes)
    store = _waiting_store(table, 0.2)
    applied: list[dict[str, Any]] = []
    apply = store.apply

    def spy(partition: int, writes: Any, offset: int | None) -> None:
        applied.append(dict(writes))
        apply(partition, writes, offset)

    monkeypatch.setattr(store, "apply", spy)
    state: PartitionState[bytes] = PartitionState(table, 2)
    for value in (b"one", b"two", b"three"):
        state["a"] = value
        state[value.decode()] = value
        await state.flush()
        changelog.ack()
        await settle()
    db = table.data._db_for_partition(2)
    assert applied == [] and db.get(orjson.dumps("2|a")) is None
    assert state["a"] == b"three"  # the overlay holds the acked writes meanwhile
    await asyncio.sleep(0.3)
    assert applied == [{"2|a": b"three", "2|one": b"one", "2|two": b"two", "2|three": b"three"}]
    assert db.get(orjson.dumps("2|a")) == b"three"
    assert table.data.persisted_offset(tp(table, 2)) == 5
    assert not store.overlay[2] and not store.landing


async def test_settled_lands_what_is_acked_at_once(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """The revocation handler's wait (``settled``) does not leave acked writes to the
    delay: Faust closes the database right after it."""
    table, store = await _acked_write(rocks_app, changelog, 60.0)
    await asyncio.wait_for(store.settled(), 5)
    assert table.data.persisted_offset(tp(table, 1)) == 0
    assert not store.landing and not store._land_timers


async def test_a_landing_not_due_when_its_partition_moves_is_left_to_the_changelog(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    """Revoked (or made a standby) before its landing: the pending writes and timer go, and
    nothing lands over what Faust restores or replicates."""
    table, store = await _acked_write(rocks_app, changelog, 0.1)
    assert store.landing
    assign(rocks_app, table, standbys=[1])
    assert store.forget_revoked() == {1}
    assert not store.landing and not store._land_timers
    await asyncio.sleep(0.2)
    assert table.data.persisted_offset(tp(table, 1)) is None
