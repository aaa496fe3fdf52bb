"""Event-time panes (minute and hourly) and rolling windows as sums of panes, against a
brute-force recount of synthetic events."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.counts import WIDTH
from metrics.snapshots import window_counts
from metrics.windows import (
    HOUR,
    MINUTE,
    MINUTE_EXACT_LIMIT,
    MINUTE_PANES_KEPT,
    PANE_SIZES,
    Cover,
    WindowSpec,
    check_horizon,
    cover,
    groups_read,
    oldest_kept,
    pane_start,
    window_specs,
    window_sum,
)

NOW = 1_800_000_000.0  # a pane edge for both 60 s and 3600 s panes
DAY = 86_400
HORIZON = 35 * DAY
MAX_FUTURE = 300


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


# -- covers: which panes a window sums ------------------------------------------------


def test_five_minutes_at_a_pane_edge() -> None:
    spec = WindowSpec("5m", 300)
    # [now - 300, now]: the minute starting at now counts from its first instant
    c = spec.cover(NOW)
    assert (c.start, c.end) == (1_799_999_700, 1_800_000_060)
    assert list(c.panes()) == [(60, 1_799_999_700 + 60 * i) for i in range(6)]


def test_five_minutes_between_pane_edges_is_rounded_out_to_the_minute() -> None:
    spec = WindowSpec("5m", 300)
    now = NOW + 30.5  # [1_799_999_730.5, 1_800_000_030.5]
    c = spec.cover(now)
    assert c.start == 1_799_999_700 <= now - 300
    assert c.end == 1_800_000_060 > now
    assert len(list(c.panes())) == 6


def test_an_hour_crossing_an_hour_edge_is_all_minutes() -> None:
    spec = WindowSpec("1h", 3600)
    now = NOW + 1234  # 20 min 34 s into the hour: no whole hour fits in [now - 1h, now]
    c = spec.cover(now)
    assert c.hours_from == c.hours_to
    assert [size for size, _ in c.panes()] == [60] * 61


def test_an_hour_on_an_hour_edge_is_one_hourly_pane_and_the_current_minute() -> None:
    spec = WindowSpec("1h", 3600)
    c = spec.cover(NOW)  # [NOW - 3600, NOW + 60)
    assert list(c.panes()) == [(3600, NOW - 3600), (60, NOW)]


def test_a_day_is_exact_to_the_minute_at_both_edges() -> None:
    spec = WindowSpec("24h", 86_400)
    now = NOW + 1000.5  # 16 min 40.5 s into the hour
    c = spec.cover(now)
    assert c.start == pane_start(now - 86_400, 60) == 1_799_914_560
    assert c.end == 1_800_001_020
    panes = list(c.panes())
    # 44 minutes at the far edge, 23 whole hours, 17 minutes at the near edge
    assert [size for size, _ in panes] == [60] * 44 + [3600] * 23 + [60] * 17
    assert panes[44] == (3600, 1_799_917_200)


def test_a_week_is_rounded_out_to_the_hour_at_its_far_edge_only() -> None:
    spec = WindowSpec("7d", 7 * DAY)
    now = NOW + 1000.5
    c = spec.cover(now)
    assert c.start == pane_start(now - 7 * DAY, 3600) == 1_799_395_200
    assert c.end == 1_800_001_020  # the near edge stays exact to the minute
    panes = list(c.panes())
    assert [size for size, _ in panes] == [3600] * (7 * 24) + [60] * 17


def test_window_at_negative_times() -> None:
    spec = WindowSpec("1m", 60)
    assert list(spec.cover(-30.0).panes()) == [(60, -120), (60, -60)]
    assert list(spec.cover(0.0).panes()) == [(60, -60), (60, 0)]
    assert list(spec.cover(-60.0).panes()) == [(60, -120), (60, -60)]


def test_cover_of_whole_hours_only() -> None:
    c = cover(0, 7200)
    assert list(c.panes()) == [(3600, 0), (3600, 3600)]
    assert (c.oldest(60), c.oldest(3600)) == (None, 0)


def test_cover_of_minutes_inside_one_hour() -> None:
    c = cover(120, 600)
    assert list(c.panes()) == [(60, s) for s in range(120, 600, 60)]
    assert (c.oldest(60), c.oldest(3600)) == (120, None)


def test_cover_with_minutes_on_the_near_edge_only() -> None:
    c = cover(3600, 7320)
    assert list(c.panes()) == [(3600, 3600), (60, 7200), (60, 7260)]
    assert (c.oldest(60), c.oldest(3600)) == (7200, 3600)


# -- the property: a window equals a brute-force recount of its events --------------

WINDOW_NAMES = ["1m", "5m", "15m", "1h", "2h", "90m", "1439m", "24h", "1441m", "25h", "7d",
                "30d", "34d"]  # fmt: skip
NOWS = st.one_of(
    st.floats(min_value=1.5e9, max_value=2.0e9, allow_nan=False),
    st.integers(min_value=25_000_000, max_value=33_000_000).map(lambda m: float(m * 60)),
    st.integers(min_value=400_000, max_value=550_000).map(lambda h: float(h * 3600)),
)


def _oracle_range(seconds: int, now: float) -> tuple[Fraction, Fraction]:
    """The documented range, in exact arithmetic: [minute (or hour, beyond 24 h) holding
    now - W, end of the minute holding now)."""
    far = 60 if seconds <= 24 * 3600 else 3600
    exact_now = Fraction(now)
    start = ((exact_now - seconds) // far) * far
    end = (exact_now // 60) * 60 + 60
    return start, end


def _event_times(draw: st.DrawFn, now: float, seconds: int) -> list[float]:
    """Timestamps anywhere from past the horizon to past the future limit, and exactly
    on the edges that matter: the window's bounds, its hours, the retentions."""
    start, end = _oracle_range(seconds, now)
    edges = [now, now - seconds, float(start), float(end), float(end) - 1e-3,
             float(start) - 1e-3, now - MINUTE_PANES_KEPT, now - HORIZON, now - HORIZON - 1,
             now + MAX_FUTURE, float(pane_start(now - seconds, 3600) + 3600),
             float(pane_start(now, 3600)), float(pane_start(now, 3600)) - 1e-3]  # fmt: skip
    anywhere = st.floats(min_value=now - HORIZON - 2 * 3600, max_value=now + MAX_FUTURE + 60)
    near = st.sampled_from(edges).flatmap(
        lambda e: st.sampled_from([e, e - 60, e + 60, e - 3600, e + 3600])
    )
    return draw(st.lists(st.one_of(anywhere, st.sampled_from(edges), near), max_size=40))


