"""event_id dedup with one changelog record per batch of source messages, not per event.

A dedup entry per event would cost a changelog message per event, the single largest
cost of counting. Instead the identities first seen in a batch are written together,
under the batch's first source position, and an index answers lookups: in memory
(``Dedup``: an ``IdIndex``) with the memory store, on disk beside the records with
RocksDB (``streams/disk_index.py``). Records and index hold 64-bit digests of the
identities with their packed markers, not the identities (~16 bytes an id in a record,
~32 in the memory index, instead of ~430 as Python strings and tuples). After a restart
the memory index is rebuilt from the recovered table. Records older than the dedup
horizon are swept away (with their index entries), which keeps the state bounded.

The sweep reads only the records it drops: ``RecordTimes`` keeps every record's first
sighting, id count and key in write order, ~21 bytes a record in arrays. With a 7-day
horizon a partition holds up to 604,800 records at one batch a second, and the scan of
all of them that the sweep did every minute blocked the event loop 2.4 s per partition
with the memory store (0.27 s at 24 h and 86,400 records); the trap is that a sweep that
finds nothing to drop still paid the whole scan.

A record is binary: ``<d`` (when it was first seen), ``<I`` n, n pairs of ``<Q`` (digest,
packed marker), then, for the few events whose campaign came from a lead rather than the
event itself, their attribution as JSON (a replay must count where the first sighting
did, whatever the lead state has become since).
"""

from __future__ import annotations

import struct
import sys
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

import orjson

from .id_index import IdIndex, Marker, pack_marker, unpack_marker
from .table_state import PartitionState

Attribution = tuple[str, str]  # (campaign, channel)
_HEAD = struct.Struct("<dI")
# ids per changelog record: 16 bytes each, far below Kafka's 1 MB message limit even with
# a JSON attribution each (a batch of 40,000 sign-ups once made a record the broker
# refused, and the dedup state of the whole batch was lost without a word)
IDS_PER_RECORD = 1_000


def record_key(source: str, chunk: int) -> str:
    """A record's key: the batch's first source position ``topic:offset``, then
    ``/chunk`` for the records after the first of one batch."""
    return f"{source}/{chunk}" if chunk else source


def _pack_key(key: str) -> int | None:
    """A record key as one int (a marker's layout: topic, offset, chunk), or None for a key
    of another shape (none is written so; such a key is kept as it is)."""
    source, _, chunk = key.partition("/")
    topic, _, offset = source.partition(":")
    try:
        packed = pack_marker((int(topic), int(offset), int(chunk or 0)))
    except ValueError:
        return None
    return packed if _unpack_key(packed) == key else None


def _unpack_key(packed: int) -> str:
    topic, offset, chunk = unpack_marker(packed)
    return record_key(f"{topic}:{offset}", chunk)


class RecordTimes:
    """A partition's dedup records in the order they were first written: (first seen,
    ids held, key), ~21 bytes a record. Oldest first, since batches are persisted as the
    clock goes (a clock stepping back only delays a record's sweep by the step)."""

    def __init__(self) -> None:
        self._seen = array("d")
        self._sizes = array("I")
        self._keys = array("Q")  # the packed key, or the place of the key in ``_other``
        self._packed = array("B")  # 1: ``_keys`` holds the packed key
        self._other: list[str] = []
        self._head = 0  # entries before it are gone

    def __len__(self) -> int:
        return len(self._seen) - self._head

    def add(self, seen: float, key: str, size: int) -> None:
        packed = _pack_key(key)
        self._packed.append(packed is not None)
        if packed is None:  # never freed: no key of this shape is written
            packed = len(self._other)
            self._other.append(key)
        self._seen.append(seen)
        self._sizes.append(size)
        self._keys.append(packed)

    def _key(self, i: int) -> str:
        return _unpack_key(self._keys[i]) if self._packed[i] else self._other[self._keys[i]]

    def oldest(self) -> Iterator[tuple[float, int, str]]:
        """(first seen, ids, key), oldest first."""
        for i in range(self._head, len(self._seen)):
            yield self._seen[i], self._sizes[i], self._key(i)

    def first_seen(self) -> float | None:
        return self._seen[self._head] if len(self) else None

    def pop(self) -> str:
        """Forgets the oldest entry and returns its key."""
        key = self._key(self._head)
        self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._seen):  # compact, amortised O(1)
            for column in (self._seen, self._sizes, self._keys, self._packed):
                del column[: self._head]
            self._head = 0
        return key


