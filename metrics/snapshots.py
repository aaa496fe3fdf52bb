"""A KPI snapshot for one (window, scope): the document Redis, HTTP and Kafka all carry.

Pure: panes in, dict out. Money counts are rendered as plain decimal numbers with up to
six places (exact micro-units), KPIs per ``metrics.kpis``; undefined KPIs are absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .counts import COUNT_FIELDS, MICROS, MONEY_FIELDS, WIDTH, Counts
from .kpis import compute_all
from .windows import WindowSpec, window_sum

PaneTotals = Mapping[tuple[int, int], Sequence[int]]  # (pane size, pane start) → counts


def window_counts(panes: PaneTotals, spec: WindowSpec, now: float) -> Counts:
    """Hourly panes for the whole hours of the window, minute panes for its edges
    (``metrics.windows.Cover``)."""
    return window_sum(panes, spec.cover(now), WIDTH)


def money(micros: int) -> float:
    return round(micros / MICROS, 6)


def build_snapshot(
    window: WindowSpec, scope: str, counts: Sequence[int], now: float
) -> dict[str, Any]:
    doc: dict[str, Any] = {"window": window.name, "scope": scope}
    doc.update(compute_all(counts))
    for i, name in enumerate(COUNT_FIELDS):
        doc[name] = money(counts[i]) if name in MONEY_FIELDS else counts[i]
    doc["window_start"] = window.start(now)
    doc["window_end"] = round(now, 3)
    doc["updated_at"] = round(now, 3)
    return doc


def has_data(counts: Sequence[int]) -> bool:
    return any(counts)
