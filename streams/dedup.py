"""event_id dedup with one changelog record per source message, not per event.

A dedup entry per event would cost a changelog message per event, the single largest
cost of counting. Instead the identities first seen in a message are written together,
under that message's source position, and an in-memory index answers lookups. After a
restart the index is rebuilt from the recovered table. Records older than the dedup
horizon are swept away (with their index entries), which keeps the state bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from .table_state import PartitionState

DedupRecord = tuple[Any, ...]  # (topic, offset, index, campaign, channel)


class MessageDedup(MutableMapping[str, DedupRecord]):
    """The dedup view one message is counted against."""

    def __init__(self, index: dict[str, DedupRecord]) -> None:
        self._index = index
        self.new: list[list[Any]] = []

    def __getitem__(self, identity: str) -> DedupRecord:
        return self._index[identity]

    def get(self, identity: str, default: Any = None) -> Any:
        return self._index.get(identity, default)

    def __setitem__(self, identity: str, record: DedupRecord) -> None:
        self._index[identity] = record
        self.new.append([identity, *record])

    def __delitem__(self, identity: str) -> None:
        del self._index[identity]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


# identities per changelog record: ~100 B each, 1,000 stay far below Kafka's 1 MB message
# limit even with long event ids (a batch of 40,000 sign-ups made a record the broker
# refused, and the dedup state of the whole batch was lost without a word)
IDS_PER_RECORD = 1_000


async def persist(state: PartitionState[Any], source: str, dedup: MessageDedup, now: float) -> None:
    """Writes the batch's new identities in records keyed by its first source position
    (``source``, then ``source/1``, ``source/2``... for more than ``IDS_PER_RECORD``)."""
    new = dedup.new
    for chunk, start in enumerate(range(0, len(new), IDS_PER_RECORD)):
        key = f"{source}/{chunk}" if chunk else source
        state[key] = [now, new[start : start + IDS_PER_RECORD]]
    if new:
        await state.flush()


def rebuild(state: PartitionState[Any]) -> dict[str, DedupRecord]:
    index: dict[str, DedupRecord] = {}
    for key in state:
        _seen, entries = state[key]
        for identity, *record in entries:
            index.setdefault(identity, tuple(record))
    return index


def cutoff_for_cap(state: PartitionState[Any], index_size: int, cap: int, before: float) -> float:
    """The sweep time that brings the index under ``cap`` ids, oldest records first."""
    if index_size <= cap:
        return before
    records = sorted((state[key][0], len(state[key][1])) for key in state)
    excess = index_size - cap
    for seen, size in records:  # oldest first; those before the horizon go anyway
        if excess <= 0:
            break
        excess -= size
        before = max(before, seen + 1e-6)
    return before


async def sweep(state: PartitionState[Any], index: dict[str, DedupRecord], before: float) -> int:
    """Forgets message records first seen before ``before``; returns identities dropped."""
    dropped = 0
    for key in list(state):
        seen, entries = state[key]
        if seen >= before:
            continue
        for identity, *record in entries:
            if index.get(identity) == tuple(record):
                del index[identity]
                dropped += 1
        del state[key]
    await state.flush()
    return dropped
