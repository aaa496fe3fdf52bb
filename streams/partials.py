"""Partial pane counts: what one source partition has counted, replay-safe.

Each value is ``[counts, high_water]`` where ``high_water`` maps a source topic index to
the last offset whose contribution is inside ``counts``. The two change together in one
store write and one changelog message, so after a crash a re-delivered message at or
below the mark is recognised and skipped (the Quix Streams remedy, per pane). The sum of
the marks (each counted as offset + 1) is a version that grows with every message taken
in, which lets the merge stage keep the newest
absolute snapshot of each partial and ignore stale or repeated ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from typing import Any

from metrics.counts import add_into, zero

PartialValue = list[Any]  # [counts: list[int], high_water: dict[str, int]]


def apply_delta(
    state: MutableMapping[Any, PartialValue],
    key: Hashable,
    delta: Sequence[int],
    topic: int,
    offset: int,
) -> bool:
    """Adds one message's delta unless this pane already holds that message."""
    value = state.get(key)
    if value is None:
        value = [zero(), {}]
    marks: dict[str, int] = value[1]
    if marks.get(str(topic), -1) >= offset:
        return False
    add_into(value[0], delta)
    marks[str(topic)] = offset
    state[key] = value
    return True


def version(value: PartialValue) -> int:
    """Grows with every message a pane takes in, offset 0 included: a mark counts as its
    offset + 1 (with the plain sum, a first message at offset 0 left the version as it
    was, and the merge stage kept the older snapshot without that message's counts)."""
    marks: Mapping[str, int] = value[1]
    return sum(marks.values()) + len(marks)