def _panes_after(
    events: list[tuple[float, int]], intake_now: float, now: float
) -> dict[tuple[int, int], list[int]]:
    """What the stages keep: the intake accepts events within the horizon and the future
    limit at ``intake_now``, writes each into the pane of each size it still keeps, and
    the publisher evicts what is past the retention at ``now``."""
    panes: dict[tuple[int, int], list[int]] = {}
    for ts, value in events:
        if not intake_now - HORIZON <= ts <= intake_now + MAX_FUTURE:
            continue  # dead-lettered: ts_too_old or ts_in_future
        for size in PANE_SIZES:
            start = pane_start(ts, size)
            if start >= oldest_kept(size, intake_now - MAX_FUTURE, HORIZON):
                counts = panes.setdefault((size, start), [0] * WIDTH)
                counts[0] += value
    return {
        (size, start): counts
        for (size, start), counts in panes.items()
        if start >= oldest_kept(size, now, HORIZON)
    }


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(WINDOW_NAMES), NOWS, st.floats(min_value=0, max_value=7200), st.data())
def test_a_window_equals_a_brute_force_recount(
    name: str, now: float, lag: float, data: st.DataObject
) -> None:
    (spec,) = window_specs([name])
    intake_now = now - lag  # the intake counted the events up to two hours earlier
    times = _event_times(data.draw, now, spec.seconds)
    events = [(ts, 1 + i) for i, ts in enumerate(times)]
    panes = _panes_after(events, intake_now, now)
    start, end = _oracle_range(spec.seconds, now)
    accepted = [
        (ts, v) for ts, v in events if intake_now - HORIZON <= ts <= intake_now + MAX_FUTURE
    ]
    want = sum(v for ts, v in accepted if start <= Fraction(ts) < end)
    assert window_counts(panes, spec, now)[0] == want
    # the other way of summing (the cover's panes looked up, when the panes are many)
    c = spec.cover(now)
    padded = {**panes, **{(60, -60 * i): [1] * WIDTH for i in range(1, len(c) + 2)}}
    assert window_sum(padded, c, WIDTH)[0] == want
    # never less than W, never a whole pane too much, whatever the resolution
    assert start <= Fraction(now) - spec.seconds and end > Fraction(now)
    c = spec.cover(now)
    assert (c.start, c.end) == (start, end)
    for ts, v in accepted:  # an accepted event inside [now - W, now] always counts
        if Fraction(now) - spec.seconds <= Fraction(ts) <= Fraction(now):
            assert start <= Fraction(ts) < end, (ts, v)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(WINDOW_NAMES), NOWS)
