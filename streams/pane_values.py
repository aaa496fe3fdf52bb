"""The values stored in panes: partial counts with their replay marks, merged totals.

A **partial** pane value is ``[counts, high_water]``, where ``high_water`` maps a source
topic index to the last offset whose contribution is inside ``counts``. The two change
together in one store write and one changelog message, so after a crash a re-delivered
message at or below the mark is recognised and skipped (the Quix Streams remedy, per
pane). The sum of the marks (each counted as offset + 1) is a version that grows with
every message taken in.

A **merged** pane value holds, per source partition, the newest ``[version, counts]``
that source sent. Scopes that span partitions (``all``, ``channel:*``, and campaigns
whose funnel events arrive through the funnel topic) are owned by one merge partition,
keyed by scope; keeping the highest version per source makes re-sent, replayed or
reordered snapshots harmless, so the total is exact however many workers share the
partitions.

How the values are stored, a group of panes per table key: ``streams/pane_groups.py``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from typing import Any

from metrics.counts import Counts, add_into, zero

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


MergedValue = dict[str, list[Any]]  # source id → [version, counts]


def merge_partial(
    stored: MergedValue | None, source: str, version: int, counts: Sequence[int]
) -> MergedValue | None:
    """The pane's new value, or None when the snapshot is not newer than what is held."""
    current = (stored or {}).get(source)
    if current is not None and current[0] >= version:
        return None
    merged = dict(stored or {})
    merged[source] = [version, list(counts)]
    return merged


def total(value: Mapping[str, Sequence[Any]]) -> Counts:
    result = zero()
    for _version, counts in value.values():
        add_into(result, counts)
    return result
