"""Fixed event-time panes, and rolling windows as sums of panes ("stream slicing").

Each event increments one pane per granularity, whatever the number of windows; a
rolling window is summed from panes when it is published. Windows up to an hour use
minute panes; longer ones use coarse panes (15 min by default) so that 24 h of history
stays small. A window of length W published at ``now`` covers the event-time range
``[now - W, now]`` rounded out to whole panes: every pane that overlaps it counts, so a
window never shows less than W of history and never flickers to zero at a pane edge.
Faust's own windows end 0.1 s early and truncate steps; owning the arithmetic avoids both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .durations import parse_duration

FINE_PANE = 60
COARSE_PANE = 900
FINE_LIMIT = 3600  # windows up to this length use fine panes


@dataclass(frozen=True)
class WindowSpec:
    name: str
    seconds: int
    pane: int

    def first_pane(self, now: float) -> int:
        return pane_start(now - self.seconds, self.pane)

    def last_pane(self, now: float) -> int:
        return pane_start(now, self.pane)

    def pane_starts(self, now: float) -> range:
        return range(self.first_pane(now), self.last_pane(now) + 1, self.pane)


def pane_start(ts: float, size: int) -> int:
    """Start of the pane holding ``ts``; floor, so negative offsets behave too."""
    return int(ts // size) * size


def window_specs(names: Sequence[str]) -> tuple[WindowSpec, ...]:
    specs = []
    for name in names:
        exact = parse_duration(name)
        seconds = int(exact)
        pane = FINE_PANE if seconds <= FINE_LIMIT else COARSE_PANE
        if seconds != exact or seconds <= 0 or seconds % pane:
            raise ValueError(f"window {name} is not a whole number of {pane // 60}-minute panes")
        specs.append(WindowSpec(name, seconds, pane))
    return tuple(specs)


def granularities(specs: Sequence[WindowSpec]) -> tuple[int, ...]:
    """The pane sizes the windows need, each counted once per event."""
    return tuple(sorted({spec.pane for spec in specs}))


def horizon(specs: Sequence[WindowSpec], pane: int) -> int:
    """Seconds of panes of this size that any window can still read."""
    return max(spec.seconds for spec in specs if spec.pane == pane) + pane


def oldest_kept(specs: Sequence[WindowSpec], pane: int, cutoff: float) -> float:
    """The oldest start of a pane of this size still kept when ``cutoff`` is the newest
    time nothing can arrive before: older panes are never read again, so they are not
    written (intake) and are evicted (intake and merge stages)."""
    return cutoff - horizon(specs, pane)
