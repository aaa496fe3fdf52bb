"""The latest counts per window in flat arrays (``streams/latest.py``) behave as a dict of
lists would, whatever the order of puts and forgets, rows reused, counts past 64 bits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.counts import WIDTH
from metrics.snapshots import build_snapshot
from metrics.windows import window_specs
from streams.latest import LatestSnapshots

SPECS = window_specs(["1m", "1h", "24h"])
SCOPES = ["all", "channel:email", "campaign:a", "campaign:b", "campaign:c"]
counts_of = st.lists(
    st.one_of(st.integers(0, 1000), st.integers(0, 2**70)), min_size=WIDTH, max_size=WIDTH
)
put = st.tuples(st.just("put"), st.sampled_from([s.name for s in SPECS]), st.sampled_from(SCOPES),
                counts_of, st.floats(1.0, 2e9))  # fmt: skip
forget = st.tuples(st.just("forget"), st.sampled_from(SCOPES))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(put, forget), max_size=60))
def test_latest_is_a_dict_of_lists(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    latest = LatestSnapshots(SPECS)
    model: dict[str, dict[str, tuple[list[int], float]]] = {s.name: {} for s in SPECS}
    for step in steps:
        if step[0] == "put":
            _, window, scope, counts, now = step
            latest[window].put(scope, counts, now)
            model[window][scope] = (list(counts), now)
        else:
            latest.forget(step[1])
            for by_scope in model.values():
                by_scope.pop(step[1], None)
    for spec in SPECS:
        window, expected = latest[spec.name], model[spec.name]
        assert set(window) == set(expected) and len(window) == len(expected)
        assert dict(window.counts.items()) == {s: c for s, (c, _) in expected.items()}
        for scope in SCOPES:
            assert (scope in window) == (scope in expected)
        for scope, (counts, now) in expected.items():
            assert window[scope] == build_snapshot(spec, scope, counts, now)


def test_a_read_is_a_copy() -> None:
    latest = LatestSnapshots(SPECS)
    latest["1m"].put("all", [1] * WIDTH, 5.0)
    row = latest["1m"].counts["all"]
    row[0] = 99
    assert latest["1m"].counts["all"] == [1] * WIDTH
    assert "all" not in latest["1h"] and latest["1h"].counts.get("all") is None
