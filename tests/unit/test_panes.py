"""Event-time panes and rolling windows as sums of whole panes."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.windows import (
    COARSE_PANE,
    FINE_LIMIT,
    FINE_PANE,
    WindowSpec,
    granularities,
    horizon,
    pane_start,
    window_specs,
)

NOW = 1_800_000_000.0  # a pane edge for both 60 s and 900 s panes


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [
        (0, 60, 0),
        (0.0, 60, 0),
        (59.999, 60, 0),
        (60, 60, 60),
        (60.0, 60, 60),
        (61.5, 60, 60),
        (119.999999, 60, 60),
        (-0.0, 60, 0),
        (-0.001, 60, -60),
        (-1, 60, -60),
        (-60, 60, -60),
        (-60.001, 60, -120),
        (-61, 60, -120),
        (1_800_000_000.0, 60, 1_800_000_000),
        (1_800_000_059.9, 60, 1_800_000_000),
        (1_800_000_075.0, 60, 1_800_000_060),
        (1_800_000_075.0, 900, 1_800_000_000),
        (1_800_000_899.999, 900, 1_800_000_000),
        (1_800_000_900, 900, 1_800_000_900),
        (-1, 900, -900),
    ],
)
def test_pane_start(ts: float, size: int, start: int) -> None:
    result = pane_start(ts, size)
    assert result == start
    assert type(result) is int


@given(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.sampled_from([1, 60, 900, 3600]),
)
def test_pane_holds_its_timestamp(ts: float, size: int) -> None:
    start = pane_start(ts, size)
    assert start % size == 0
    assert start <= ts < start + size


def test_window_of_five_minutes_at_a_pane_edge() -> None:
    spec = WindowSpec("5m", 300, 60)
    # [now - 300, now] = [..., now]: the pane starting at now overlaps it (at one instant)
    assert spec.first_pane(NOW) == 1_799_999_700
    assert spec.last_pane(NOW) == 1_800_000_000
    assert list(spec.pane_starts(NOW)) == [1_799_999_700 + 60 * i for i in range(6)]


def test_window_between_pane_edges_is_rounded_out() -> None:
    spec = WindowSpec("5m", 300, 60)
    now = NOW + 30.5  # [1_799_999_730.5, 1_800_000_030.5]
    starts = list(spec.pane_starts(now))
    assert starts[0] == 1_799_999_700  # the pane holding now - W
    assert starts[-1] == 1_800_000_000  # the pane holding now
    assert len(starts) == 6
    assert starts[0] <= now - 300
    assert starts[-1] + 60 > now


def test_coarse_window() -> None:
    spec = WindowSpec("24h", 86_400, 900)
    now = NOW + 1000  # inside the coarse pane that starts at NOW + 900
    starts = spec.pane_starts(now)
    assert starts.step == 900
    assert starts[0] == pane_start(now - 86_400, 900) == 1_799_914_500
    assert starts[-1] == 1_800_000_900
    assert len(starts) == 86_400 // 900 + 1


def test_window_at_negative_times() -> None:
    spec = WindowSpec("1m", 60, 60)
    assert list(spec.pane_starts(-30.0)) == [-120, -60]
    assert list(spec.pane_starts(0.0)) == [-60, 0]
    assert list(spec.pane_starts(-60.0)) == [-120, -60]


WINDOWS = st.sampled_from(
    [("1m", 60, 60), ("5m", 300, 60), ("15m", 900, 60), ("1h", 3600, 60),
     ("2h", 7200, 900), ("24h", 86_400, 900)]
)  # fmt: skip


@settings(max_examples=300)
@given(WINDOWS, st.floats(min_value=-1e10, max_value=1e10, allow_nan=False), st.data())
def test_every_timestamp_of_the_window_is_in_one_of_its_panes(
    window: tuple[str, int, int], now: float, data: st.DataObject
) -> None:
    name, seconds, pane = window
    spec = WindowSpec(name, seconds, pane)
    starts = spec.pane_starts(now)
    assert len(starts) in (seconds // pane, seconds // pane + 1)
    assert starts.step == pane
    assert all(start % pane == 0 for start in (starts[0], starts[-1]))
    ts = data.draw(st.floats(min_value=now - seconds, max_value=now), label="ts")
    assert pane_start(ts, pane) in starts
    # The panes never reach beyond the window by a whole pane on either side (in exact
    # arithmetic: with now = -4.5e-15 the float bound rounds to the pane start itself).
    assert starts[0] > Fraction(now) - seconds - pane
    assert starts[-1] <= now


def test_window_specs_default_windows() -> None:
    specs = window_specs(["1m", "5m", "15m", "1h", "24h"])
    assert specs == (
        WindowSpec("1m", 60, 60),
        WindowSpec("5m", 300, 60),
        WindowSpec("15m", 900, 60),
        WindowSpec("1h", 3600, 60),
        WindowSpec("24h", 86_400, 900),
    )
    assert granularities(specs) == (60, 900)
    assert horizon(specs, 60) == 3600 + 60
    assert horizon(specs, 900) == 86_400 + 900


@pytest.mark.parametrize(
    ("name", "seconds", "pane"),
    [
        ("60s", 60, FINE_PANE),
        ("90m", 5400, COARSE_PANE),
        ("60m", 3600, FINE_PANE),  # the fine limit itself is fine
        ("2h", 7200, COARSE_PANE),
        ("45m", 2700, FINE_PANE),
        ("75m", 4500, COARSE_PANE),
        ("7d", 604_800, COARSE_PANE),
    ],
)
def test_window_specs_pane_choice(name: str, seconds: int, pane: int) -> None:
    assert window_specs([name]) == (WindowSpec(name, seconds, pane),)
    assert (seconds <= FINE_LIMIT) == (pane == FINE_PANE)


@pytest.mark.parametrize("name", ["30s", "90s", "61m", "65m", "1.5m"])
def test_window_specs_rejects_partial_panes(name: str) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        window_specs([name])


def test_window_specs_rejects_non_durations() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        window_specs(["5 minutes"])


def test_window_specs_rejects_a_fractional_window() -> None:
    with pytest.raises(ValueError, match="whole number"):
        window_specs(["60.5s"])


@pytest.mark.parametrize("name", ["0m", "500ms"])
def test_window_specs_rejects_an_empty_window(name: str) -> None:
    with pytest.raises(ValueError, match="whole number"):
        window_specs([name])


def test_granularities_are_each_pane_size_once_sorted() -> None:
    specs = (WindowSpec("24h", 86_400, 900), WindowSpec("1m", 60, 60), WindowSpec("5m", 300, 60))
    assert granularities(specs) == (60, 900)
    assert granularities(specs[1:]) == (60,)
    assert granularities(()) == ()


def test_horizon_is_the_longest_window_of_that_pane_size_plus_one_pane() -> None:
    specs = window_specs(["1m", "15m", "2h", "24h"])
    assert horizon(specs, 60) == 900 + 60
    assert horizon(specs, 900) == 86_400 + 900
