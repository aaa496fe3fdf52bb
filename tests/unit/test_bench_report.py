"""The benchmark report: ratio maths and rendering (pure, no broker)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.report import TARGETS, median_rate, ratios, render


@dataclass
class R:
    system: str
    form: str
    rep: int
    events: int
    seconds: float
    cpu_sut: float | None = 1.0
    cpu_broker: float | None = 0.5
    peak_rss_mb: float | None = 100.0
    exact: str = "yes"
    partial: bool = False
    note: str = ""
    error: str | None = None
    changelog_per_event: float | None = None

    @property
    def rate(self) -> float | None:
        return None if self.error else self.events / self.seconds


RESULTS = [
    R("raw", "batch", 1, 1000, 1.0),
    R("raw", "batch", 2, 1000, 2.0),
    R("raw", "batch", 3, 1000, 4.0),
    R("quix", "batch", 1, 1000, 10.0),
    R("funnelpulse", "batch", 1, 1000, 2.0),
    R("faust-bare", "single", 1, 1000, 1.0, changelog_per_event=0.0),
    R("funnelpulse", "single", 1, 0, 1.0, error="worker exited"),
]


def test_median_rate_ignores_failures() -> None:
    assert median_rate(RESULTS, "raw", "batch") == 500.0
    assert median_rate(RESULTS, "funnelpulse", "single") is None


def test_ratios_against_targets() -> None:
    by_label = {r.target.label: r for r in ratios(RESULTS)}
    raw, quix, bare = (by_label[t.label] for t in TARGETS)
    assert raw.value == pytest.approx(1.0) and raw.met is True  # 500 / 500
    assert quix.value == pytest.approx(5.0) and quix.met is True  # 500 / 100
    assert bare.value is None and bare.met is None
    assert "funnelpulse" in bare.reason


def test_render_tables_and_not_measured() -> None:
    text = render(
        command="python -m bench.run --events 1000",
        generated_at="2025-01-01 00:00 UTC",
        machine={"CPU(s)": "2"},
        versions={"python": "3.11"},
        data={"events": "1,000"},
        systems=["raw", "quix", "faust-bare", "funnelpulse"],
        forms=["single", "batch"],
        results=RESULTS,
        not_measured=[("latency phase", "not implemented")],
    )
    assert "## Single-event messages" in text and "## Batch messages (100 events)" in text
    assert "| raw | 500 (1,000, 500, 250) |" in text
    assert "| funnelpulse | not measured (worker exited) |" in text
    assert "| raw | not run |" in text  # no single-event result for raw
    assert "| funnelpulse / raw aiokafka, batch | 1.00 | ≥ 0.5 | yes |" in text
    assert "not measured: no result for funnelpulse" in text
    assert "- latency phase: not implemented" in text
