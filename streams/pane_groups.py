"""Panes stored in groups: one table key and one changelog record per (scope, pane size,
block of ``GROUP_PANES`` panes), kept as the record's compact bytes.

One key per pane cost ~680 bytes of Python objects per pane (a key string, a dict entry,
a list of 15 ints and a marks dict), and 10,000 campaigns with 24 h of history hold
millions of panes (``bench/pane_memory.py`` measures the layouts). Grouped and encoded,
a pane costs a few dozen bytes: the group's bytes hold only the non-zero counts. A batch
decodes the groups it touches once, changes panes as Python objects, and re-encodes each
dirty group once at flush, so a live pane's write rewrites at most a block of panes
(a few hundred bytes on the changelog), not a scope's whole history.

Pane values keep the formats of ``pane_values``; only storage changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from metrics.counts import WIDTH, Counts

from .table_state import PartitionView, compact_json

GROUP_PANES = 16  # minute panes: 16-minute blocks; hourly panes: 16-hour blocks
# Decoded groups a stage keeps between batches: the hot ones (``all``, the channels) are
# a few dozen. A decoded group is up to ~16 KB of Python objects against ~0.6 KB of
# record (16 panes, tracemalloc), and 9,734 were alive in the 10,000-campaign drain
# (``bench/memtrace.py``) with 1,024 kept by each of the three stages' caches.
CACHED_GROUPS = 256
EVICT_EVERY = 60.0  # seconds between rounds that drop groups no window reads any more
# The one key of a partials table that is not a group: the partition's sent mark, the
# high waters its merge snapshots are known to be delivered through (partial_counts.py)
SENT_MARK = "~sent"
PaneKey = tuple[str, int, int]  # (scope, pane size, pane start)
GroupKey = tuple[str, int, int]  # (scope, pane size, block start)
V = TypeVar("V")


def block_of(size: int, start: int) -> int:
    """Start of the block of panes holding the pane at ``start`` (floor, like panes)."""
    return start - start % (size * GROUP_PANES)


def group_last_start(size: int, block: int) -> int:
    """Start of the newest pane a group can hold: the group is stale once that one is."""
    return block + size * (GROUP_PANES - 1)


def group_key(scope: str, size: int, block: int) -> str:
    """A group's key within its partition (the store key adds ``partition|`` in front)."""
    return f"{scope}|{size}|{block}"


def split_group_key(key: str) -> GroupKey:
    scope, size, block = key.rsplit("|", 2)
    return scope, int(size), int(block)


def group_key_of(store_key: str) -> str | None:
    """The group key within its partition that a partials table's store key
    (``partition|scope|size|block``) holds, or None for the partition's sent mark: the one
    record of the table that is not a group. Every reader of a partials table's records
    asks here, so the rule is kept once."""
    key = store_key.partition("|")[2]
    return None if key == SENT_MARK else key


def sparse(counts: Counts) -> list[int]:
    """``[field, value, field, value, ...]`` of the non-zero counts."""
    flat: list[int] = []
    for i, value in enumerate(counts):
        if value:
            flat += (i, value)
    return flat


def dense(flat: list[int]) -> Counts:
    counts = [0] * WIDTH
    for j in range(0, len(flat), 2):
        counts[flat[j]] = flat[j + 1]
    return counts


@dataclass(frozen=True)
class PaneCodec(Generic[V]):
    """How one pane's value is written into its group's record and read back."""

    encode: Callable[[int, V], list[Any]]
    decode: Callable[[list[Any]], V]


def _encode_partial(start: int, value: list[Any]) -> list[Any]:
    marks = [x for topic, offset in value[1].items() for x in (int(topic), offset)]
    return [start, sparse(value[0]), marks]


def _decode_partial(entry: list[Any]) -> list[Any]:
    marks = entry[2]
    return [dense(entry[1]), {str(marks[j]): marks[j + 1] for j in range(0, len(marks), 2)}]


def _encode_merged(start: int, value: dict[str, list[Any]]) -> list[Any]:
    entry: list[Any] = [start]
    for source, (ver, counts) in value.items():
        entry += (source, ver, sparse(counts))
    return entry


def _decode_merged(entry: list[Any]) -> dict[str, list[Any]]:
    return {entry[j]: [entry[j + 1], dense(entry[j + 2])] for j in range(1, len(entry), 3)}


PARTIAL: PaneCodec[list[Any]] = PaneCodec(_encode_partial, _decode_partial)
MERGED: PaneCodec[dict[str, list[Any]]] = PaneCodec(_encode_merged, _decode_merged)


