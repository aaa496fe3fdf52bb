"""The dedup index on disk (streams/disk_index.py): it is always the index of the records on
disk — written in their batch, once acked — and it is rebuilt whenever Faust moved the
records without it (recovery after kill -9, standby replication). Real RocksDB through a
real Faust store; the producer is a fake whose futures the test resolves."""

from __future__ import annotations

import gc
import os
import random
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from streams import disk_index
from streams.dedup import (
    MessageDedup,
    encode_record,
    persist,
    rebuild,
    sweep,
)
from streams.disk_index import COUNT, MARK, STALE, DiskDedup, DiskIndexes, family, store_options
from streams.id_index import identity_digest, pack_marker
from streams.local_store import OFFSET_KEY, RocksStore, local_store
from streams.table_state import PartitionState

from .stores import Changelog, rocks_table, settle, tp


def digest(name: str) -> int:
    return identity_digest(f"click:{name}")


def _store(table: Any) -> RocksStore:
    store = local_store(table)
    assert isinstance(store, RocksStore)
    return store


def on_disk(table: Any, partition: int) -> dict[int, Any]:
    """The family as a fresh opening reads it (no overlay), with its mark checked."""
    db = table.data._db_for_partition(partition)
    ids = family(db, store_options(_store(table)))
    held = {
        int.from_bytes(k, "big"): disk_index._decode(v) for k, v in disk_index._digest_keys(ids)
    }
    assert int(ids.get(COUNT) or 0) == len(held)
    return held


def memory_index(table: Any, partition: int) -> dict[int, Any]:
    """What the memory store's index would hold for the same records."""
    dedup = rebuild(PartitionState(table, partition))
    return {d: (p, dedup.attribution(d)) for d, p in dedup.ids.items()}


async def add_batch(table: Any, indexes: DiskIndexes, source: str, names: list[str],
                    now: float = 10.0, attribution: Any = None) -> None:  # fmt: skip
    """One counted batch: its new ids in the index, its record flushed (not acked)."""
    offset = int(source.split(":")[1])
    batch = MessageDedup(indexes.index(0))
    batch.prefetch([digest(name) for name in names])  # as counting does, per message
    for i, name in enumerate(names):
        if batch.get(digest(name)) is None:
            batch.add(digest(name), (0, offset, i), attribution)
    await persist(PartitionState(table, 0), source, batch, now)


@pytest.fixture
def dedup_table(rocks_app: faust.App) -> Any:
    return rocks_table(rocks_app, "dedup", value_type=bytes)


async def landed_a(dedup_table: Any, changelog: Changelog) -> DiskIndexes:
    """The indexes of ``dedup_table`` with one record ("a" at 0:1) acked and on disk."""
    indexes = DiskIndexes(_store(dedup_table))
    await add_batch(dedup_table, indexes, "0:1", ["a"])
    changelog.ack()
    await settle()
    return indexes


async def test_ids_reach_the_disk_in_their_records_batch_once_acked(
    dedup_table: Any, changelog: Changelog
) -> None:
    indexes = DiskIndexes(_store(dedup_table))
    await add_batch(dedup_table, indexes, "0:5", ["a", "b"], attribution=("spring", "email"))
    index = indexes.index(0)
    assert index.get(digest("a")) == pack_marker((0, 5, 0))  # from the overlay
    assert index.attribution(digest("b")) == ("spring", "email")
    assert on_disk(dedup_table, 0) == {} and len(index) == 2
    changelog.ack()
    await settle()
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)
    assert len(on_disk(dedup_table, 0)) == 2
    assert index.overlay == {}  # landed: memory holds nothing of them
    db = dedup_table.data._db_for_partition(0)
    assert family(db, None).get(MARK) == db.get(OFFSET_KEY) == b"0"


async def test_a_duplicate_is_found_on_disk_and_in_the_overlay(
    dedup_table: Any, changelog: Changelog
) -> None:
    indexes = await landed_a(dedup_table, changelog)
    await add_batch(dedup_table, indexes, "0:2", ["b"])
    batch = MessageDedup(indexes.index(0))
    assert batch.get(digest("a")) == pack_marker((0, 1, 0))  # disk
    assert batch.get(digest("b")) == pack_marker((0, 2, 0))  # overlay
    assert batch.get(digest("c")) is None


