"""The recovery's walk of a partition's stored groups (streams/stored_walk.py): however the
records are sliced, it finds the same high waters and the same groups above the sent mark
as a recount of the panes' marks; the sent-mark record is not a group."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.counts import WIDTH
from streams.pane_groups import PARTIAL, SENT_MARK, encode_group, group_key
from streams.stored_walk import StoredWalk

COUNTS = [1] + [0] * (WIDTH - 1)
marks = st.dictionaries(st.integers(0, 3), st.integers(0, 50), min_size=1, max_size=3)
groups = st.lists(st.lists(marks, min_size=1, max_size=4), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(groups, st.dictionaries(st.integers(0, 3), st.integers(0, 50)), st.data())
def test_any_slicing_finds_the_high_waters_and_the_groups_above_the_mark(
    stored: list[list[dict[int, int]]], mark: dict[int, int], data: st.DataObject
) -> None:
    records = [(f"0|{SENT_MARK}", b'{"0":1}')]
    for i, panes in enumerate(stored):
        values = {j: [COUNTS, {str(t): o for t, o in m.items()}] for j, m in enumerate(panes)}
        records.append((f"0|{group_key(f'campaign:c{i}', 60, 0)}", encode_group(
            PARTIAL, values, 60, 0)))  # fmt: skip
    walk = StoredWalk(mark, set())
    rest = records
    while rest:
        cut = data.draw(st.integers(1, len(rest)))
        walk.read(rest[:cut])
        rest = rest[cut:]

    high: dict[int, int] = {}
    above = set()
    for i, panes in enumerate(stored):
        for m in panes:
            for topic, offset in m.items():
                high[topic] = max(high.get(topic, -1), offset)
                if offset > mark.get(topic, -1):
                    above.add((f"campaign:c{i}", 60, 0))
    assert walk.high == high
    assert walk.resend == above and walk.found == len(above)
    assert walk.groups == len(stored)