def decode_group(codec: PaneCodec[V], raw: bytes, size: int, block: int) -> dict[int, V]:
    """Every pane of a group's record, start → value."""
    return {block + entry[0] * size: codec.decode(entry) for entry in orjson.loads(raw)}


def partial_marks(raw: bytes) -> Iterator[list[int]]:
    """Each pane's marks in a partials group's record, flat (``[topic, offset, topic,
    offset, ...]``), the counts left undecoded: a recovery reads the marks of every group
    a partition holds (``stored_walk.StoredWalk``), and decoding whole panes for it was
    three fifths of that scan."""
    for entry in orjson.loads(raw):
        yield entry[2]


def encode_group(codec: PaneCodec[V], panes: dict[int, V], size: int, block: int) -> bytes:
    group: _Group[V] = _Group(codec, None, size, block)
    group.values = dict(panes)
    return group.encode() or b"[]"


def merged_totals(raw: bytes, size: int, block: int) -> dict[int, Counts]:
    """Per pane start, the sum over sources of a merged group's counts, read straight from
    its record (the publish tick reads every pane of a scope; decoding them into the merge
    stage's objects first would double the work)."""
    totals: dict[int, Counts] = {}
    for entry in orjson.loads(raw):
        counts = [0] * WIDTH
        for j in range(3, len(entry), 3):
            flat = entry[j]
            for k in range(0, len(flat), 2):
                counts[flat[k]] += flat[k + 1]
        totals[block + entry[0] * size] = counts
    return totals


class _Group(Generic[V]):
    """One group's panes: entries as read from its record, each decoded on first access
    (a batch that adds to one pane of a group of 16 decodes that one: decoding every
    pane of every group touched was a third of the worker's time). An entry names its
    pane by its place in the block (0-15), not by its 10-digit start."""

    __slots__ = ("block", "codec", "entries", "size", "values")

    def __init__(self, codec: PaneCodec[V], raw: bytes | None, size: int, block: int) -> None:
        self.codec = codec
        self.size, self.block = size, block
        self.entries: dict[int, list[Any]] = (
            {} if raw is None else {block + e[0] * size: e for e in orjson.loads(raw)}
        )
        self.values: dict[int, V] = {}

    def get(self, start: int) -> V | None:
        value = self.values.get(start)
        if value is None:
            entry = self.entries.get(start)
            if entry is None:
                return None
            value = self.values[start] = self.codec.decode(entry)
        return value

    def put(self, start: int, value: V) -> None:
        self.values[start] = value

    def delete(self, start: int) -> bool:
        found = self.values.pop(start, None) is not None
        return self.entries.pop(start, None) is not None or found

    def starts(self) -> set[int]:
        return self.entries.keys() | self.values.keys()

    def encode(self) -> bytes | None:
        """The group's record (None when it holds no pane); panes never decoded keep
        their entries as read."""
        entries = dict(self.entries)
        for start, value in self.values.items():
            entries[start] = self.codec.encode((start - self.block) // self.size, value)
        if not entries:
            return None
        return compact_json([entries[k] for k in sorted(entries)])


class GroupCache(Generic[V]):
    """Decoded groups kept between batches (the merge stage reads the same few groups of
    ``all`` and each channel in every batch; decoding them again was a quarter of the
    worker's time). A view takes a group out while it uses it and puts it back, with the
    record it now matches, when done; a group is reused only while the store still holds
    that record (Faust's recovery and standby replication write the store directly), so a
    stale or half-changed group is never read. Compared by value, not identity: RocksDB
    returns new bytes at every read (equal bytes of the same object compare at once)."""

    def __init__(self, limit: int = CACHED_GROUPS) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[bytes, _Group[V]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, full: str, raw: bytes | None) -> _Group[V] | None:
        hit = self._entries.pop(full, None)
        return hit[1] if hit is not None and raw is not None and hit[0] == raw else None

    def put(self, full: str, raw: bytes | None, group: _Group[V]) -> None:
        self._entries.pop(full, None)
        if raw is None:
            return
        self._entries[full] = (raw, group)  # the newest last
        if len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]