async def test_a_swept_record_takes_its_ids_off_the_disk_in_the_tombstone_batch(
    dedup_table: Any, changelog: Changelog
) -> None:
    indexes = DiskIndexes(_store(dedup_table))
    await add_batch(dedup_table, indexes, "0:1", ["a", "b"], now=10.0)
    await add_batch(dedup_table, indexes, "0:2", ["c"], now=30.0)
    changelog.ack()
    await settle()
    index = indexes.index(0)
    assert await sweep(PartitionState(dedup_table, 0), index, before=20.0) == 2
    assert index.get(digest("a")) is None and len(index) == 1
    assert set(on_disk(dedup_table, 0)) == {digest("a"), digest("b"), digest("c")}  # not acked
    changelog.ack()
    await settle()
    assert set(on_disk(dedup_table, 0)) == {digest("c")}
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)


async def landed_x(dedup_table: Any, changelog: Changelog) -> tuple[PartitionState[Any], DiskDedup]:
    """Partition 0's state and disk index with one record (id "x", marker 11, at 0:1)
    written, acked and on disk."""
    indexes = DiskIndexes(_store(dedup_table))
    state: PartitionState[Any] = PartitionState(dedup_table, 0)
    state["0:1"] = encode_record(1.0, [(digest("x"), 11, None)])
    await state.flush()
    changelog.ack()
    await settle()
    return state, indexes.index(0)


async def test_an_id_swept_and_seen_again_in_one_batch_keeps_its_new_record(
    dedup_table: Any, changelog: Changelog
) -> None:
    """The old record's tombstone and the new record of the same id land in one batch:
    the record written wins over the record deleted, whatever their order in it."""
    state, index = await landed_x(dedup_table, changelog)
    assert index.remove(digest("x"), 11)  # swept...
    index.add(digest("x"), 99, None)  # ... and seen again
    state["0:9"] = encode_record(9.0, [(digest("x"), 99, None)])
    del state["0:1"]
    await state.flush()
    changelog.ack()
    await settle()
    assert on_disk(dedup_table, 0) == {digest("x"): (99, None)} == memory_index(dedup_table, 0)
    assert index.overlay == {} and len(index) == 1


async def test_an_old_record_deleted_leaves_an_id_a_newer_record_holds(
    dedup_table: Any, changelog: Changelog
) -> None:
    """A record deleted removes only the ids still at its marker (the id was seen again
    after its first record was lost: the memory index keeps it the same way)."""
    state, index = await landed_x(dedup_table, changelog)
    index.add(digest("x"), 22, None)  # a lost record's id, seen again
    assert await sweep(state, index, before=5.0) == 0
    changelog.ack()
    await settle()
    assert index.get(digest("x")) == 22 and len(index) == 1


