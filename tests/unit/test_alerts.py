"""The cpl_spike rule: thresholds, volume guards, broken-form case, hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.alerts import AlertTracker, CplSpikeRule, Reading, breach, reading_from

RULE = CplSpikeRule(factor=2.0, clear_factor=1.5, min_leads=20, min_spend=50.0)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (Reading(100, 10, 1000, 100), None),  # CPL 10 vs baseline 10
        (Reading(100, 4, 1000, 100), "cpl_above_baseline"),  # 25 > 2 × 10
        (Reading(100, 5, 1000, 100), None),  # exactly 2 × baseline is not above
        (Reading(40, 1, 1000, 100), None),  # short spend under min_spend
        (Reading(100, 4, 190, 19), None),  # baseline under min_leads
        (Reading(100, 0, 1000, 100), "spend_without_leads"),
        (Reading(100, 0, 100, 0), "spend_without_leads"),  # no baseline needed for x/0
        (Reading(49.99, 0, 100, 0), None),
        (Reading(0, 0, 0, 0), None),
    ],
)
def test_breach(reading: Reading, expected: str | None) -> None:
    assert breach(RULE, reading, RULE.factor) == expected


def test_fires_once_then_resolves_with_hysteresis() -> None:
    tracker = AlertTracker(RULE)
    calm = Reading(100, 10, 1000, 100)
    spike = Reading(100, 4, 1000, 100)  # 25 vs 10
    hovering = Reading(100, 6, 1000, 100)  # 16.7: under 2×, over 1.5×
    assert tracker.observe("campaign:a", calm, 1.0) is None
    assert tracker.observe("campaign:a", spike, 1.5) is None  # one breach: pending
    fired = tracker.observe("campaign:a", spike, 2.0)
    assert fired is not None and fired["state"] == "firing"
    assert fired["current_cpl"] == 25.0 and fired["baseline_cpl"] == 10.0
    assert fired["campaign"] == "a" and fired["reason"] == "cpl_above_baseline"
    assert tracker.observe("campaign:a", spike, 3.0) is None  # no repeat while firing
    assert tracker.observe("campaign:a", hovering, 4.0) is None  # hysteresis holds it
    resolved = tracker.observe("campaign:a", calm, 5.0)
    assert resolved is not None and resolved["state"] == "resolved"
    assert resolved["started_at"] == 2.0 and resolved["at"] == 5.0
    assert tracker.active == {}


def test_a_single_breach_between_calm_readings_never_fires() -> None:
    tracker = AlertTracker(RULE)
    calm, spike = Reading(100, 10, 1000, 100), Reading(100, 0, 1000, 100)
    for t, reading in enumerate([calm, spike, calm, spike, calm]):
        assert tracker.observe("all", reading, float(t)) is None
    assert tracker.watched() == set()


def test_scopes_are_independent() -> None:
    tracker = AlertTracker(RULE)
    assert tracker.observe("all", Reading(100, 0, 100, 0), 0.5) is None
    assert tracker.observe("all", Reading(100, 0, 100, 0), 1.0) is not None
    assert tracker.observe("campaign:b", Reading(100, 10, 1000, 100), 1.0) is None
    assert set(tracker.active) == {"all"}


def test_reading_from_snapshots() -> None:
    reading = reading_from({"spend": 120.5, "signups": 3}, {"spend": 900.0, "signups": 90})
    assert reading.current_cpl == pytest.approx(40.1666666)
    assert reading.baseline_cpl == 10.0
    assert reading_from({}, {}).current_cpl is None


money = st.floats(min_value=0, max_value=1e7, allow_nan=False)
leads = st.integers(min_value=0, max_value=10**6)


@given(money, leads, money, leads)
def test_firing_implies_volume_guards(
    s_spend: float, s_leads: int, l_spend: float, l_leads: int
) -> None:
    reading = Reading(s_spend, s_leads, l_spend, l_leads)
    reason = breach(RULE, reading, RULE.factor)
    if reason is not None:
        assert s_spend >= RULE.min_spend
    if reason == "cpl_above_baseline":
        assert l_leads >= RULE.min_leads and s_leads > 0


@given(money, leads, money, leads)
def test_clear_threshold_is_looser(
    s_spend: float, s_leads: int, l_spend: float, l_leads: int
) -> None:
    """Whatever breaches at 2× also breaches at 1.5×: a firing alert is never resolved by
    the reading that fired it."""
    reading = Reading(s_spend, s_leads, l_spend, l_leads)
    if breach(RULE, reading, RULE.factor):
        assert breach(RULE, reading, RULE.clear_factor)
