"""The latest snapshot of every scope in one window, kept as its counts.

A snapshot is ~30 fields (counts, KPIs, window bounds); 10,000 campaigns in five windows
held 50,000 of them as dicts, ~1.7 KB each. The counts and the time they were computed
for are enough: ``build_snapshot`` is pure, so a snapshot rebuilt for /kpis, an alert or a
Redis republish is the one published.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from metrics.counts import Counts
from metrics.snapshots import build_snapshot
from metrics.windows import WindowSpec


class WindowSnapshots(Mapping[str, dict[str, Any]]):
    """scope → the snapshot last published for it in this window."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.counts: dict[str, Counts] = {}
        self._at: dict[str, float] = {}

    def __getitem__(self, scope: str) -> dict[str, Any]:
        return build_snapshot(self.spec, scope, self.counts[scope], self._at[scope])

    def __contains__(self, scope: object) -> bool:
        return scope in self.counts

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def put(self, scope: str, counts: Counts, now: float) -> None:
        self.counts[scope] = counts
        self._at[scope] = now

    def forget(self, scope: str) -> None:
        self.counts.pop(scope, None)
        self._at.pop(scope, None)
