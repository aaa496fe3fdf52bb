"""event_id dedup with one changelog record per batch of source messages, not per event.

A dedup entry per event would cost a changelog message per event, the single largest
cost of counting. Instead the identities first seen in a batch are written together,
under the batch's first source position, and an in-memory ``IdIndex`` answers lookups.
Records and index hold 64-bit digests of the identities with their packed markers, not
the identities (~16 bytes an id in a record, ~32 in the index, instead of ~430 as
Python strings and tuples). After a restart the index is rebuilt from the recovered
table. Records older than the dedup horizon are swept away (with their index entries),
which keeps the state bounded.

A record is binary: ``<d`` (when it was first seen), ``<I`` n, n pairs of ``<Q`` (digest,
packed marker), then, for the few events whose campaign came from a lead rather than the
event itself, their attribution as JSON (a replay must count where the first sighting
did, whatever the lead state has become since).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator
from typing import Any

import orjson

from .id_index import IdIndex, Marker, pack_marker
from .table_state import PartitionState

Attribution = tuple[str, str]  # (campaign, channel)
_HEAD = struct.Struct("<dI")
# ids per changelog record: 16 bytes each, far below Kafka's 1 MB message limit even with
# a JSON attribution each (a batch of 40,000 sign-ups once made a record the broker
# refused, and the dedup state of the whole batch was lost without a word)
IDS_PER_RECORD = 1_000


class Dedup:
    """A partition's dedup index: digest → packed marker, and the attributions decided
    from lead state (digest → (campaign, channel))."""

    def __init__(self) -> None:
        self.ids = IdIndex()
        self.attributions: dict[int, Attribution] = {}

    def __len__(self) -> int:
        return len(self.ids)


class MessageDedup:
    """The dedup view a batch is counted against; remembers what it added."""

    def __init__(self, dedup: Dedup) -> None:
        self._dedup = dedup
        self.new: list[tuple[int, int, Attribution | None]] = []

    def get(self, digest: int) -> int | None:
        """The packed marker of the identity's first sighting, or None."""
        return self._dedup.ids.get(digest)

    def add(self, digest: int, marker: Marker, attribution: Attribution | None) -> None:
        packed = pack_marker(marker)
        self._dedup.ids.put(digest, packed)
        if attribution is not None:
            self._dedup.attributions[digest] = attribution
        self.new.append((digest, packed, attribution))

    def attribution(self, digest: int) -> Attribution | None:
        return self._dedup.attributions.get(digest)


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


def record_entries(raw: bytes) -> Iterator[tuple[int, int, Attribution | None]]:
    _seen, n = _HEAD.unpack_from(raw)
    end = _HEAD.size + 16 * n
    pairs = array("Q")
    pairs.frombytes(raw[_HEAD.size : end])
    if sys.byteorder == "big":
        pairs.byteswap()
    tail = orjson.loads(raw[end:] or b"[]")
    attributed: dict[int, Attribution] = {digest: (camp, chan) for digest, camp, chan in tail}
    for j in range(0, 2 * n, 2):
        digest = pairs[j]
        yield digest, pairs[j + 1], attributed.get(digest)


async def persist(state: PartitionState[Any], source: str, dedup: MessageDedup, now: float) -> None:
    """Writes the batch's new identities in records keyed by its first source position
    (``source``, then ``source/1``, ``source/2``... for more than ``IDS_PER_RECORD``)."""
    new = dedup.new
    for chunk, start in enumerate(range(0, len(new), IDS_PER_RECORD)):
        key = f"{source}/{chunk}" if chunk else source
        state[key] = encode_record(now, new[start : start + IDS_PER_RECORD])
    if new:
        await state.flush()


def rebuild(state: PartitionState[Any]) -> Dedup:
    dedup = Dedup()
    for key in state:
        for digest, packed, attribution in record_entries(state[key]):
            if digest not in dedup.ids:  # the first record of an id wins
                dedup.ids.put(digest, packed)
                if attribution is not None:
                    dedup.attributions[digest] = attribution
    return dedup


def cutoff_for_cap(state: PartitionState[Any], index_size: int, cap: int, before: float) -> float:
    """The sweep time that brings the index under ``cap`` ids, oldest records first."""
    if index_size <= cap:
        return before
    records = sorted(record_head(state[key]) for key in state)
    excess = index_size - cap
    for seen, size in records:  # oldest first; those before the horizon go anyway
        if excess <= 0:
            break
        excess -= size
        before = max(before, seen + 1e-6)
    return before


async def sweep(state: PartitionState[Any], dedup: Dedup, before: float) -> int:
    """Forgets message records first seen before ``before``; returns identities dropped."""
    dropped = 0
    for key in list(state):
        raw = state[key]
        if record_head(raw)[0] >= before:
            continue
        for digest, packed, _attribution in record_entries(raw):
            if dedup.ids.remove(digest, packed):
                dedup.attributions.pop(digest, None)
                dropped += 1
        del state[key]
    await state.flush()
    return dropped
