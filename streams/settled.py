"""Whether every message that was waiting at the previous tick has been processed.

Counts reach the merge stage by paths of different lengths: spend goes straight from the
intake to the merge topic, sign-ups take one more hop through the funnel topic. For a
moment after a burst the merged numbers can hold the spend without its sign-ups, which
reads as "spend without leads". A backlog rule (lag under a slack) cannot see that when
the burst is small. The alert is therefore evaluated only when, on every topic the worker
reads, what was there at the previous tick has been processed since: counts that were
on their way a tick ago have arrived.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


def settled(previous_ends: Mapping[Hashable, int], positions: Mapping[Hashable, int]) -> bool:
    """``previous_ends``: end offsets per partition at the previous tick; ``positions``:
    the next offset to process per partition now. Partitions in only one of them (an
    assignment changed) say nothing; with no previous tick nothing is known."""
    if not previous_ends:
        return False
    return all(positions[tp] >= end for tp, end in previous_ends.items() if tp in positions)
