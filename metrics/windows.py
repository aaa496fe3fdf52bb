"""Fixed event-time panes of two sizes, and rolling windows as sums of panes ("stream slicing").

Each event increments one pane per size, whatever the number of windows: its **minute**
pane while it is within ``MINUTE_PANES_KEPT`` (25 h), its **hourly** pane while it is
within the horizon (``FUNNELPULSE_HORIZON``, 35 days by default). A rolling window of
length W published at ``now`` covers the event-time range ``[start, end)``:

- ``end`` is the end of the minute holding ``now`` (so the current minute counts as soon
  as it has events: a window never flickers to zero at a pane edge);
- ``start`` is the start of the minute holding ``now - W`` for windows up to
  ``MINUTE_EXACT_LIMIT`` (24 h): exact to the minute; for longer windows (7d, 30d) it is
  the start of the *hour* holding ``now - W``: hour resolution at the far edge, since
  minute panes are not kept that long.

Either way the range holds ``[now - W, now]``: a window never shows less than W. It is
summed from the hourly panes of the whole hours inside it and the minute panes of the
partial hours at its two edges (``Cover``). Minute panes are read only for the last
24 h + a minute, an hour inside the 25 h they are kept: the margin absorbs the clock
difference between the intake and the publishing worker and events up to
``FUNNELPULSE_MAX_FUTURE`` ahead. Faust's own windows end 0.1 s early and truncate steps;
owning the arithmetic avoids both.

The trap: the condition "minute-exact or not" depends on W only, never on ``now``; were it
to depend on where ``now`` falls, a window would jump by up to an hour between ticks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .durations import parse_duration

MINUTE = 60
HOUR = 3600
PANE_SIZES = (MINUTE, HOUR)  # every event counts once into each; coarser ones are multiples
MINUTE_PANES_KEPT = 25 * HOUR  # how old an event may be and still have its minute pane
MINUTE_EXACT_LIMIT = 24 * HOUR  # windows up to this length are exact to the minute
HORIZON_MARGIN = HOUR  # the horizon must exceed the longest window by this much


def pane_start(ts: float, size: int) -> int:
    """Start of the pane holding ``ts``; floor, so negative offsets behave too."""
    return int(ts // size) * size


def _ceil(ts: int, size: int) -> int:
    return -((-ts) // size) * size


@dataclass(frozen=True)
class Cover:
    """The event-time range ``[start, end)`` a window sums at one ``now``, and how: hourly
    panes for the whole hours ``[hours_from, hours_to)``, minute panes for the rest
    (``hours_from == hours_to`` when no whole hour fits). Every bound is a whole minute,
    ``start`` a whole hour when the window is not minute-exact."""

    start: int
    end: int
    hours_from: int
    hours_to: int

    def holds(self, size: int, pane: int) -> bool:
        """Whether the pane of ``size`` starting at ``pane`` is one this window sums."""
        if size == HOUR:
            return self.hours_from <= pane < self.hours_to
        return self.start <= pane < self.end and not self.hours_from <= pane < self.hours_to

    def panes(self) -> Iterator[tuple[int, int]]:
        """Every (size, start) summed, oldest first (a test oracle and a lookup plan)."""
        for minute in range(self.start, self.hours_from, MINUTE):
            yield MINUTE, minute
        for hour in range(self.hours_from, self.hours_to, HOUR):
            yield HOUR, hour
        for minute in range(max(self.start, self.hours_to), self.end, MINUTE):
            yield MINUTE, minute

    def ranges(self, size: int) -> list[tuple[int, int]]:
        """The ranges ``[lo, hi)`` of the starts of the panes of ``size`` summed."""
        if size == HOUR:
            return [(self.hours_from, self.hours_to)] if self.hours_from < self.hours_to else []
        if self.hours_from == self.hours_to:
            return [(self.start, self.end)]
        edges = ((self.start, self.hours_from), (self.hours_to, self.end))
        return [(lo, hi) for lo, hi in edges if lo < hi]

    def reads(self, size: int, lo: int, hi: int) -> bool:
        """Whether a pane of ``size`` starting in ``[lo, hi)`` is summed (a group of panes
        no window sums is not even decoded by the publisher)."""
        return any(a < hi and lo < b for a, b in self.ranges(size))

    def __len__(self) -> int:
        """The number of panes summed."""
        return sum((hi - lo) // size for size in PANE_SIZES for lo, hi in self.ranges(size))

    def oldest(self, size: int) -> int | None:
        """The oldest pane start of ``size`` this window reads (None: none of that size)."""
        ranges = self.ranges(size)
        return ranges[0][0] if ranges else None


def cover(start: int, end: int) -> Cover:
    """Splits ``[start, end)`` (whole minutes) into whole hours and the minutes around them."""
    hours_from, hours_to = _ceil(start, HOUR), pane_start(end, HOUR)
    if hours_from >= hours_to:
        hours_from = hours_to = start
    return Cover(start, end, hours_from, hours_to)


@dataclass(frozen=True)
class WindowSpec:
    name: str
    seconds: int

    @property
    def minute_exact(self) -> bool:
        """Exact to the minute at the far edge (else rounded out to the hour)."""
        return self.seconds <= MINUTE_EXACT_LIMIT

    @property
    def far_edge(self) -> int:
        """The resolution of the window's start: a minute or an hour."""
        return MINUTE if self.minute_exact else HOUR

    def start(self, now: float) -> int:
        return pane_start(now - self.seconds, self.far_edge)

    def end(self, now: float) -> int:
        return pane_start(now, MINUTE) + MINUTE

    def cover(self, now: float) -> Cover:
        return cover(self.start(now), self.end(now))