class TimesOnFirstRead(RecordTimes):
    """``RecordTimes`` read from the partition's records when first read, not when the
    index opens. Why: the heads are not stored apart, so reading them reads every record
    whole (on disk: every id of the dedup horizon), and at a partition's opening that was
    on the path of a restart's first batch, growing with the history; only the sweep reads
    the times, a minute later at the earliest (``pane_groups.EVICT_EVERY``).

    The trap: an ``add`` before that read is dropped, not kept. The record it names is in
    the store by then (``persist`` writes it in the same step), so the read finds it;
    kept as well, it would be counted twice (and the cap's cut would come too early)."""

    def __init__(self, load: Callable[[], RecordTimes]) -> None:
        super().__init__()
        self._load: Callable[[], RecordTimes] | None = load

    def _ensure(self) -> None:
        if self._load is not None:
            read, self._load = self._load(), None
            self._seen, self._sizes, self._keys = read._seen, read._sizes, read._keys
            self._packed, self._other, self._head = read._packed, read._other, read._head

    def __len__(self) -> int:
        self._ensure()
        return super().__len__()

    def add(self, seen: float, key: str, size: int) -> None:
        if self._load is None:
            super().add(seen, key, size)

    def oldest(self) -> Iterator[tuple[float, int, str]]:
        self._ensure()
        return super().oldest()

    def first_seen(self) -> float | None:
        self._ensure()
        return super().first_seen()

    def pop(self) -> str:
        self._ensure()
        return super().pop()


class DedupIndex(ABC):
    """A partition's dedup index: digest → packed marker of the id's first sighting and
    the attribution decided from lead state, if any; and when each record was written."""

    times: RecordTimes

    @abstractmethod
    def __len__(self) -> int:
        """Ids held."""

    @abstractmethod
    def get(self, digest: int) -> int | None:
        """The packed marker of the identity's first sighting, or None."""

    @abstractmethod
    def attribution(self, digest: int) -> Attribution | None: ...

    @abstractmethod
    def add(
        self, digest: int, packed: int, attribution: Attribution | None, new: bool = False
    ) -> None:
        """Holds ``digest`` at ``packed`` (replacing what it held); ``new``: the caller
        has just found it absent (saves the index a lookup)."""

    @abstractmethod
    def prefetch(self, digests: list[int]) -> None:
        """``digests`` are about to be looked up (an index on disk reads them in one
        call)."""

    @abstractmethod
    def remove(self, digest: int, packed: int) -> bool:
        """Forgets ``digest`` if it still holds ``packed`` (a newer record of the same id
        keeps it); True if it did."""


class Dedup(DedupIndex):
    """The index in memory: an ``IdIndex`` and the attributions (digest → (campaign,
    channel))."""

    def __init__(self) -> None:
        self.ids = IdIndex()
        self.attributions: dict[int, Attribution] = {}
        self.times = RecordTimes()

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, digest: int) -> int | None:
        return self.ids.get(digest)

    def attribution(self, digest: int) -> Attribution | None:
        return self.attributions.get(digest)

    def add(
        self, digest: int, packed: int, attribution: Attribution | None, new: bool = False
    ) -> None:
        self.ids.put(digest, packed)
        if attribution is not None:
            self.attributions[digest] = attribution

    def prefetch(self, digests: list[int]) -> None:
        """Nothing to read ahead in memory."""

    def remove(self, digest: int, packed: int) -> bool:
        if not self.ids.remove(digest, packed):
            return False
        self.attributions.pop(digest, None)
        return True


class MessageDedup:
    """The dedup view a batch is counted against; remembers what it added."""

    def __init__(self, dedup: DedupIndex) -> None:
        self._dedup = dedup
        self.new: list[tuple[int, int, Attribution | None]] = []
        self._missed: int | None = None  # the digest ``get`` last found absent

    def prefetch(self, digests: list[int]) -> None:
        self._dedup.prefetch(digests)

    def get(self, digest: int) -> int | None:
        """The packed marker of the identity's first sighting, or None."""
        found = self._dedup.get(digest)
        self._missed = digest if found is None else None
        return found

    def add(self, digest: int, marker: Marker, attribution: Attribution | None) -> None:
        packed = pack_marker(marker)
        self._dedup.add(digest, packed, attribution, new=digest == self._missed)
        self._missed = None
        self.new.append((digest, packed, attribution))

    def attribution(self, digest: int) -> Attribution | None:
        return self._dedup.attribution(digest)

    @property
    def times(self) -> RecordTimes:
        return self._dedup.times


def encode_record(seen: float, entries: list[tuple[int, int, Attribution | None]]) -> bytes:
    pairs = array("Q", [x for digest, packed, _ in entries for x in (digest, packed)])
    if sys.byteorder == "big":
        pairs.byteswap()
    attributed = [[digest, *attr] for digest, _, attr in entries if attr is not None]
    tail = orjson.dumps(attributed) if attributed else b""
    return _HEAD.pack(seen, len(entries)) + pairs.tobytes() + tail


