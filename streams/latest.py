"""The latest snapshot of every scope in every window, kept as its counts in flat arrays.

A snapshot is ~30 fields (counts, KPIs, window bounds); 10,000 campaigns in five windows
held 50,000 of them as dicts, ~1.7 KB each. The counts and the time they were computed
for are enough: ``build_snapshot`` is pure, so a snapshot rebuilt for /kpis, an alert or a
Redis republish is the one published.

The counts live in one ``array`` per window, a row per scope, not a list per scope and
window. Not only their size (a list of 15 ints and a float per scope and window: 60,000
lists at 10,000 campaigns in six windows) but when they are made: every tick replaced the
dirty scopes' lists in the middle of the tick's transient work, long-lived objects spread
over the heap the drain had grown (an arena of Python's allocator goes back only when all
of it is free). A row written in place allocates nothing. Measured (2,000 campaigns, one
run, with the tick in chunks): peak 231 → 221 MB, steady 192 → 189 MB — the steady size
after a drain is still mostly such fragmentation (docs/RELIABILITY.md).

Counts past a signed 64-bit word (money in micro-units beyond 9.2e12) are kept aside as
lists, exact either way.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from metrics.counts import WIDTH, Counts
from metrics.snapshots import build_snapshot
from metrics.windows import WindowSpec

_ABSENT = math.nan  # ``at`` of a row this window holds nothing for


class ScopeRows:
    """scope → row number, shared by every window (a scope's rows have one number)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self._free: list[int] = []
        self.size = 0  # rows ever handed out

    def row(self, scope: str) -> int:
        found = self.rows.get(scope)
        if found is None:
            found = self._free.pop() if self._free else self._grow()
            self.rows[scope] = found
        return found

    def _grow(self) -> int:
        self.size += 1
        return self.size - 1

    def release(self, scope: str) -> int | None:
        """Frees the scope's row for another scope; returns it."""
        found = self.rows.pop(scope, None)
        if found is not None:
            self._free.append(found)
        return found


class WindowCounts(Mapping[str, Sequence[int]]):
    """scope → the counts last published in one window (a fresh list per read)."""

    def __init__(self, rows: ScopeRows) -> None:
        self._rows = rows
        self._counts = array("q")  # WIDTH words per row
        self._at = array("d")  # when each row was computed; NaN: none in this window
        self._big: dict[str, Counts] = {}  # rows with a count past a 64-bit word

    def _room(self) -> None:
        missing = self._rows.size - len(self._at)
        if missing > 0:
            self._at.extend([_ABSENT] * missing)
            self._counts.frombytes(bytes(self._counts.itemsize * WIDTH * missing))

    def put(self, scope: str, counts: Sequence[int], now: float) -> None:
        row = self._rows.row(scope)
        self._room()
        start = row * WIDTH
        try:
            self._counts[start : start + WIDTH] = array("q", counts)
            self._big.pop(scope, None)
        except OverflowError:
            self._big[scope] = list(counts)
        self._at[row] = now

    def at(self, scope: str) -> float:
        row = self._held(scope)
        if row is None:
            raise KeyError(scope)
        return self._at[row]

    def forget(self, scope: str) -> None:
        row = self._held(scope)
        if row is not None:
            self._at[row] = _ABSENT
        self._big.pop(scope, None)

    def _held(self, scope: object) -> int | None:
        row = self._rows.rows.get(scope) if isinstance(scope, str) else None
        if row is None or row >= len(self._at) or math.isnan(self._at[row]):
            return None
        return row

    def __getitem__(self, scope: str) -> Counts:
        row = self._held(scope)
        if row is None:
            raise KeyError(scope)
        big = self._big.get(scope)
        if big is not None:
            return list(big)
        return self._counts[row * WIDTH : (row + 1) * WIDTH].tolist()

    def __contains__(self, scope: object) -> bool:
        return self._held(scope) is not None

    def __iter__(self) -> Iterator[str]:
        at = self._at
        held = len(at)
        for scope, row in list(self._rows.rows.items()):
            if row < held and not math.isnan(at[row]):
                yield scope

    def __len__(self) -> int:
        return sum(1 for _ in self)


class WindowSnapshots(Mapping[str, dict[str, Any]]):
    """scope → the snapshot last published for it in this window."""

    def __init__(self, spec: WindowSpec, rows: ScopeRows | None = None) -> None:
        self.spec = spec
        self.counts = WindowCounts(rows or ScopeRows())

    def __getitem__(self, scope: str) -> dict[str, Any]:
        return build_snapshot(self.spec, scope, self.counts[scope], self.counts.at(scope))

    def __contains__(self, scope: object) -> bool:
        return scope in self.counts

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def put(self, scope: str, counts: Sequence[int], now: float) -> None:
        self.counts.put(scope, counts, now)

    def forget(self, scope: str) -> None:
        self.counts.forget(scope)


class LatestSnapshots(Mapping[str, WindowSnapshots]):
    """window → its ``WindowSnapshots``, the windows sharing one row per scope."""

    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        self._rows = ScopeRows()
        self._windows = {spec.name: WindowSnapshots(spec, self._rows) for spec in specs}

    def __getitem__(self, window: str) -> WindowSnapshots:
        return self._windows[window]

    def __iter__(self) -> Iterator[str]:
        return iter(self._windows)

    def __len__(self) -> int:
        return len(self._windows)

    def forget(self, scope: str) -> None:
        """The scope leaves every window, and its row goes back to be reused."""
        for window in self._windows.values():
            window.forget(scope)
        self._rows.release(scope)