async def test_a_reopened_index_is_read_from_disk_without_a_rebuild(
    dedup_table: Any, changelog: Changelog, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexes = DiskIndexes(_store(dedup_table))
    await add_batch(dedup_table, indexes, "0:1", ["a", "b", "c"])
    changelog.ack()
    await settle()
    indexes.clear()
    no_rebuild(monkeypatch)
    index = indexes.index(0)
    assert len(index) == 3 and index.get(digest("c")) == pack_marker((0, 1, 2))


def faust_applies(
    table: Any, partition: int, records: dict[str, bytes | None], offset: int
) -> None:
    """Faust's recovery or standby replication writing changelog records to the database
    (``Store.apply_changelog_batch``, which the disk index takes over)."""
    events = [
        SimpleNamespace(
            message=SimpleNamespace(
                tp=tp(table, partition),
                offset=offset,
                partition=partition,
                key=orjson.dumps(f"{partition}|{key}"),
                value=value,
            )
        )
        for key, value in records.items()
    ]
    table.data.apply_changelog_batch(events, None, None)


def bypass(table: Any, partition: int, records: dict[str, bytes | None], offset: int) -> None:
    """A writer that goes around the index (a database written before the index existed,
    a Faust that calls its own method): records and offset, the index untouched."""
    db = table.data._db_for_partition(partition)
    for key, value in records.items():
        full = orjson.dumps(f"{partition}|{key}")
        if value is None:
            db.delete(full)
        else:
            db.put(full, value)
    db.put(OFFSET_KEY, str(offset).encode())


def no_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> int:
        raise AssertionError("rebuilt an index that should have been current")

    monkeypatch.setattr(disk_index, "rebuild", fail)


async def test_records_faust_recovers_after_a_kill_are_indexed_as_it_writes_them(
    dedup_table: Any, changelog: Changelog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9: the disk had the first record; the changelog had a second, which Faust's
    recovery applies to the database on the restart. The index holds both, and opening
    it reads no record (no rebuild on the restart's path)."""
    await landed_a(dedup_table, changelog)
    second = encode_record(20.0, [(digest("b"), pack_marker((0, 2, 0)), None)])
    restarted = DiskIndexes(_store(dedup_table))  # the new process
    faust_applies(dedup_table, 0, {"0:2": second}, offset=7)
    assert dedup_table.data.persisted_offset(tp(dedup_table, 0)) == 7  # Faust's offset too
    no_rebuild(monkeypatch)
    index = restarted.index(0)
    assert index.get(digest("b")) == pack_marker((0, 2, 0))
    assert len(index) == 2
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)
    assert [key for _, _, key in index.times.oldest()] == ["0:1", "0:2"]


async def test_records_written_around_the_index_are_indexed_on_opening(
    dedup_table: Any, changelog: Changelog
) -> None:
    indexes = await landed_a(dedup_table, changelog)
    second = encode_record(20.0, [(digest("b"), pack_marker((0, 2, 0)), None)])
    bypass(dedup_table, 0, {"0:2": second, "0:1": None}, offset=7)
    indexes.clear()
    index = indexes.index(0)
    assert index.get(digest("b")) == pack_marker((0, 2, 0)) and index.get(digest("a")) is None
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)


async def test_a_record_faust_deleted_takes_its_ids_away_on_opening(
    dedup_table: Any, changelog: Changelog
) -> None:
    indexes = await landed_a(dedup_table, changelog)
    faust_applies(dedup_table, 0, {"0:1": None}, offset=3)  # a tombstone replicated
    indexes.clear()
    assert indexes.index(0).get(digest("a")) is None
    assert on_disk(dedup_table, 0) == {}


async def test_a_write_after_records_written_around_the_index_leaves_it_stale(
    dedup_table: Any, changelog: Changelog
) -> None:
    """Our acked batch lands after records were written behind the index's back: the
    index must not claim to be current (its mark stays off the offset)."""
    indexes = DiskIndexes(_store(dedup_table))
    indexes.index(0)
    second = encode_record(20.0, [(digest("b"), pack_marker((0, 2, 0)), None)])
    bypass(dedup_table, 0, {"0:2": second}, offset=4)
    await add_batch(dedup_table, indexes, "0:5", ["c"])
    changelog.ack()
    await settle()
    db = dedup_table.data._db_for_partition(0)
    assert family(db, None).get(MARK) == STALE
    indexes.clear()
    index = indexes.index(0)
    assert index.get(digest("b")) is not None and index.get(digest("c")) is not None
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)


async def test_a_rebuild_cut_short_is_done_again(dedup_table: Any, changelog: Changelog) -> None:
    indexes = DiskIndexes(_store(dedup_table))
    await add_batch(dedup_table, indexes, "0:1", ["a", "b"])
    changelog.ack()
    await settle()
    db = dedup_table.data._db_for_partition(0)
    ids = family(db, None)
    ids.put(MARK, STALE)  # kill -9 in the middle of a rebuild
    ids.delete(disk_index._key(digest("b")))
    del ids
    indexes.clear()
    assert indexes.index(0).get(digest("b")) == pack_marker((0, 1, 1))


async def test_writes_not_acked_before_the_index_opens_are_in_its_overlay(
    dedup_table: Any, changelog: Changelog
) -> None:
    """A recovery reopens the index while flushes are still unacked."""
    indexes = await landed_a(dedup_table, changelog)
    await add_batch(dedup_table, indexes, "0:2", ["b"], now=30.0)
    await sweep(PartitionState(dedup_table, 0), indexes.index(0), before=20.0)  # drops 0:1
    indexes.clear()
    index = indexes.index(0)
    assert index.get(digest("a")) is None and index.get(digest("b")) is not None
    assert len(index) == 1
    changelog.ack()
    await settle()
    assert index.overlay == {}
    assert set(on_disk(dedup_table, 0)) == {digest("b")}


def test_released_handles_let_faust_close_and_reopen_the_database(dedup_table: Any) -> None:
    """Faust closes a revoked partition's database by dropping its last reference; a
    handle kept by the index would keep the file lock and the reopening would fail."""
    indexes = DiskIndexes(_store(dedup_table))
    assert indexes.index(0).get(digest("a")) is None  # takes a handle
    indexes.release()
    dedup_table.data._dbs.pop(0)
    gc.collect()
    assert dedup_table.data._db_for_partition(0) is not None  # no "lock hold" error
    assert indexes.index(0).get(digest("a")) is None  # a new handle on the new database