def record_head(raw: bytes) -> tuple[float, int]:
    """(first seen, number of ids) without reading the ids."""
    seen, n = _HEAD.unpack_from(raw)
    return seen, n


def _pairs(raw: bytes) -> tuple[array[int], list[Any]]:
    """A record's (digest, packed marker) pairs, flat, and its attribution tail."""
    _seen, n = _HEAD.unpack_from(raw)
    end = _HEAD.size + 16 * n
    pairs = array("Q")
    pairs.frombytes(raw[_HEAD.size : end])
    if sys.byteorder == "big":
        pairs.byteswap()
    return pairs, orjson.loads(raw[end:] or b"[]")


def record_entries(raw: bytes) -> Iterator[tuple[int, int, Attribution | None]]:
    pairs, tail = _pairs(raw)
    attributed: dict[int, Attribution] = {digest: (camp, chan) for digest, camp, chan in tail}
    for j in range(0, len(pairs), 2):
        digest = pairs[j]
        yield digest, pairs[j + 1], attributed.get(digest)


def record_markers(raw: bytes) -> dict[int, int]:
    """digest → packed marker of a record's ids (``record_entries`` without the
    attributions, in C loops: the disk index reads every record it writes or deletes)."""
    pairs, _tail = _pairs(raw)
    return dict(zip(pairs[0::2], pairs[1::2], strict=True))


def record_map(raw: bytes) -> dict[int, tuple[int, Attribution | None]]:
    """digest → (packed marker, attribution) of a record's ids, as ``record_entries``."""
    pairs, tail = _pairs(raw)
    none: Attribution | None = None
    found = dict(zip(pairs[0::2], zip(pairs[1::2], repeat(none), strict=False), strict=True))
    for digest, campaign, channel in tail:
        found[digest] = (found[digest][0], (campaign, channel))
    return found


async def persist(
    state: PartitionState[Any], source: str, dedup: MessageDedup, now: float
) -> list[Any]:
    """Writes the batch's new identities in records keyed by its first source position
    (``source``, then ``source/1``, ``source/2``... for more than ``IDS_PER_RECORD``);
    returns the sends' futures.

    The trap: a key already held is never written over. A batch replayed after a crash
    or a rebalance is not the batch first read: it starts at the same position but holds
    more or fewer messages, so its new identities are another set, and writing its
    record over the first one's dropped the first one's identities from the changelog
    (and, on disk, from the index): a later copy of one of those events was then counted
    again. Such a batch takes the next free chunk number instead."""
    new = dedup.new
    chunk = 0
    for start in range(0, len(new), IDS_PER_RECORD):
        while record_key(source, chunk) in state:
            chunk += 1
        key = record_key(source, chunk)
        entries = new[start : start + IDS_PER_RECORD]
        dedup.times.add(now, key, len(entries))
        state[key] = encode_record(now, entries)
        chunk += 1
    return await state.flush() if new else []


def rebuild(state: PartitionState[Any]) -> Dedup:
    """The memory index of the records in ``state``."""
    dedup = Dedup()
    for key in state:
        for digest, packed, attribution in record_entries(state[key]):
            if dedup.get(digest) is None:  # the first record of an id wins
                dedup.add(digest, packed, attribution)
    dedup.times = record_times(state)
    return dedup


def record_times(state: PartitionState[Any]) -> RecordTimes:
    """The ``RecordTimes`` of the records in ``state`` (their heads only)."""
    heads = [(*record_head(state[key]), key) for key in state]
    times = RecordTimes()
    for seen, size, key in sorted(heads, key=lambda head: (head[0], head[2])):
        times.add(seen, key, size)
    return times


def cutoff_for_cap(times: RecordTimes, index_size: int, cap: int, before: float) -> float:
    """The sweep time that brings the index under ``cap`` ids, oldest records first (read
    from ``times``: only as far as the records that have to go)."""
    if index_size <= cap:
        return before
    excess = index_size - cap
    for seen, size, _key in times.oldest():  # those before the horizon go anyway
        if excess <= 0:
            break
        excess -= size
        before = max(before, seen + 1e-6)
    return before


async def sweep(state: PartitionState[Any], dedup: DedupIndex, before: float) -> int:
    """Forgets message records first seen before ``before``; returns identities dropped.
    Reads the records due (``dedup.times``), not every record."""
    times = dedup.times
    due: list[str] = []
    while (first := times.first_seen()) is not None and first < before:
        due.append(times.pop())
    dropped = 0
    for key in due:
        raw = state.get(key)
        if raw is None or record_head(raw)[0] >= before:
            continue  # gone, or rewritten later (replays did before d0cbfce: old stores)
        for digest, packed, _attribution in record_entries(raw):
            dropped += dedup.remove(digest, packed)
        del state[key]
    await state.flush()
    return dropped
