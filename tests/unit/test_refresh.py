"""Quiet scopes are refreshed a share per tick, oldest first, each about once a period."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.refresh import refresh_share, stale_scopes, take_scopes

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


def test_scopes_with_new_events_go_before_the_republishing_of_restored_ones() -> None:
    """A restart queues its 2,000 restored scopes before the first new event is merged."""
    backfill = dict.fromkeys(f"campaign:{i}" for i in range(2_000))
    due = {"campaign:probe": None}
    fresh, restored = take_scopes(due, backfill, limit=2_000, share=201)
    assert fresh == {"campaign:probe"} and not due
    assert restored == set(list(backfill)[:201])  # oldest first


@given(
    due=st.lists(st.integers(0, 30), unique=True),
    backfill=st.lists(st.integers(0, 30), unique=True),
    limit=st.integers(1, 40),
    share=st.integers(0, 40),
)
def test_a_tick_takes_due_first_and_at_most_limit(
    due: list[int], backfill: list[int], limit: int, share: int
) -> None:
    queue = dict.fromkeys(map(str, due))
    waiting = dict.fromkeys(map(str, backfill))
    fresh, restored = take_scopes(queue, waiting, limit, share)
    assert not fresh & restored
    taken = fresh | restored
    assert fresh == set(map(str, due[:limit]))
    assert len(taken) <= limit
    assert set(map(str, due[:limit])) <= taken  # every due scope that fits goes first
    assert list(queue) == [str(s) for s in due[limit:]]  # the rest stay, in order
    assert len(taken - set(map(str, due))) <= share
    assert list(waiting) == [str(s) for s in backfill]  # dropped only once computed
    missing = [s for s in map(str, backfill) if s not in taken]
    assert not missing or len(taken) >= min(limit, len(set(map(str, due[:limit]))) + share)
