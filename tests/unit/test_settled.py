"""The alert's consistency gate: what waited a tick ago has been processed."""

from __future__ import annotations

from streams.settled import settled


def test_nothing_known_before_the_first_tick() -> None:
    assert not settled({}, {"spend-0": 10})


def test_messages_waiting_a_tick_ago_must_be_processed() -> None:
    previous = {"signups-0": 5, "funnel-0": 3}
    assert not settled(previous, {"signups-0": 5, "funnel-0": 2})  # a sign-up on its way
    assert settled(previous, {"signups-0": 5, "funnel-0": 3})
    # newer messages (after the previous tick) do not hold the gate
    assert settled(previous, {"signups-0": 7, "funnel-0": 4})


def test_partitions_that_came_or_went_with_a_rebalance_say_nothing() -> None:
    assert settled({"a": 5, "gone": 9}, {"a": 5, "new": 0})
