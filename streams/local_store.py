"""Where a table's state lives on this worker: one seam, a memory store and a RocksDB one.

Why a seam: the table views (``table_state.PartitionView``, ``pane_groups.PaneGroups``)
write the store themselves and send their own changelog records, a batch at a time.
Faust's RocksDB store cannot be written that way: ``Store._set`` asserts a current event
(there is none in a batch task) and picks the partition's database from it, and the
changelog offset it keeps beside the data only moves when Faust's own
``send_changelog`` is acked — so every restart would replay the whole changelog. The
views therefore talk to a ``LocalStore`` per table, by partition:

- ``MemoryStore``: ``table.data`` as before (Faust's memory store holds every partition in
  one dict; keys carry ``partition|``). Writes land at once; offsets are not kept, since a
  memory store is rebuilt from the changelog at every start.
- ``RocksStore``: the partition's database through Faust's store (``_db_for_partition``),
  in Faust's format, so Faust's recovery and standbys read and write the same data: keys
  are the changelog keys (JSON bytes), values the changelog values (bytes as they are,
  JSON for other tables), and the partition's changelog offset sits under Faust's
  ``__faust\\0offset__`` key as decimal ASCII. Faust's recovery seeks past that offset.

The trap (exactness): a durable store must never hold a write whose changelog record is
not on the broker. After ``kill -9`` it would be ahead of the changelog, the restart
would skip it on recovery and the input re-read would be skipped by the pane marks: the
count would exist on this disk only, and be lost with it or when the partition moves.
So a RocksStore keeps writes in an overlay that every reader sees first; a flush sends
its records under one ticket (flushes of a partition never interleave, so tickets follow
changelog order); when the producer has acked every record of the ticket and of all the
tickets before it, their writes and the highest acked offset go into the partition's
database in one ``WriteBatch`` (the acked tickets of ``LAND_AFTER`` seconds together: a
key rewritten by many batches lands once). The database and its offset are then always a
prefix of the changelog, which is what recovery assumes. A send that failed or was cancelled stops
a partition's writes to disk until the restart (it may or may not be on the broker).

Revocation (the second trap): Faust drops a revoked partition's database from its store
(``revoke_partitions``: popped from ``_dbs``, closed once unreferenced) and opens one
lazily on any access (``_db_for_partition``). So a read of a partition this worker does
not hold would create an empty database and answer "nothing" (a zero published as a
count), and a write settling after the revocation would reopen the database and put
old values into it — behind whatever the partition's next tenure restores. Here the
store only opens a partition that is open already or assigned to this worker (active
or standby); anything else raises ``NotHeld``. An acknowledgement that settles after
Faust closed the partition is dropped (the changelog has the records: the next owner
restores them); ``forget_revoked`` (called once Faust has applied a rebalance) drops
the overlay, tickets and failure mark of every partition no longer active here (closed,
or kept as a standby copy that Faust's standby replication writes), so a partition that
becomes active again starts clean, from its database and changelog only. ``settled`` lets
the revocation handler wait for the acknowledgements under way first, so that as much
as possible reaches the disk before Faust closes it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import orjson
from faust.types import TP
from rocksdict import Rdict, ReadOptions, WriteBatch

log = logging.getLogger("funnelpulse.store")
SETTLE_POLL = 0.01
# seconds acked writes wait to reach the disk together (``RocksStore._settle``); 0: at once
LAND_AFTER = 0.0  # 0.5 measured in the twelfth round; off until the two-worker hang is understood
OFFSET_KEY = b"__faust\0offset__"  # faust.stores.rocksdb.Store.offset_key
MEMTABLES = "rocksdb.cur-size-all-mem-tables"  # a column family's memtables, bytes
Writes = Mapping[str, Any]  # store key → value, None: deleted
SCAN_READ = ReadOptions()  # a read of a sweep (``LocalStore.get(scan=True)``)
SCAN_READ.fill_cache(False)  # type: ignore[call-arg]  # rocksdict's stub omits the flag


def record_value(value: Any) -> bytes | None:
    """A value as the changelog carries it: bytes as they are, anything else as JSON,
    ``None`` (a tombstone) as ``None``."""
    return value if value is None or isinstance(value, bytes) else orjson.dumps(value)


class NotHeld(LookupError):
    """A partition this worker neither holds open nor has been assigned: reading it would
    create an empty database and answer as if it had no data."""


def prefix(partition: int) -> str:
    """What every store key of ``partition`` starts with."""
    return f"{partition}|"


class Ticket:
    """The changelog records of one flush of one partition (the memory store keeps none)."""

    def add(self, key: str, value: Any, delivery: Any) -> None:
        """``key``'s record, sent with ``value``; ``delivery``: the send's future."""


class LocalStore(ABC):
    """One table's state on this worker, by partition. Keys are store keys (they start
    with ``partition|``, as the changelog keys do); a value of ``None`` is no value."""

    @abstractmethod
    def get(self, partition: int, key: str, *, scan: bool = False) -> Any:
        """The value of ``key`` (the write not yet on disk first), or None. ``scan``: one
        read of a sweep over many keys (the publisher's refresh of every scope), which a
        durable store serves without keeping the blocks it read in its cache: a sweep
        would evict the stages' working set for blocks read once a minute, and keep the
        cache full while the worker is otherwise idle."""

    @abstractmethod
    def keys(self, partition: int) -> list[str]:
        """The partition's keys, read now (a scan of the partition)."""

    def iter_keys(self, partition: int) -> Iterator[str]:
        """The partition's keys one at a time (consume it before awaiting): a walk of a
        partition with hundreds of thousands of groups, without a list of them all."""
        return iter(self.keys(partition))

    @abstractmethod
    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """The partition's keys and values (consume it before awaiting)."""

    def walk(
        self, partition: int, after: str | None, limit: int
    ) -> tuple[list[tuple[str, Any]], str | None]:
        """One slice of a walk over the partition's items that may span awaits: up to
        about ``limit`` items after the key ``after`` (None: from the start), and the key
        the next slice starts after (None: the walk is done).

        The trap: each slice reads the store afresh, so a key written between slices may
        be read with its old value or its new one, and a key added or deleted meanwhile
        may be missed; the caller must derive nothing that needs one consistent reading
        (``PartialCounts`` completes the high waters it reads with the offsets counted
        meanwhile). Faust's memory store has no order to resume in: it answers in one
        slice."""
        return list(self.items(partition)), None

    @abstractmethod
    def put(self, partition: int, key: str, value: Any) -> None:
        """Writes ``value`` (None: deletes); readers see it at once."""

    @abstractmethod
    def apply(self, partition: int, writes: Writes, offset: int | None) -> None:
        """Writes ``writes`` and, for a durable store, the partition's changelog offset."""

    @abstractmethod
    def sending(self, partition: int) -> AbstractAsyncContextManager[Ticket]:
        """An async context yielding the ``Ticket`` of one flush of ``partition``."""

    @abstractmethod
    def estimate(self, partition: int) -> int:
        """About how many keys the partition holds."""

    @abstractmethod
    def partitions(self) -> set[int]:
        """The partitions whose state this worker holds (active or standby)."""

    def size(self) -> int:
        return sum(self.estimate(p) for p in self.partitions())

    def keys_by_partition(self, partitions: Collection[int] | None = None) -> dict[int, list[str]]:
        """The keys of ``partitions`` (default: every partition held), by partition."""
        wanted = self.partitions() if partitions is None else partitions
        return {p: self.keys(p) for p in wanted}


class MemoryStore(LocalStore):
    """Faust's memory store: one dict for every partition, keyed ``partition|key``."""

    def __init__(self, data: MutableMapping[str, Any]) -> None:
        self.data = data

    def get(self, partition: int, key: str, *, scan: bool = False) -> Any:
        return self.data.get(key)

    def keys(self, partition: int) -> list[str]:
        start = prefix(partition)
        return [k for k in list(self.data) if k.startswith(start)]

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        start = prefix(partition)
        return iter([(k, v) for k, v in list(self.data.items()) if k.startswith(start)])

    def put(self, partition: int, key: str, value: Any) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def apply(self, partition: int, writes: Writes, offset: int | None) -> None:
        for key, value in writes.items():
            self.put(partition, key, value)

    @asynccontextmanager
    async def sending(self, partition: int) -> AsyncIterator[Ticket]:
        yield Ticket()

    def estimate(self, partition: int) -> int:
        return len(self.keys(partition))

    def partitions(self) -> set[int]:
        return {int(key.partition("|")[0]) for key in list(self.data)}

    def size(self) -> int:
        return len(self.data)

    def keys_by_partition(self, partitions: Collection[int] | None = None) -> dict[int, list[str]]:
        """One pass over the dict, not one per partition."""
        found: defaultdict[int, list[str]] = defaultdict(list)
        for key in list(self.data):
            found[int(key.partition("|")[0])].append(key)
        return {p: keys for p, keys in found.items() if partitions is None or p in partitions}


class Derived(Protocol):
    """State derived from a table's records and kept in the same databases
    (``streams/disk_index.py``): its writes go into the batch of the records'."""

    def derive(
        self, partition: int, db: Any, batch: WriteBatch, writes: Writes, offset: int | None
    ) -> Any:
        """Adds to ``batch`` what ``writes`` (the partition's, not written yet) imply;
        returns it."""

    def landed(self, partition: int, derived: Any) -> None:
        """``derived`` (``derive``'s answer) is on disk."""


class _Flush(Ticket):
    """A RocksStore ticket: the records sent, and how many are not acked yet."""

    def __init__(self, settle: Callable[[], None]) -> None:
        self.writes: dict[str, Any] = {}
        self.waiting = 1  # the flush itself, until it has sent everything
        self.offset = -1
        self.failed = False
        self._settle = settle

    def add(self, key: str, value: Any, delivery: Any) -> None:
        if not isinstance(delivery, asyncio.Future):
            raise TypeError(f"{key}: expected the send's future, got {type(delivery).__name__}")
        self.writes[key] = value
        self.waiting += 1
        delivery.add_done_callback(self._acked)

    def _acked(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed = True
        else:
            self.offset = max(self.offset, future.result().offset)
        self.done()

    def done(self) -> None:
        self.waiting -= 1
        self._settle()


class RocksStore(LocalStore):
    """A table's RocksDB databases through Faust's store, with the overlay of writes whose
    records are not acked yet (see the module's docstring)."""

    def __init__(
        self,
        faust_store: Any,
        raw_values: bool,
        assigned: Callable[[int], bool],
        active: Callable[[int], bool],
    ) -> None:
        self.faust_store = faust_store
        self.raw_values = raw_values  # tables declared with value_type=bytes
        self.assigned = assigned  # is the table's partition assigned here (active/standby)?
        self.active = active  # ... and active here (ours to write)?
        self.overlay: defaultdict[int, dict[str, Any]] = defaultdict(dict)
        self.tickets: defaultdict[int, deque[_Flush]] = defaultdict(deque)
        self.broken: set[int] = set()  # partitions whose writes stay off disk (a send failed)
        self.dropped = 0  # writes acked after Faust closed their partition: not stored
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.derived: Derived | None = None  # written with the records, in their batch
        # acked writes and their highest offset, waiting for the partition's landing
        self.landing: dict[int, tuple[dict[str, Any], int]] = {}
        self._land_timers: dict[int, asyncio.TimerHandle] = {}
        self.land_after = LAND_AFTER

    def _db(self, partition: int) -> Any:
        """The partition's open database; opened only when it is assigned here."""
        db = self.faust_store._dbs.get(partition)
        if db is not None:
            return db
        if not self.assigned(partition):
            raise NotHeld(f"{self.faust_store.table.name}[{partition}] is not held by this "
                          "worker: not opening an empty store for it")  # fmt: skip
        return self.faust_store._db_for_partition(partition)

    def _decode(self, raw: bytes) -> Any:
        return raw if self.raw_values else orjson.loads(raw)

    def get(self, partition: int, key: str, *, scan: bool = False) -> Any:
        overlay = self.overlay.get(partition)
        if overlay is not None and key in overlay:
            return overlay[key]
        db = self._db(partition)
        raw = db.get(orjson.dumps(key), None, SCAN_READ) if scan else db.get(orjson.dumps(key))
        return None if raw is None else self._decode(raw)

    def keys(self, partition: int) -> list[str]:
        return list(self.iter_keys(partition))

    def iter_keys(self, partition: int) -> Iterator[str]:
        overlay = dict(self.overlay.get(partition, {}))
        db = self._db(partition)  # an Rdict: iter(db) is not its keys in raw mode
        for raw_key in db.keys():  # noqa: SIM118
            if raw_key != OFFSET_KEY:
                key = orjson.loads(raw_key)
                if key not in overlay:
                    yield key
        yield from (k for k, v in overlay.items() if v is not None)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        overlay = dict(self.overlay.get(partition, {}))
        for raw_key, raw in self._db(partition).items():
            if raw_key != OFFSET_KEY:
                key = orjson.loads(raw_key)
                if key not in overlay:
                    yield key, self._decode(raw)
        yield from ((k, v) for k, v in overlay.items() if v is not None)

    def walk(
        self, partition: int, after: str | None, limit: int
    ) -> tuple[list[tuple[str, Any]], str | None]:
        """In key order, a fresh iterator per slice: one held across awaits would keep a
        revoked partition's database open (and its lock held) after Faust dropped it. The
        first slice also holds the overlay's writes (not on disk yet); blocks are read
        without filling the cache (``SCAN_READ``): a walk reads each of them once."""
        db = self._db(partition)
        found: list[tuple[str, Any]] = []
        if after is None:
            found += ((k, v) for k, v in self.overlay.get(partition, {}).items() if v is not None)
        start = None if after is None else orjson.dumps(after)
        for raw_key, raw in db.items(from_key=start, read_opt=SCAN_READ):
            if raw_key in (start, OFFSET_KEY):
                continue
            key = orjson.loads(raw_key)
            found.append((key, self._decode(raw)))
            if len(found) >= limit:
                return found, key
        return found, None

    def put(self, partition: int, key: str, value: Any) -> None:
        if partition not in self.faust_store._dbs:
            self._db(partition)  # raises NotHeld: never an overlay for someone else's data
        self.overlay[partition][key] = value

    def apply(self, partition: int, writes: Writes, offset: int | None) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(orjson.dumps(key))
            else:
                batch.put(orjson.dumps(key), record_value(value))
        if offset is not None:
            batch.put(OFFSET_KEY, str(offset).encode())
        db = self._db(partition)
        derived = (
            None
            if self.derived is None
            else self.derived.derive(partition, db, batch, writes, offset)
        )
        db.write(batch)
        if self.derived is not None:
            self.derived.landed(partition, derived)

    @asynccontextmanager
    async def sending(self, partition: int) -> AsyncIterator[Ticket]:
        async with self._locks[partition]:  # one flush at a time: tickets in offset order
            ticket = _Flush(lambda: self._settle(partition))
            self.tickets[partition].append(ticket)
            try:
                yield ticket
            finally:
                ticket.done()

    def _settle(self, partition: int) -> None:
        """Takes the acked tickets at the head of the partition's queue into its landing,
        written ``land_after`` seconds after the first of them, in one batch.

        Why wait: every batch of a drain rewrites the same pane groups (and other hot
        keys), and landing each ack on its own wrote each of them to RocksDB tens of times
        a second: memtable inserts, then flushes and compactions of the copies on the
        store's background threads, all on the worker's two cores beside the broker. A
        landing writes each key once. The price: the overlay holds the acked writes a
        moment longer, and a ``kill -9`` leaves the disk up to that much further behind
        the changelog (replayed at the restart, as any unlanded write)."""
        queue = self.tickets[partition]
        if not queue or queue[0].waiting:
            return
        writes, offset = self.landing.get(partition) or ({}, -1)
        while queue and queue[0].waiting == 0:
            ticket = queue.popleft()
            if ticket.failed and partition not in self.broken:
                log.warning("a changelog send of partition %d failed: its store stays "
                            "behind the changelog until the restart", partition)  # fmt: skip
                self.broken.add(partition)
            writes.update(ticket.writes)
            offset = max(offset, ticket.offset)
        self.landing[partition] = (writes, offset)
        if self.land_after <= 0:
            self._land(partition)
        elif partition not in self._land_timers:
            loop = asyncio.get_running_loop()
            self._land_timers[partition] = loop.call_later(self.land_after, self._land, partition)

    def _land(self, partition: int) -> None:
        """Writes the partition's landing (``_settle``) and its offset to its database."""
        timer = self._land_timers.pop(partition, None)
        if timer is not None:
            timer.cancel()
        writes, offset = self.landing.pop(partition, ({}, -1))
        if partition in self.broken or not (writes or offset >= 0):
            return
        if partition not in self.faust_store._dbs:  # closed by a revocation: never reopen
            self.dropped += len(writes)
            log.info("%d writes of revoked partition %d acked after it was closed: left to "
                     "the changelog", len(writes), partition)  # fmt: skip
            return
        self.apply(partition, writes, offset if offset >= 0 else None)
        overlay = self.overlay[partition]
        for key, value in writes.items():
            if key in overlay and overlay[key] is value:  # not written again since
                del overlay[key]

    async def settled(self) -> None:
        """Returns once every flush sent so far is acknowledged (or failed), and what was
        acked is on disk (landed now, not after ``land_after``)."""
        while any(self.tickets.values()):  # noqa: ASYNC110 (acks arrive as callbacks)
            await asyncio.sleep(SETTLE_POLL)
        for partition in list(self.landing):
            self._land(partition)

    def forget_revoked(self) -> set[int]:
        """Drops what this store keeps for partitions no longer active here (closed by
        Faust, or kept as a standby copy); returns them. Their overlay is stale from now
        on: Faust restores or replicates the partition into its database, and an old
        overlay would hide that; their tickets go too, so an acknowledgement still
        under way writes nothing over what the standby replication applied."""
        kept = self.overlay.keys() | self.tickets.keys() | self.landing.keys() | self.broken
        gone = {p for p in kept if p not in self.faust_store._dbs or not self.active(p)}
        for partition in gone:
            unsettled = len(self.tickets.pop(partition, ()))
            unlanded = len(self.landing.pop(partition, ({}, -1))[0])
            timer = self._land_timers.pop(partition, None)
            if timer is not None:
                timer.cancel()
            if unsettled or unlanded:
                log.info("partition %d revoked with %d flushes not acknowledged yet and %d "
                         "acked writes not on disk: left to the changelog", partition,
                         unsettled, unlanded)  # fmt: skip
            self.overlay.pop(partition, None)
            self.broken.discard(partition)
            self._locks.pop(partition, None)
        return gone

    def estimate(self, partition: int) -> int:
        estimated = self._db(partition).property_int_value("rocksdb.estimate-num-keys")
        return int(estimated or 0)

    def partitions(self) -> set[int]:
        return set(self.faust_store._dbs)

    def release_memory(self) -> int:
        """Writes every open database's memtables to disk, each column family's (a flush
        of a database is its default family's only): once on disk the records are read
        through the block cache, and the memtables' memory goes back; then empties the
        block cache the databases share (``rocks_memory.SharedMemory.drop_blocks``: the
        first store's call empties it for all). Blocks the event loop while RocksDB
        writes them (the memtables are at most half the budget, ``rocks_memory``): for an
        idle worker only (``streams/idle_release.py``). Returns the bytes released."""
        held = 0
        for db in list(self.faust_store._dbs.values()):
            for name in Rdict.list_cf(db.path()):
                family = db if name == "default" else db.get_column_family(name)
                held += int(family.property_int_value(MEMTABLES) or 0)
                family.flush()
        shared = getattr(self.faust_store.rocksdb_options, "shared", None)  # a budget's
        return held + (shared.drop_blocks() if shared is not None else 0)


# Keyed by identity, never by equality: Faust's stores are Mappings, so a lookup in a
# WeakKeyDictionary (whose probe is a fresh weakref, equal to the stored one only through
# ``Store == Store``) ran ``Mapping.__eq__``: a scan of the whole RocksDB store, decoding
# every key, on every call (publish ticks of 10-30 s, drains several times slower).
_ROCKS: dict[int, tuple[weakref.ref[Any], RocksStore]] = {}


def local_store(table: Any) -> LocalStore:
    """The store of ``table`` (one RocksStore per Faust store: its overlay is shared by
    every view and reader of the table)."""
    data = table.data
    if not hasattr(data, "_db_for_partition"):
        return MemoryStore(data)
    key = id(data)
    found = _ROCKS.get(key)
    if found is not None and found[0]() is data:
        return found[1]
    raw = getattr(table, "value_type", None) is bytes
    store = RocksStore(data, raw, assigned_here(table), assigned_here(table, standby=False))

    def forget(ref: weakref.ref[Any], key: int = key, rocks: dict[int, Any] = _ROCKS) -> None:
        # ``rocks`` bound now: at interpreter exit the module's globals are None already
        entry = rocks.get(key)
        if entry is not None and entry[0] is ref:  # not a newer store at a reused id
            del rocks[key]

    _ROCKS[key] = (weakref.ref(data, forget), store)
    return store


def rocks_stores(tables: Iterable[Any]) -> list[RocksStore]:
    """The RocksDB stores of ``tables`` (none with the memory store)."""
    return [s for s in map(local_store, tables) if isinstance(s, RocksStore)]


def assigned_here(table: Any, standby: bool = True) -> Callable[[int], bool]:
    """Is ``table``'s changelog partition assigned to this worker, active (or, with
    ``standby``, standby)? (Faust's assignor, which the group's assignment updates before
    Faust opens or closes the partitions' databases.)"""

    def assigned(partition: int) -> bool:
        assignor = table.app.assignor
        tp = TP(table.changelog_topic.get_topic_name(), partition)
        return tp in assignor.assigned_actives() or (standby and tp in assignor.assigned_standbys())

    return assigned