class PaneGroups(PartitionView, MutableMapping[PaneKey, V]):
    """One partition's panes of a grouped table, as a mapping from (scope, size, start).

    Groups are read on first use and kept for the life of this view (one batch);
    ``write_through`` encodes the dirty ones into the table's store, ``flush`` also sends
    them to the changelog, ``close`` hands the groups back to the cache. Faust restores
    the records as they are (the table is declared with ``value_type=bytes``), so the
    store always holds encoded groups.
    """

    def __init__(
        self,
        table: Any,
        partition: int,
        codec: PaneCodec[V],
        cache: GroupCache[V] | None = None,
    ) -> None:
        super().__init__(table, partition)
        self._codec = codec
        self._cache = cache
        self._open: dict[str, _Group[V]] = {}
        self._read: dict[str, bytes | None] = {}  # the record each open group was read from
        self._unsent: set[str] = set()  # written through, not yet on the changelog

    def _full(self, scope: str, size: int, start: int) -> str:
        return self._prefix + group_key(scope, size, block_of(size, start))

    def _group(self, full: str) -> _Group[V]:
        group = self._open.get(full)
        if group is None:
            raw = self._stored(full)
            group = self._cache.take(full, raw) if self._cache is not None else None
            if group is None:
                _scope, size, block = split_group_key(full)
                group = _Group(self._codec, raw, size, block)
            self._open[full] = group
            self._read[full] = raw
        return group

    def group(self, scope: str, size: int, block: int) -> dict[int, V]:
        """Every pane of one group, start → value (do not change the values directly)."""
        group = self._group(self._prefix + group_key(scope, size, block))
        values = {start: group.get(start) for start in group.starts()}
        return {start: value for start, value in values.items() if value is not None}

    def get(self, key: PaneKey, default: Any = None) -> Any:
        scope, size, start = key
        value = self._group(self._full(scope, size, start)).get(start)
        return default if value is None else value

    def __getitem__(self, key: PaneKey) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self.get(key) is not None  # type: ignore[arg-type]

    def __setitem__(self, key: PaneKey, value: V) -> None:
        scope, size, start = key
        full = self._full(scope, size, start)
        self._group(full).put(start, value)
        self._dirty.add(full)

    def __delitem__(self, key: PaneKey) -> None:
        scope, size, start = key
        full = self._full(scope, size, start)
        if not self._group(full).delete(start):
            raise KeyError(key)
        self._dirty.add(full)

    def group_keys(self) -> Iterator[GroupKey]:
        """This partition's groups, stored or opened by this view (none decoded), one at
        a time: consume it before awaiting. The eviction round walks every group of a
        partition each minute; a set and a list of them all (200,000 keys a partition at
        10,000 campaigns × 24 h) was a transient spike of ~30 MB every time, and 35 days
        of hourly groups would be more."""
        cut = len(self._prefix)
        opened = set(self._open)
        for full in self._iter_stored_keys():
            key = group_key_of(full)
            if key is None:
                continue
            opened.discard(full)
            yield split_group_key(key)
        for full in opened:
            yield split_group_key(full[cut:])

    def drop_group(self, scope: str, size: int, block: int) -> None:
        full = self._prefix + group_key(scope, size, block)
        self._open[full] = _Group(self._codec, None, size, block)
        self._read.setdefault(full, None)
        self._dirty.add(full)

    def __iter__(self) -> Iterator[PaneKey]:
        for scope, size, block in self.group_keys():
            group = self._group(self._prefix + group_key(scope, size, block))
            for start in sorted(group.starts()):
                yield scope, size, start

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def write_through(self) -> list[str]:
        """Encodes the dirty groups into the store (no awaiting: readers of the store see
        every change of this view at once — a store on disk holds them in its overlay
        until the changelog has them); returns their keys, still to be sent."""
        dirty, self._dirty = self._dirty, set()
        for full in dirty:
            group = self._open.pop(full)
            del self._read[full]
            raw = group.encode()
            self._put(full, raw)
            if self._cache is not None:
                self._cache.put(full, raw, group)
        self._unsent |= dirty
        return list(dirty)

    def close(self) -> None:
        """Hands the groups this view only read back to the cache (dirty ones went back
        at ``write_through``; a view dropped with unwritten changes gives back nothing)."""
        if self._cache is not None:
            for full, group in self._open.items():
                if full not in self._dirty:
                    self._cache.put(full, self._read[full], group)
        self._open.clear()
        self._read.clear()

    async def flush(self) -> list[Any]:
        """Sends every dirty group's record (or a tombstone) to the changelog; returns the
        sends' futures."""
        self.write_through()
        unsent, self._unsent = self._unsent, set()
        return await self._send(unsent)
