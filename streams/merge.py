"""The merge stage's rule: per pane, the newest absolute partial from every source.

Scopes that span partitions (``all``, ``channel:*``, and campaigns whose funnel events
arrive through the funnel topic) are owned by one merge partition, keyed by scope. Each
source partition sends absolute partial snapshots with a version; keeping the highest
version per source makes re-sent, replayed or reordered snapshots harmless, so the total
is exact however many workers share the partitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from metrics.counts import Counts, add_into, zero

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