def window_specs(names: Sequence[str]) -> tuple[WindowSpec, ...]:
    specs = []
    for name in names:
        exact = parse_duration(name)
        seconds = int(exact)
        if seconds != exact or seconds <= 0 or seconds % MINUTE:
            raise ValueError(f"window {name} is not a whole number of minutes")
        specs.append(WindowSpec(name, seconds))
    return tuple(specs)


def retention(size: int, horizon: float) -> float:
    """How old an event may be and still be kept in its pane of ``size`` (never longer than
    the horizon: older events are dead-lettered, so their panes would stay empty)."""
    return min(MINUTE_PANES_KEPT, horizon) if size == MINUTE else horizon


def oldest_kept(size: int, cutoff: float, horizon: float) -> int:
    """The oldest start of a pane of ``size`` still kept when ``cutoff`` is the newest time
    nothing can arrive before: the pane holding an event exactly ``retention`` older than
    ``cutoff``. Older panes are not written (intake) and are evicted (intake and merge
    stages). Every pane a window reads is kept, given ``check_horizon``'s bound."""
    return pane_start(cutoff - retention(size, horizon), size)


def groups_read(covers: Sequence[Cover], group_panes: int) -> set[tuple[int, int]]:
    """The (size, block start) of every group of ``group_panes`` panes that holds a pane
    some cover sums: worked out once per publish tick, then one set lookup per group of a
    scope (testing each group against each cover was most of a scope's publish time)."""
    wanted: set[tuple[int, int]] = set()
    for c in covers:
        for size in PANE_SIZES:
            span = size * group_panes
            for lo, hi in c.ranges(size):
                first = lo - lo % span
                wanted.update((size, block) for block in range(first, hi, span))
    return wanted


def window_sum(panes: Mapping[tuple[int, int], Sequence[int]], c: Cover, width: int) -> list[int]:
    """The counts of a window: the sum of the panes its cover holds. Walks whichever is
    shorter, the panes held or the cover (a 1m window over a scope with 30 days of hourly
    panes looks up two panes instead of testing 800)."""
    total = [0] * width
    if len(panes) <= len(c):
        chosen: Iterator[Sequence[int]] = (
            counts for (size, start), counts in panes.items() if c.holds(size, start)
        )
    else:
        chosen = (counts for key in c.panes() if (counts := panes.get(key)) is not None)
    for counts in chosen:
        for i, value in enumerate(counts):
            if value:
                total[i] += value
    return total


def check_horizon(horizon: float, longest_window: float, dedup_horizon: float) -> str | None:
    """Why a horizon cannot serve these settings, or None. The longest window's far edge
    is rounded out to the hour, so its oldest hourly pane starts up to an hour before
    ``now - W``: the horizon keeps ``HORIZON_MARGIN`` more. The dedup index must not
    remember ids longer than their events can be counted: a copy older than the horizon
    is dead-lettered anyway, so a longer dedup horizon is memory for nothing."""
    if horizon < longest_window + HORIZON_MARGIN:
        return "shorter than the longest window + 1h: its oldest hour could not be kept"
    if dedup_horizon > horizon:
        return "shorter than FUNNELPULSE_DEDUP_HORIZON: ids would outlive their events"
    return None