@pytest.mark.parametrize("seed", range(int(os.environ.get("DISK_INDEX_SEEDS", "8"))))
async def test_the_disk_index_is_the_memory_index_of_the_records(
    dedup_table: Any, changelog: Changelog, seed: int
) -> None:
    """Random batches (with repeats), sweeps, acks in between and reopenings: after every
    ack the index on disk is what the memory store's index of the same records is, and the
    live index answers as that index of the records written so far."""
    rng = random.Random(seed)
    indexes = DiskIndexes(_store(dedup_table))
    now = 0.0
    for step in range(40):
        now += 1.0
        action = rng.random()
        if action < 0.6:
            names = [f"e{rng.randrange(200)}" for _ in range(rng.randrange(1, 30))]
            attribution = ("c", "email") if rng.random() < 0.3 else None
            await add_batch(dedup_table, indexes, f"0:{step}", names, now, attribution)
        elif action < 0.75:
            await sweep(PartitionState(dedup_table, 0), indexes.index(0), now - rng.randrange(10))
        elif action < 0.85:
            indexes.clear()  # a recovery: reopened, unacked records in the overlay
        if rng.random() < 0.5:
            changelog.ack(rng.randrange(1, 5))
            await settle()
            on_disk(dedup_table, 0)  # its id count is the ids it holds
        live = indexes.index(0)
        want = memory_index(dedup_table, 0)  # through the store's overlay too
        assert {d: (live.get(d), live.attribution(d)) for d in want} == want
        assert len(live) == len(want)
    changelog.ack()
    await settle()
    assert on_disk(dedup_table, 0) == memory_index(dedup_table, 0)


def test_an_id_just_found_absent_is_added_without_a_second_lookup(
    dedup_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each new event looked itself up on disk twice (``get``, then ``add`` counting it);
    the second is the first's answer."""
    index = DiskIndexes(_store(dedup_table)).index(0)
    lookups: list[int] = []
    entry = type(index)._entry

    def spy(self: Any, digest: int) -> Any:
        lookups.append(digest)
        return entry(self, digest)

    monkeypatch.setattr(type(index), "_entry", spy)
    batch = MessageDedup(index)
    assert batch.get(digest("a")) is None
    batch.add(digest("a"), (0, 1, 0), None)
    assert lookups == [digest("a")] and len(index) == 1
    batch.add(digest("b"), (0, 1, 1), None)  # not looked up first: counted by a lookup
    assert len(index) == 2 and lookups[-1] == digest("b")


async def test_record_times_are_read_at_the_first_sweep_not_at_opening(
    dedup_table: Any, changelog: Changelog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a partition's index reads no record (a restart's first batch would wait
    for every record of the dedup horizon); the times are read when the sweep first asks,
    and a batch persisted in between is in them once, not twice."""
    await landed_a(dedup_table, changelog)
    reads: list[int] = []
    real = disk_index.record_times
    monkeypatch.setattr(disk_index, "record_times", lambda state: reads.append(1) or real(state))
    restarted = DiskIndexes(_store(dedup_table))
    index = restarted.index(0)
    await add_batch(dedup_table, restarted, "0:2", ["b", "c"], now=20.0)
    assert reads == []
    assert list(index.times.oldest()) == [(10.0, 1, "0:1"), (20.0, 2, "0:2")]
    assert reads == [1] and len(index.times) == 2
    await add_batch(dedup_table, restarted, "0:3", ["d"], now=30.0)  # after the read: kept
    assert [key for _, _, key in index.times.oldest()] == ["0:1", "0:2", "0:3"]


async def test_new_ids_land_without_being_read_back(
    dedup_table: Any, changelog: Changelog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The landing of a record of new ids reads none of them back (the lookup that found
    them missing said so), and still counts each once; an id swept and seen again before
    its record landed is read, since the disk may hold it."""
    indexes = await landed_a(dedup_table, changelog)
    read: list[bytes] = []
    real = disk_index._get_many

    def spy(rdict: Any, keys: list[bytes]) -> list[bytes | None]:
        read.extend(keys)
        return real(rdict, keys)

    monkeypatch.setattr(disk_index, "_get_many", spy)
    await add_batch(dedup_table, indexes, "0:2", ["b", "c"], now=20.0)
    read.clear()
    changelog.ack()
    await settle()
    assert disk_index._key(digest("b")) not in read and disk_index._key(digest("c")) not in read
    assert set(on_disk(dedup_table, 0)) == {digest("a"), digest("b"), digest("c")}
    await sweep(PartitionState(dedup_table, 0), indexes.index(0), 15.0)  # "a" goes
    await add_batch(dedup_table, indexes, "0:3", ["a"], now=30.0)  # and comes back
    read.clear()
    changelog.ack()
    await settle()
    assert disk_index._key(digest("a")) in read
    assert on_disk(dedup_table, 0)[digest("a")][0] == pack_marker((0, 3, 0))
