"""The benchmark's pure parts: ratio maths, targets, latency matching and percentiles,
the recount, the memory data's panes, and the report (no broker)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from bench.generator import GroundTruth, MemorySpec, micros
from bench.lag import group_lag
from bench.latency import Produced, match_visibility, observations, percentile, phase_stats
from bench.phases import projected_peak
from bench.report import (
    TARGETS,
    Report,
    checks,
    full_drain_rate,
    issue16_checks,
    median_rate,
    ratios,
    render,
    spread,
    verdict,
)
from bench.results import LatencyResult, MemoryResult, RestartRep, RestartResult
from bench.systems import redis_mismatches
from metrics.windows import pane_start
from streams.events import EventType


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
    end_by: str = "lag 0 (admin API)"
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return None if self.error else self.events / self.seconds


RESULTS = [
    R("raw", "batch", 1, 1000, 1.0),
    R("raw", "batch", 2, 1000, 2.0),
    R("raw", "batch", 3, 1000, 4.0),
    R("quix", "batch", 1, 1000, 10.0, partial=True, end_by="time budget"),
    R("funnelpulse", "batch", 1, 1000, 2.0),
    R("funnelpulse", "batch", 2, 1000, 4.0, exact="NO"),
    R("faust-bare", "single", 1, 1000, 1.0, changelog_per_event=0.0),
    R("funnelpulse", "single", 1, 0, 1.0, error="worker exited"),
]


def _report(**changes: Any) -> Report:
    base: dict[str, Any] = dict(
        command="python -m bench.run --events 1000",
        generated_at="2025-01-01 00:00 UTC",
        machine={"CPU(s)": "2"},
        versions={"python": "3.11"},
        data={"events": "1,000"},
        systems=["raw", "quix", "faust-bare", "funnelpulse"],
        forms=["single", "batch"],
        results=RESULTS,
        not_measured=[("CPU-s broker", "no pid")],
    )
    base.update(changes)
    return Report(**base)


# -- drains and ratios ---------------------------------------------------------------------
def test_median_rate_ignores_failures() -> None:
    assert median_rate(RESULTS, "raw", "batch") == 500.0
    assert median_rate(RESULTS, "funnelpulse", "single") is None


def test_full_drain_rate_skips_partial_and_inexact_runs() -> None:
    assert full_drain_rate(RESULTS, "funnelpulse", "batch") == 500.0  # not the NO run's 250
    assert full_drain_rate(RESULTS, "quix", "batch") is None  # partial only


def test_ratios_against_targets() -> None:
    by_label = {r.target.label: r for r in ratios(RESULTS)}
    raw, quix, bare, base = (by_label[t.label] for t in TARGETS)
    assert raw.value == pytest.approx(375 / 500) and raw.met is True  # median 375 / 500
    assert quix.value == pytest.approx(3.75) and quix.met is True  # 375 / 100
    assert bare.value is None and bare.met is None
    assert "funnelpulse" in bare.reason
    assert base.value is None and "funnelpulse-base" in base.reason  # not run: not measured


def test_render_tables_and_not_measured() -> None:
    text = render(_report())
    assert "## Single-event messages" in text and "## Batch messages (100 events)" in text
    assert "| raw | 500 (1,000, 500, 250) | lag 0 |" in text
    assert "| quix | 100 (partial) (100) | budget |" in text
    assert "| funnelpulse | not measured (worker exited) |" in text
    assert "| raw | not run |" in text  # no single-event result for raw
    assert "| funnelpulse / raw aiokafka, batch | 0.75 | ≥ 0.5 | yes |" in text
    assert "not measured: no result for funnelpulse" in text
    assert "| p99 produce → visible in Redis at 50 % of the max batch rate | not measured" in text
    assert "- CPU-s broker: no pid" in text
    assert "## Latency" not in text and "## Memory" not in text and "## Two" not in text


# -- targets of the latency and memory phases -----------------------------------------------
def _latency(p99: float, invisible: int = 0) -> list[LatencyResult]:
    return [
        LatencyResult("1k ev/s", 1000, 999.0, 60_000, 60.0, 0.3, 0.6, 0.9, 1.2, 1.0),
        LatencyResult(
            "50 % of max",
            6000,
            5990.0,
            360_000,
            60.0,
            0.5,
            1.0,
            p99,
            2.0,
            1.9,
            invisible=invisible,
            worker_cpu=0.8,
        ),
    ]


def test_p99_target_met_missed_and_invisible() -> None:
    label = "p99 produce → visible in Redis at 50 % of the max batch rate"
    by = {c.label: c for c in checks(_report(latency=_latency(1.4)))}
    assert by[label].met is True and by[label].value == "1.40 s"
    assert {c.label: c for c in checks(_report(latency=_latency(1.6)))}[label].met is False
    lost = {c.label: c for c in checks(_report(latency=_latency(1.0, invisible=3)))}[label]
    assert lost.met is False and "3 events never visible" in lost.note


def test_rss_target_full_partial_and_small_runs() -> None:
    label = "peak RSS, 10,000 campaigns with 24 h of panes"
    full = MemoryResult(10_000, peak_rss_mb=380.0)
    assert {c.label: c for c in checks(_report(memories=[full]))}[label].met is True
    over = MemoryResult(10_000, peak_rss_mb=420.0)
    assert {c.label: c for c in checks(_report(memories=[over]))}[label].met is False
    small = MemoryResult(500, peak_rss_mb=120.0)
    check = {c.label: c for c in checks(_report(memories=[small]))}[label]
    assert check.met is None and "500 campaigns in this run" in check.note
    big = MemoryResult(100_000, peak_rss_mb=380.0)  # issue 16's own target, not this row's
    check = {c.label: c for c in checks(_report(memories=[big]))}[label]
    assert check.met is None and "100,000 campaigns in this run" in check.note
    part = MemoryResult(10_000, partial=True, campaigns_loaded=2_000, baseline_rss_mb=100.0,
                        peak_rss_mb=300.0)  # fmt: skip
    part.projected_peak_mb = projected_peak(part)
    assert part.projected_peak_mb == pytest.approx(1100.0)  # 100 + 200 × 10,000 / 2,000
    check = {c.label: c for c in checks(_report(memories=[part]))}[label]
    assert check.met is None and check.value.startswith("not measured: 300 MB with ~2,000")
    assert "projection" in check.note and "1100 MB" in check.note
    part.peak_rss_mb = 450.0  # over the bound with only a fifth loaded: a miss all the same
    assert {c.label: c for c in checks(_report(memories=[part]))}[label].met is False


def test_projection_only_for_partial_runs() -> None:
    assert projected_peak(MemoryResult(10, campaigns_loaded=10, baseline_rss_mb=1.0,
                                       peak_rss_mb=2.0)) is None  # fmt: skip


def test_render_latency_memory_and_two_workers() -> None:
    mem = MemoryResult(10_000, events=1_510_000, events_per_campaign=151, messages=60_000,
                       peak_rss_mb=390.0, steady_rss_mb=350.0, settle_s=30.0, exact="yes",
                       state_keys={"partials": 1e6, "merged": 9e5})  # fmt: skip
    two = R("funnelpulse", "batch", 1, 2000, 2.0, workers=2,
            extra={"peak_rss_per_worker": [120.0, 110.0]})  # fmt: skip
    report = _report(latency=_latency(1.2), latency_seconds=60, memories=[mem],
                     memory_data="10,000 campaigns ...", two_workers=[two],
                     timings={"whole run": 1500.0}, budgets={"latency phase": "60 s"})  # fmt: skip
    text = render(report)
    assert "## Latency: produce → visible in Redis (60 s per rate)" in text
    row = "| 50 % of max | 6,000 | 5,990 | 360,000 | 500 | 1,000 | 1,200 | 2,000 | 1,900 |"
    assert row in text and "360,000 of 360,000 | 0.80 |" in text
    assert "## Memory: 10,000 campaigns with 24 h of panes, store `memory`" in text
    assert "| peak RSS (VmHWM) | 390 MB |" in text
    assert "| steady RSS (VmRSS after 30 s idle) | 350 MB |" in text
    assert "| partials | 1,000,000 |" in text
    assert "| 1 | 375 (median of the batch table) |" in text
    assert "| 2 | 1,000 | lag 0 | 1.0 | 120, 110 | yes | 2.67× one worker |" in text
    assert "- took: whole run 25.0 min" in text and "- latency phase: 60 s" in text
    assert "| peak RSS, 10,000 campaigns with 24 h of panes | 390 MB | ≤ 400 MB | yes |" in text


# -- latency: percentiles and matching -------------------------------------------------------
def test_percentile_is_nearest_rank_over_weighted_samples() -> None:
    samples = [(0.5, 90), (1.0, 9), (3.0, 1)]  # 100 events
    assert percentile(samples, 50) == 0.5
    assert percentile(samples, 90) == 0.5
    assert percentile(samples, 91) == 1.0
    assert percentile(samples, 99) == 1.0
    assert percentile(samples, 100) == 3.0
    assert percentile([], 50) is None
    assert percentile([(2.0, 1)], 1) == 2.0  # rank at least 1
    assert percentile([(2.0, 1), (1.0, 9)], 95) == 2.0  # rank ceil(9.5) = 10, not 9


def test_match_visibility_numbers_events_in_produce_order() -> None:
    sends = [(10.0, 3), (10.5, 2), (11.0, 4)]  # 9 events
    seen = [(10.8, 2.0), (11.2, 5.0), (11.1, 4.0), (12.0, 9.0)]  # a dip is ignored
    samples, invisible = match_visibility(sends, seen)
    assert invisible == 0
    assert samples == [
        (pytest.approx(0.8), 2),  # events 1-2 of the first send at 10.8
        (pytest.approx(1.2), 1),  # event 3 at 11.2 (count 5)
        (pytest.approx(0.7), 2),  # events 4-5 at 11.2
        (pytest.approx(1.0), 4),  # events 6-9 at 12.0
    ]


def test_match_visibility_counts_events_never_seen() -> None:
    samples, invisible = match_visibility([(1.0, 5), (2.0, 5)], [(1.5, 3.0)])
    assert samples == [(0.5, 3)] and invisible == 7
    assert match_visibility([(1.0, 2)], []) == ([], 2)


def test_observations_take_the_largest_window_per_entry() -> None:
    entries = [
        (5.0, {"snapshots": [
            {"scope": "campaign:lat0-0001-3", "window": "1m", "clicks": 2, "spend": 1.0},
            {"scope": "campaign:lat0-0001-3", "window": "24h", "clicks": 3, "spend": 1.0},
            {"scope": "campaign:lat1-0001-3", "window": "1m", "clicks": 9},
            {"scope": "all", "window": "1m", "clicks": 99},
        ]}),
        (6.0, {"snapshots": []}),
    ]  # fmt: skip
    seen = observations(entries, "lat0-")
    assert seen[("lat0-0001-3", "clicks")] == [(5.0, 3.0)]
    assert seen[("lat0-0001-3", "spend")] == [(5.0, 1.0)]
    assert ("lat1-0001-3", "clicks") not in seen


def test_phase_stats_flags_over_counting() -> None:
    produced = Produced(events=3)
    produced.sends[("c", "clicks")] = [(1.0, 2)]
    produced.sends[("c", "opens")] = [(1.0, 1)]
    seen = {("c", "clicks"): [(1.5, 2.0)], ("c", "opens"): [(2.0, 2.0)]}
    stats = phase_stats(produced, seen)
    assert stats.invisible == 0 and stats.over == ["c opens"]
    assert sorted(stats.samples) == [(0.5, 2), (1.0, 1)]
    assert stats.by_field["opens"] == [(1.0, 1)]


# -- lag, recount, Redis comparison, memory data ---------------------------------------------
def test_group_lag_counts_uncommitted_partitions_whole() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    assert group_lag({a: 10}, {a: 10, b: 5}) == 5
    assert group_lag({a: 10, b: 5}, {a: 10, b: 5}) == 0
    assert group_lag({a: 12}, {a: 10}) == 0  # never negative


def test_recount_per_scope_with_money_in_micro_units() -> None:
    truth = GroundTruth()
    truth.add(EventType.IMPRESSION, "c1", {"channel": "email", "count": 40})
    truth.add(EventType.CLICK, "c1", {"channel": "email"})
    truth.add(EventType.SPEND, "c2", {"channel": "video", "amount": 12.35, "currency": "EUR"})
    truth.add(EventType.LEAD_STAGE, "c2", {"channel": "video", "stage": "opportunity"})
    truth.add(EventType.PURCHASE, "c2", {"channel": "video", "amount": 9.99, "currency": "USD"})
    scopes = truth.scopes()
    assert set(scopes) == {"all", "channel:email", "channel:video", "campaign:c1", "campaign:c2"}
    assert scopes["campaign:c1"] == Counter(impressions=40, email_impressions=40, clicks=1,
                                            email_clicks=1)  # fmt: skip
    assert scopes["campaign:c2"]["spend"] == 13_338_000  # 12.35 EUR × 1.08
    assert scopes["all"]["opportunities"] == 1 and scopes["all"]["new_customers"] == 1
    assert scopes["all"]["revenue"] == 9_990_000 and truth.by_type["spend"] == 1
    assert micros(0.125, "USD") == 125_000


def test_redis_mismatches_compare_every_field() -> None:
    truth = {"all": {"clicks": 3, "spend": 1_500_000}, "campaign:x": {"clicks": 1}}
    good = {"all": {"clicks": "3", "spend": "1.5"}, "campaign:x": {"clicks": "1"}}
    assert redis_mismatches(good, truth) == []
    bad = {"all": {"clicks": "2", "spend": "1.500001"}}
    assert redis_mismatches(bad, truth) == [
        "all clicks=2 (want 3), spend=1.500001 (want 1.5)",
        "campaign:x clicks=absent (want 1)",
    ]


def test_memory_data_occupies_every_pane_of_24_hours() -> None:
    spec = MemorySpec(campaigns=1)
    now = 1_700_000_123.4
    times = spec.event_times(now, random.Random(1))
    assert all(now - 86_400 < t <= now - 1 for t in times)
    coarse = {pane_start(t, 900) for t in times}
    fine_recent = {pane_start(t, 60) for t in times if t >= now - 3600}
    assert len(coarse) >= 96  # every 15-min pane of the last 24 h holds an event
    assert len(fine_recent) == 60  # and every minute of the last hour
    assert len(times) == spec.events_per_campaign


# -- issue 16: restart, takeover, memory and throughput by store ------------------------------
def test_verdict_is_met_missed_or_within_noise() -> None:
    assert verdict([8.0, 9.0, 9.9], 10.0) == (True, False)
    assert verdict([10.5, 11.0, 12.0], 10.0) == (False, False)
    assert verdict([9.0, 10.5, 11.0], 10.0) == (None, True)  # straddles the bound
    assert verdict([140.0], 150.0) == (True, False)  # one value: a ±5 % band
    assert verdict([149.0], 150.0) == (None, True)
    assert verdict([0.9, 0.95], 0.85, at_most=False) == (True, False)
    assert verdict([0.8, 0.9], 0.85, at_most=False) == (None, True)
    assert verdict([], 1.0) == (None, False)


def test_spread_is_median_with_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2.0 (1.0–3.0)"
    assert spread([4.0]) == "4.0" and spread([]) == "–"


def _restart(store: str, level: int, *published: float, exact: str = "yes") -> RestartResult:
    reps = [RestartRep(web=1.0, counted=p - 1, published=p, probes=40, exact=exact)
            for p in published]  # fmt: skip
    return RestartResult(store, level, history_events=level * 1000, changelog_records=level * 90,
                         drain_s=5.0, reps=reps)  # fmt: skip


def test_issue16_checks_restart_flatness_takeover_memory_and_throughput() -> None:
    restarts = [_restart("rocksdb", 1, 6.0, 7.0, 8.0), _restart("rocksdb", 16, 7.5, 9.0, 12.0),
                _restart("memory", 16, 30.0, 31.0, 35.0)]  # fmt: skip
    takeover = RestartResult("rocksdb", 0, reps=[RestartRep(published=p, owning=p - 1)
                                                 for p in (16.0, 17.0, 18.0)])  # fmt: skip
    mems = [MemoryResult(10_000, "rocksdb", peak_rss_mb=240.0, steady_rss_mb=200.0, exact="yes"),
            MemoryResult(10_000, "memory", peak_rss_mb=400.0, steady_rss_mb=380.0, exact="yes"),
            MemoryResult(100_000, "rocksdb", partial=True, peak_rss_mb=300.0)]  # fmt: skip
    drains = [R("funnelpulse-memory", "batch", 1, 1000, 1.0), R("funnelpulse-rocksdb", "batch", 1,
              900, 1.0), R("funnelpulse-memory", "batch", 2, 1000, 1.0),
              R("funnelpulse-rocksdb", "batch", 2, 800, 1.0)]  # fmt: skip
    report = _report(restarts=restarts, takeovers=[takeover], memories=mems, results=drains)
    by = {c.label: c for c in issue16_checks(report)}
    one = by["restart after kill -9 → processing again, 1× history, rocksdb"]
    assert one.met is True and one.value == "7.0 (6.0–8.0) s"
    sixteen = by["restart after kill -9 → processing again, 16× history, rocksdb"]
    assert sixteen.met is None and sixteen.noise  # 7.5–12 s straddles 10 s
    assert by["restart flat in the history (rocksdb)"].met is True  # 7.5 ≤ 8.0: overlap
    assert by["takeover by a warm standby after kill -9, rocksdb"].met is False
    assert by["steady RSS, 10,000 campaigns × 24 h, rocksdb"].met is False
    assert by["peak RSS, 10,000 campaigns × 24 h, rocksdb"].noise  # 240 within 5 % of 250
    assert by["peak RSS, 100,000 campaigns × 24 h, rocksdb"].value.startswith("not measured")
    ratio = by["batch drain, rocksdb / memory store"]
    assert ratio.value.startswith("0.85 (per repetition: 0.90, 0.80)") and ratio.noise
    assert not any("memory" in label and "restart" in label for label in by)  # targets: rocksdb
    text = render(report)
    assert "## Targets (issue 16: state on disk)" in text
    assert "## Restart after kill -9 → processing again (issue 16)" in text
    assert "| memory | 16× | 16,000 | 1,440 | 5 | 1.0 (1.0–1.0) [1.0, 1.0, 1.0]" in text
    assert "| 31.0 (30.0–35.0) [30.0, 31.0, 35.0] | yes |" in text
    assert "## Takeover by a warm standby after kill -9 (issue 16)" in text
    assert "## Memory: 10,000 campaigns with 24 h of panes, store `rocksdb`" in text
    assert "| within noise |" in text


def test_a_restart_that_was_not_exact_misses_its_target() -> None:
    report = _report(restarts=[_restart("rocksdb", 1, 2.0, 3.0, 4.0, exact="NO")])
    check = issue16_checks(report)[0]
    assert check.met is False and "3 repetitions not exact" in check.note