def test_a_cover_splits_its_range_into_kept_panes(name: str, now: float) -> None:
    (spec,) = window_specs([name])
    c = spec.cover(now)
    panes = list(c.panes())
    # the panes tile [start, end): sorted, adjacent, no overlap, no gap
    edge = c.start
    for size, start in panes:
        assert start == edge and start % size == 0
        edge = start + size
    assert edge == c.end
    # hourly panes wherever a whole hour fits: minutes only inside the edge hours
    hours = [start for size, start in panes if size == HOUR]
    for size, start in panes:
        if size == MINUTE and hours:
            assert start < hours[0] or start >= hours[-1] + HOUR
            assert start >= pane_start(c.start, HOUR) and start < pane_start(c.end, HOUR) + HOUR
    if not hours:
        assert c.end - c.start < 2 * HOUR
    for size, start in panes:
        assert c.holds(size, start)
        # every pane read is one the stages keep (at the publisher's and an earlier clock)
        assert start >= oldest_kept(size, now, HORIZON)
        if size == MINUTE:
            assert start >= now - MINUTE_EXACT_LIMIT - 60
    for size in PANE_SIZES:
        starts = [start for s, start in panes if s == size]
        assert c.oldest(size) == (min(starts) if starts else None)
    assert set(panes) == {
        (size, start)
        for size in PANE_SIZES
        for start in range(pane_start(c.start, size) - size, c.end + HOUR, size)
        if c.holds(size, start)
    }
    assert spec.minute_exact == (spec.seconds <= MINUTE_EXACT_LIMIT)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(WINDOW_NAMES), NOWS, st.sampled_from(PANE_SIZES), st.integers(-40, 40))
def test_a_group_is_read_exactly_when_the_window_sums_one_of_its_panes(
    name: str, now: float, size: int, offset: int
) -> None:
    """The publisher decodes a group of 16 panes only if the cover sums one of them."""
    (spec,) = window_specs([name])
    c = spec.cover(now)
    span = 16 * size
    block = pane_start(c.start if offset < 0 else c.end, span) + offset * span
    starts = range(block, block + span, size)
    assert c.reads(size, block, block + span) == any(c.holds(size, s) for s in starts)
    assert ((size, block) in groups_read([c], 16)) == c.reads(size, block, block + span)
    assert len(c) == len(list(c.panes()))


def test_a_window_does_not_flicker_at_minute_or_hour_edges() -> None:
    """One event 30 s before an hour edge stays in every window containing it while the
    clock crosses the minute and the hour edges (and the panes change from minutes to
    an hourly one under it)."""
    ts = NOW - 30
    panes = _panes_after([(ts, 1)], NOW - 60, NOW)
    for spec in window_specs(["1m", "5m", "1h", "24h", "7d", "30d"]):
        for now in (ts, NOW - 0.001, NOW, NOW + 0.001, NOW + 29.999):
            kept = _panes_after([(ts, 1)], ts, now)
            assert window_counts(kept, spec, now)[0] == 1, (spec.name, now)
    assert (3600, NOW - 3600) in panes and (60, NOW - 60) in panes


# -- window names ---------------------------------------------------------------------


def test_window_specs_default_windows() -> None:
    specs = window_specs(["1m", "5m", "15m", "1h", "24h", "7d", "30d"])
    assert [(s.name, s.seconds, s.far_edge) for s in specs] == [
        ("1m", 60, 60), ("5m", 300, 60), ("15m", 900, 60), ("1h", 3600, 60),
        ("24h", 86_400, 60), ("7d", 604_800, 3600), ("30d", 2_592_000, 3600),
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["30s", "90s", "1.5m", "61.5m"])
def test_window_specs_rejects_partial_minutes(name: str) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        window_specs([name])


@pytest.mark.parametrize("name", ["61m", "65m", "25h", "2161m"])
def test_window_specs_accepts_any_whole_minutes(name: str) -> None:
    assert window_specs([name])[0].seconds % 60 == 0


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


# -- retentions -----------------------------------------------------------------------


def test_minute_panes_are_kept_25_hours_and_hourly_ones_the_horizon() -> None:
    assert oldest_kept(60, NOW, HORIZON) == NOW - 25 * 3600
    assert oldest_kept(3600, NOW, HORIZON) == NOW - HORIZON
    # the pane holding an event exactly that old is kept, whatever the second
    assert oldest_kept(60, NOW + 59, HORIZON) == NOW - 25 * 3600
    assert oldest_kept(3600, NOW + 3599, HORIZON) == NOW - HORIZON
    # a horizon shorter than 25 h bounds the minute panes too
    assert oldest_kept(60, NOW, 7200) == NOW - 7200


@pytest.mark.parametrize(
    ("horizon", "longest", "dedup", "why"),
    [
        (35 * DAY, 30 * DAY, 7 * DAY, None),
        (30 * DAY + 3600, 30 * DAY, 7 * DAY, None),
        (30 * DAY + 3599, 30 * DAY, 7 * DAY, "longest window + 1h"),
        (25 * 3600, 24 * 3600, 24 * 3600, None),
        (25 * 3600, 24 * 3600, 7 * DAY, "DEDUP_HORIZON"),
        (35 * DAY, 24 * 3600, 35 * DAY, None),
    ],
)
def test_check_horizon(horizon: int, longest: int, dedup: int, why: str | None) -> None:
    got = check_horizon(horizon, longest, dedup)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got


def test_a_cover_is_a_value() -> None:
    assert cover(60, 120) == Cover(60, 120, 60, 60)
