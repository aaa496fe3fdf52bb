"""The dedup index on disk (``FUNNELPULSE_STORE=rocksdb``): digest → first sighting, in a
column family of the dedup table partition's own RocksDB database.

Why: in memory (``id_index.IdIndex``) an id costs ~32 bytes, and the index holds every
event_id of the dedup horizon: 1.5 million in the 10,000-campaign memory benchmark,
~70 MiB of the worker's resident memory, growing with the traffic. On disk, memory holds
only the ids whose records the broker has not acknowledged yet.

What is on disk is derived from the dedup records on disk and never written on its own.
When ``local_store.RocksStore`` writes acknowledged records into the partition's
database, the index changes they imply go into the same ``WriteBatch``
(``DiskIndexes.derive``): a record written puts each of its ids (digest → packed marker
and attribution), a record deleted removes each of its ids still holding that record's
marker (a newer record of the same id keeps it). The column family is so, at every
moment, the index of the records on disk, which are a prefix of the changelog (the
store's invariant); the ids added since are in memory (``DiskDedup.overlay``) until their
records land, and every lookup reads that overlay first.

The trap: Faust writes the same database's records itself — recovery after a restart,
standby replication, both through its store's ``apply_changelog_batch`` — and its writes
would not touch the index. So that method is replaced on the dedup table's store
(``DiskIndexes.apply_changelog_batch``): the records Faust restores go through the same
write as ours, index changes in their batch, and a restart after ``kill -9`` or a
standby taking over finds the index current (a rebuild reads every record: 1.5 s for
350,000 ids, which would be on every restart's path). As a safety net for any writer
that still bypasses it (a database older than the index, a rebuild cut short by
``kill -9``), the column family keeps the changelog offset it was derived at (``MARK``),
written in the batch that writes the store's offset key (``local_store.OFFSET_KEY``):
opening the index compares the two and rebuilds the family from the records when they
differ, and a write of ours that finds them apart marks the index ``STALE`` instead of
advancing it, so that the next opening rebuilds.

The second trap: a handle on a column family keeps its whole database open. Faust closes
a revoked partition's database by dropping its last reference, so a handle kept over the
revocation would keep the file lock, and Faust's next opening of that partition would
fail. ``DiskIndexes.release`` drops every handle; the revocation handler calls it.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

import orjson
from rocksdict import Rdict, WriteBatch

from .dedup import (
    Attribution,
    DedupIndex,
    RecordTimes,
    TimesOnFirstRead,
    record_entries,
    record_map,
    record_markers,
    record_times,
)
from .local_store import OFFSET_KEY, RocksStore
from .table_state import PartitionState

FAMILY = "dedup-ids"
# keys of another length than a digest's 8 bytes
MARK = b"offset"  # the store's offset key when the index was last derived
COUNT = b"count"  # ids in the family
STALE = b"stale"  # a MARK no offset equals: rebuild at the next opening
REBUILD_RECORDS = 64  # records per WriteBatch of a rebuild
Entry = tuple[int, Attribution | None]  # (packed marker, attribution)
Changes = dict[int, Entry | None]  # digest → its entry, None: removed
_ABSENT = (-1, None)  # no entry equals it (a packed marker is never negative)


_KEY = struct.Struct(">Q")  # a digest's key: big-endian, so keys sort as the digests
_MARKER = struct.Struct("<Q")  # an entry's packed marker


def _key(digest: int) -> bytes:
    return _KEY.pack(digest)


def _encode(entry: Entry) -> bytes:
    packed, attribution = entry
    head = packed.to_bytes(8, "little")
    return head if attribution is None else head + orjson.dumps(attribution)


def _decode(raw: bytes) -> Entry:
    packed = int.from_bytes(raw[:8], "little")
    if len(raw) == 8:
        return packed, None
    campaign, channel = orjson.loads(raw[8:])
    return packed, (campaign, channel)


def family(db: Rdict, options: Any) -> Rdict:
    """The database's index column family, made with ``options`` (the store's: its
    memory budget, ``rocks_memory``) if not there yet. Not to be kept over an await that
    may see a revocation (see the module's docstring)."""
    try:
        return db.get_column_family(FAMILY)
    except Exception:  # rocksdict raises a plain Exception for a family not there
        return db.create_column_family(FAMILY, options)


def store_options(store: RocksStore) -> Any:
    """The options the store opens its databases with."""
    return store.faust_store.rocksdb_options.as_options()


class DiskDedup(DedupIndex):
    """One partition's index: the column family, and the changes not on disk yet."""

    def __init__(self, store: RocksStore, partition: int, count: int) -> None:
        self.times = RecordTimes()
        self.overlay: Changes = {}
        # digests added while neither the overlay nor the disk held them: their landing
        # puts them on disk without a second lookup (``DiskIndexes.derive``)
        self.off_disk: set[int] = set()
        self._store, self._partition = store, partition
        self._count = count
        self._ids: Rdict | None = None
        # the disk's answers for the digests of the last ``prefetch`` (until it changes)
        self._read: dict[int, bytes | None] = {}

    def _family(self) -> Rdict:
        ids = self._ids
        if ids is None:
            store = self._store
            ids = self._ids = family(store._db(self._partition), store_options(store))
        return ids

    def release(self) -> None:
        """Drops the handle on the database (taken again on the next lookup)."""
        self._ids = None
        self._read = {}

    def prefetch(self, digests: list[int]) -> None:
        """Reads the digests not in the overlay in one multi-get: one call into RocksDB
        per message instead of one per event (the lookups were 6.6 % of a rocksdb
        worker's py-spy samples in the 150,000-event drain)."""
        overlay = self.overlay
        wanted = [d for d in digests if d not in overlay]
        found = _get_many(self._family(), [_key(d) for d in wanted])
        self._read = dict(zip(wanted, found, strict=True))

    def _entry(self, digest: int) -> Entry | None:
        overlay = self.overlay
        if digest in overlay:
            return overlay[digest]
        read = self._read
        raw = read[digest] if digest in read else self._family().get(_key(digest))
        return None if raw is None else _decode(raw)

    def __len__(self) -> int:
        return self._count

    def get(self, digest: int) -> int | None:
        entry = self._entry(digest)
        return None if entry is None else entry[0]

    def attribution(self, digest: int) -> Attribution | None:
        entry = self._entry(digest)
        return None if entry is None else entry[1]

    def add(
        self, digest: int, packed: int, attribution: Attribution | None, new: bool = False
    ) -> None:
        overlay = self.overlay
        if new or self._entry(digest) is None:  # a lookup on disk, unless just made
            self._count += 1
            if digest not in overlay:  # absent from the disk too, not only removed
                self.off_disk.add(digest)
        overlay[digest] = (packed, attribution)

    def remove(self, digest: int, packed: int) -> bool:
        entry = self._entry(digest)
        if entry is None or entry[0] != packed:
            return False
        self.overlay[digest] = None
        self._count -= 1
        return True

    def landed(self, changes: Changes) -> None:
        """``changes`` are on disk: the overlay keeps only what differs from them, what
        the last prefetch read is stale, and the digests put are no longer off disk."""
        self._read = {}
        overlay = self.overlay
        for digest, entry in changes.items():
            if overlay.get(digest, _ABSENT) == entry:
                del overlay[digest]
        self.off_disk.difference_update(changes)


def _record_key(key: str) -> bytes:
    return orjson.dumps(key)


def _get_many(rdict: Rdict, keys: list[bytes]) -> list[bytes | None]:
    """Values of ``keys`` in one call (RocksDB's multi-get), None where missing."""
    return cast(list[bytes | None], rdict.get(list[Any](keys))) if keys else []


def _digest_keys(rdict: Rdict) -> Iterable[tuple[bytes, bytes]]:
    """The family's (digest key, entry) pairs: its other keys (``MARK``, ``COUNT``) are
    not 8 bytes long."""
    for key, value in rdict.items():
        if isinstance(key, bytes) and len(key) == 8:
            yield key, value


def derive(
    ids: Rdict,
    old_records: Iterable[bytes | None],
    writes: Mapping[str, Any],
    off_disk: Collection[int] = (),
) -> tuple[Changes, int]:
    """The index changes records written imply, and what they do to the id count:
    ``old_records`` are the disk values of the records ``writes`` deletes (``None``),
    ``ids`` the family before the batch (read once, in one multi-get), ``off_disk``
    digests known not to be in it (``DiskDedup.off_disk``: not read again).

    Why ``off_disk``: almost every id written is new, and reading each one back here
    was half the cost of the disk index in a drain's profile (a second multi-get of the
    ids the dedup lookup had just found missing). Only a put not also deleted in the
    batch is taken on trust; anything else is read."""
    removed: dict[int, int] = {}  # digest → packed marker of a deleted record's entry
    for raw in old_records:
        if raw is not None:
            removed.update(record_markers(raw))
    put: dict[int, Entry] = {}
    for value in writes.values():
        if value is not None:
            put.update(record_map(value))
    unread = (put.keys() & off_disk) - removed.keys()
    delta = len(unread)
    if len(unread) == len(put):  # the usual landing: every id written is new
        changes: Changes = dict(put)
        digests = list(removed.keys() - put.keys())
    else:
        changes = {d: put[d] for d in unread}
        digests = list((removed.keys() | put.keys()) - unread)
    for digest, raw in zip(digests, _get_many(ids, [_key(d) for d in digests]), strict=True):
        if digest in put:  # a record written wins over one deleted in the same batch
            changes[digest] = put[digest]
            delta += raw is None
        elif raw is not None and _decode(raw)[0] == removed[digest]:
            changes[digest] = None
            delta -= 1
    return changes, delta


def _write(batch: WriteBatch, handle: Any, ids: Rdict, changes: Changes, delta: int) -> None:
    """Adds ``changes`` and the family's new id count to ``batch``."""
    put, key, marker = batch.put, _KEY.pack, _MARKER.pack
    for digest, entry in changes.items():
        if entry is None:
            batch.delete(key(digest), handle)
        elif entry[1] is None:  # most ids: no attribution (``_encode`` without a call)
            put(key(digest), marker(entry[0]), handle)
        else:
            put(key(digest), _encode(entry), handle)
    batch.put(COUNT, str(int(ids.get(COUNT) or 0) + delta).encode(), handle)


def rebuild(db: Rdict, options: Any) -> int:
    """Derives the family again from every record on disk; returns its id count. The
    first record of an id (in key order) wins, as in the memory index: the records are
    read backwards, each overwriting what the later ones put."""
    ids = family(db, options)
    handle = db.get_column_family_handle(FAMILY)
    batch = WriteBatch(raw_mode=True)
    batch.delete_range(b"", b"\xff" * 9, handle)  # digests, COUNT, MARK: all of it
    batch.put(MARK, STALE, handle)  # a kill -9 midway leaves it stale
    db.write(batch)
    batch, records = WriteBatch(raw_mode=True), 0
    for key, raw in db.items(backwards=True):
        if key == OFFSET_KEY:
            continue
        for digest, packed, attribution in record_entries(raw):
            batch.put(_key(digest), _encode((packed, attribution)), handle)
        records += 1
        if records % REBUILD_RECORDS == 0:
            db.write(batch)
            batch = WriteBatch(raw_mode=True)
    db.write(batch)
    count = sum(1 for _ in _digest_keys(ids))
    batch = WriteBatch(raw_mode=True)
    batch.put(COUNT, str(count).encode(), handle)
    offset = db.get(OFFSET_KEY)
    if offset is None:  # no records either: as a new family
        batch.delete(MARK, handle)
    else:
        batch.put(MARK, offset, handle)
    db.write(batch)
    return count


class DiskIndexes:
    """The disk indexes of one dedup table's partitions; the table's ``RocksStore``
    calls ``derive``/``landed`` around each write of records (``local_store``)."""

    def __init__(self, store: RocksStore) -> None:
        self.store = store
        self.open: dict[int, DiskDedup] = {}
        store.derived = self
        store.faust_store.apply_changelog_batch = self.apply_changelog_batch

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Faust's recovery and standby replication (it calls this in place of its
        store's own): per partition, the records as they are, their highest offset and
        the index changes they imply, in one ``WriteBatch`` (Faust's writes the offset
        in a second one)."""
        writes: dict[int, dict[str, Any]] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            partition = message.partition
            writes.setdefault(partition, {})[orjson.loads(message.key)] = message.value
            offsets[partition] = max(offsets.get(partition, -1), message.offset)
        for partition, records in writes.items():
            self.store.apply(partition, records, offsets[partition])

    def index(self, partition: int) -> DiskDedup:
        """The partition's index: rebuilt first if the records moved without it; the
        records not on disk yet in its overlay."""
        found = self.open.get(partition)
        if found is not None:
            return found
        store = self.store
        db = store._db(partition)
        ids = family(db, store_options(store))
        if ids.get(MARK) != db.get(OFFSET_KEY) or ids.get(MARK) == STALE:
            count = rebuild(db, store_options(store))
        else:
            count = int(ids.get(COUNT) or 0)
        del ids
        index = DiskDedup(store, partition, count)
        pending = dict(store.overlay.get(partition, {}))
        deleted = [key for key, value in pending.items() if value is None]
        for raw in _get_many(db, [_record_key(k) for k in deleted]):
            for digest, packed, _attribution in record_entries(raw) if raw else ():
                index.remove(digest, packed)
        for value in pending.values():
            for digest, packed, attribution in record_entries(value) if value else ():
                index.add(digest, packed, attribution)
        table = store.faust_store.table
        index.times = TimesOnFirstRead(lambda: record_times(PartitionState(table, partition)))
        self.open[partition] = index
        return index

    def derive(
        self,
        partition: int,
        db: Rdict,
        batch: WriteBatch,
        writes: Mapping[str, Any],
        offset: int | None,
    ) -> Changes:
        """Adds to ``batch`` (the records ``writes`` and the offset) the index changes
        they imply, and the family's mark; returns the changes."""
        ids = family(db, store_options(self.store))
        handle = db.get_column_family_handle(FAMILY)
        if ids.get(MARK) != db.get(OFFSET_KEY):  # Faust wrote records: rebuild on opening
            batch.put(MARK, STALE, handle)
            return {}
        deleted = [key for key, value in writes.items() if value is None]
        old = _get_many(db, [_record_key(k) for k in deleted])
        index = self.open.get(partition)
        changes, delta = derive(ids, old, writes, () if index is None else index.off_disk)
        _write(batch, handle, ids, changes, delta)
        if offset is not None:
            batch.put(MARK, str(offset).encode(), handle)
        return changes

    def landed(self, partition: int, changes: Changes) -> None:
        index = self.open.get(partition)
        if index is not None:
            index.landed(changes)

    def release(self) -> None:
        """Drops every handle on a database (before Faust closes revoked ones)."""
        for index in self.open.values():
            index.release()

    def clear(self) -> None:
        """Forgets every partition's index (after a recovery: reopened on first use)."""
        self.release()
        self.open.clear()
