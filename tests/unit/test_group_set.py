"""The publisher's compact set of pane groups (streams/group_set.py) against a plain set."""

from __future__ import annotations

import sys
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.windows import PANE_SIZES
from streams.group_set import GroupSet
from streams.pane_groups import GROUP_PANES, block_of

starts = st.integers(0, 2_000_000_000)
groups = st.tuples(st.sampled_from(PANE_SIZES), starts).map(lambda g: (g[0], block_of(g[0], g[1])))


@given(st.lists(groups, max_size=60), st.lists(groups, max_size=20), st.lists(groups, max_size=5))
def test_a_group_set_is_a_set_of_groups(added: list, gone: list, probes: list) -> None:
    model, compact = set(added), GroupSet(3, added)
    assert sorted(compact) == sorted(model) and len(compact) == len(model)
    model -= set(gone)
    compact.discard_all(gone)
    assert sorted(compact) == sorted(model)
    for group in probes + added:
        assert (group in compact) == (group in model)


def test_sizes_that_share_a_block_start_stay_apart() -> None:
    block = 3600 * GROUP_PANES * 1000  # a block start of every pane size
    compact = GroupSet(0, [(size, block) for size in PANE_SIZES])
    assert sorted(compact) == sorted((size, block) for size in PANE_SIZES)


def test_a_start_that_is_not_a_block_is_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        GroupSet(0, [(PANE_SIZES[0], 1_800_000_001)])


@pytest.mark.parametrize("block", [-960, 960 << 29])
def test_a_start_outside_32_bits_is_refused_not_wrapped(block: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        GroupSet(0, [(PANE_SIZES[0], block)])


def test_the_farthest_start_round_trips() -> None:
    size = min(PANE_SIZES)
    block = ((1 << 29) - 1) * size * GROUP_PANES  # year ~18,000
    assert list(GroupSet(0, [(size, block)])) == [(size, block)]


def test_a_group_costs_four_bytes() -> None:
    compact = GroupSet(1, ((60, block_of(60, 1_800_000_000 + 960 * i)) for i in range(95)))
    assert isinstance(compact._words, array) and len(compact) == 95 and compact.partition == 1
    assert sys.getsizeof(compact._words) < 95 * 4 * 1.2 + 100
