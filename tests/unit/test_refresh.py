"""Quiet scopes are refreshed a share per tick, oldest first, each about once a period."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.refresh import refresh_share, stale_scopes

PERIOD = 60.0


def test_only_scopes_computed_a_period_ago_are_due() -> None:
    computed = {"a": 0.0, "b": 30.0, "c": 61.0}
    assert stale_scopes(computed, 90.0, 1.0, PERIOD) == ["a", "b"]
    assert stale_scopes(computed, 89.0, 1.0, PERIOD) == ["a"]
    assert stale_scopes({}, 90.0, 1.0, PERIOD) == []


def test_a_burst_of_scopes_is_spread_over_the_ticks() -> None:
    computed = dict.fromkeys((f"campaign:{i}" for i in range(6000)), 0.0)
    due = stale_scopes(computed, 60.0, 1.0, PERIOD)
    assert len(due) == refresh_share(6000, 1.0, PERIOD) == 201
    assert due == list(computed)[:201]  # oldest first


@settings(max_examples=200)
@given(
    st.lists(st.floats(min_value=0, max_value=10_000), max_size=400),
    st.sampled_from([0.1, 0.5, 1.0, 5.0]),
)
def test_once_caught_up_no_scope_waits_much_beyond_a_period(
    ages: list[float], interval: float
) -> None:
    """Simulates the ticks: each takes the due scopes and marks them computed. Whatever
    the ages at the start, after one period no scope is older than two periods: the share
    refreshes every scope twice per period, so a backlog of all of them clears in half a
    period."""
    computed = {f"s{i}": -age for i, age in enumerate(sorted(ages, reverse=True))}
    now = 0.0
    while now < 4 * PERIOD:
        for scope in stale_scopes(computed, now, interval, PERIOD):
            assert now - computed[scope] >= PERIOD
            del computed[scope]
            computed[scope] = now
        assert len(computed) == len(ages)
        if now >= PERIOD:
            assert all(now - at <= 2 * PERIOD for at in computed.values())
        now += interval
