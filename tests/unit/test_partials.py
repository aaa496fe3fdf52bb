"""Partial panes: replay marks skip what a pane already holds, and the version that the
merge stage compares grows with every message a pane takes in."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from metrics.counts import zero
from streams.pane_values import PartialValue, apply_delta, merge_partial, version


def delta(spend: int) -> list[int]:
    counts = zero()
    counts[-1] = spend
    return counts


def test_a_first_message_at_offset_zero_makes_a_newer_snapshot() -> None:
    """The bug the kill -9 test found: spend at offset 0 joined a pane that clicks had
    already made known to the merge stage, without changing the version."""
    state: dict[str, PartialValue] = {}
    apply_delta(state, "p", delta(0), topic=1, offset=29)
    merged = merge_partial(None, "i1", version(state["p"]), state["p"][0])
    apply_delta(state, "p", delta(5_000_000), topic=6, offset=0)
    newer = merge_partial(merged, "i1", version(state["p"]), state["p"][0])
    assert newer is not None and newer["i1"][1][-1] == 5_000_000


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 50)), max_size=40))
def test_version_grows_with_every_message_applied_and_never_otherwise(
    messages: list[tuple[int, int]],
) -> None:
    state: dict[str, Any] = {}
    last = -1
    for topic, offset in messages:
        took = apply_delta(state, "p", delta(1), topic, offset)
        now = version(state["p"]) if "p" in state else -1
        assert (now > last) if took else (now == last)
        last = now
