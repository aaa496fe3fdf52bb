"""Pane groups must behave as a plain mapping of panes, survive their own encoding
exactly, and keep a pane in the group its block says."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.counts import WIDTH
from streams.pane_groups import (
    GROUP_PANES,
    MERGED,
    PARTIAL,
    GroupCache,
    PaneGroups,
    block_of,
    decode_group,
    dense,
    encode_group,
    group_last_start,
    merged_totals,
    sparse,
)
from streams.pane_values import total

SIZES = st.sampled_from([60, 900])
COUNTS = st.lists(st.one_of(st.just(0), st.integers(0, 10**15)), min_size=WIDTH, max_size=WIDTH)
MARKS = st.dictionaries(st.integers(0, 7).map(str), st.integers(0, 2**40), max_size=3)
PARTIALS = st.tuples(COUNTS, MARKS).map(list)
MERGED_VALUES = st.dictionaries(
    st.sampled_from(["i0", "i1", "f0", "f3"]), st.tuples(st.integers(0, 2**42), COUNTS).map(list)
)


@given(COUNTS)
def test_sparse_counts_round_trip(counts: list[int]) -> None:
    assert dense(sparse(counts)) == counts
    assert len(sparse(counts)) == 2 * sum(1 for c in counts if c)


@given(SIZES, st.integers(-(10**10), 10**10))
def test_a_pane_lies_in_its_block(size: int, ts: int) -> None:
    start = ts - ts % size
    block = block_of(size, start)
    assert block <= start <= group_last_start(size, block)
    assert block % (size * GROUP_PANES) == 0


PLACES = st.tuples(SIZES, st.integers(-(10**6), 10**6)).map(
    lambda p: (p[0], p[1] * p[0] * GROUP_PANES)
)
IN_BLOCK = st.integers(0, GROUP_PANES - 1)


@given(PLACES, st.dictionaries(IN_BLOCK, PARTIALS))
def test_partial_groups_round_trip(place: tuple[int, int], panes: dict[int, Any]) -> None:
    size, block = place
    panes = {block + i * size: value for i, value in panes.items()}
    assert decode_group(PARTIAL, encode_group(PARTIAL, panes, size, block), size, block) == panes


@given(PLACES, st.dictionaries(IN_BLOCK, MERGED_VALUES))
def test_merged_groups_round_trip_and_total(place: tuple[int, int], panes: dict[int, Any]) -> None:
    size, block = place
    panes = {block + i * size: value for i, value in panes.items()}
    raw = encode_group(MERGED, panes, size, block)
    assert decode_group(MERGED, raw, size, block) == panes
    totals = merged_totals(raw, size, block)
    assert totals == {start: total(value) for start, value in panes.items()}


def test_an_entry_names_its_pane_by_its_place_in_the_block() -> None:
    raw = encode_group(PARTIAL, {900 * 16 * 5 + 900 * 3: [[0] * WIDTH, {}]}, 900, 900 * 16 * 5)
    assert raw == b"[[3,[],[]]]"


OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "del", "drop", "write", "reopen", "abandon"]),
        st.sampled_from(["all", "campaign:a|b", "channel:email"]),
        SIZES,
        st.integers(0, 40),
        PARTIALS,
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(OPS, st.sampled_from([None, 1, 4096]))
def test_groups_behave_as_a_mapping_of_panes(ops: list[tuple[Any, ...]], limit: int | None) -> None:
    """Any sequence of writes, deletes, group drops and write-throughs, with the view
    reopened (a new batch) after a write-through or abandoned with unwritten changes (a
    batch that failed), reads back as a plain dict would, with or without a cache of
    decoded groups (of one group, or of all)."""
    other = encode_group(PARTIAL, {0: [[1] * WIDTH, {}]}, 60, 0)
    table = SimpleNamespace(data={"1|all|60|0": other})
    cache: GroupCache[Any] | None = None if limit is None else GroupCache(limit)
    view = PaneGroups(table, 0, PARTIAL, cache)
    model: dict[tuple[str, int, int], Any] = {}
    written = dict(model)
    for op, scope, size, n, value in ops:
        start = n * size
        key = (scope, size, start)
        if op == "set":
            view[key] = value
            model[key] = value
        elif op == "del" and key in model:
            del view[key]
            del model[key]
        elif op == "drop":
            block = block_of(size, start)
            view.drop_group(scope, size, block)
            for k in [k for k in model if k[:2] == (scope, size) and block_of(size, k[2]) == block]:
                del model[k]
        elif op in ("write", "reopen"):
            view.write_through()
            written = dict(model)
            if op == "reopen":
                view.close()
                view = PaneGroups(table, 0, PARTIAL, cache)
        elif op == "abandon":  # unwritten changes are lost, never leaked through the cache
            view.close()
            view = PaneGroups(table, 0, PARTIAL, cache)
            model = dict(written)
        assert dict(view.items()) == model
    view.write_through()
    view.close()
    reopened = PaneGroups(table, 0, PARTIAL, cache)
    assert dict(reopened.items()) == model
    assert len(reopened) == len(model)
    assert "1|all|60|0" in table.data  # another partition's group is never touched
    assert all(raw for key, raw in table.data.items())  # an emptied group leaves the store


def test_a_stored_group_costs_its_length_not_orjsons_write_buffer() -> None:
    """orjson's bytes keep its 4 KB write buffer; a group record is stored for hours, so
    it is copied (10,000 campaigns once took 1.1 GB for ~200,000 groups)."""
    import tracemalloc

    panes = {60 * i: [[1] + [0] * (WIDTH - 1), {"0": 123_456}] for i in range(2)}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_group(PARTIAL, panes, 60, 0) for _ in range(1_000)]
        per_group = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_group < len(kept[0]) + 100


def stored_and_cached() -> tuple[SimpleNamespace, GroupCache[Any]]:
    """A table holding one written group, and a cache holding it decoded."""
    table = SimpleNamespace(data={})
    cache: GroupCache[Any] = GroupCache()
    view = PaneGroups(table, 0, PARTIAL, cache)
    view[("all", 60, 0)] = [[1] + [0] * (WIDTH - 1), {"0": 5}]
    view.write_through()
    view.close()
    return table, cache


def test_a_cached_group_is_not_used_once_the_store_holds_another_record() -> None:
    """Faust's recovery and standby replication write the store directly."""
    table, cache = stored_and_cached()
    assert len(cache) == 1
    stored = encode_group(PARTIAL, {0: [[7] + [0] * (WIDTH - 1), {"0": 9}]}, 60, 0)
    table.data["0|all|60|0"] = stored
    assert PaneGroups(table, 0, PARTIAL, cache)[("all", 60, 0)][0][0] == 7


def test_the_cache_keeps_the_most_recently_used_groups() -> None:
    table = SimpleNamespace(data={})
    cache: GroupCache[Any] = GroupCache(limit=2)
    for block in (0, 960, 1920):
        view = PaneGroups(table, 0, PARTIAL, cache)
        view[("all", 60, block)] = [[1] + [0] * (WIDTH - 1), {}]
        view.write_through()
    assert len(cache) == 2
    assert cache.take("0|all|60|0", table.data["0|all|60|0"]) is None
    assert cache.take("0|all|60|1920", table.data["0|all|60|1920"]) is not None


def test_changes_never_written_do_not_reach_the_next_view_through_the_cache() -> None:
    """A batch that failed half-way leaves its view unwritten: the next batch must read
    the stored record, not the half-changed group."""
    table, cache = stored_and_cached()
    failed = PaneGroups(table, 0, PARTIAL, cache)
    failed[("all", 60, 0)][0][0] += 100  # changed in place, as apply_delta does
    failed[("all", 60, 0)] = failed[("all", 60, 0)]
    failed[("all", 60, 60)] = [[1] + [0] * (WIDTH - 1), {"0": 6}]
    failed.close()  # dropped without write_through
    again = PaneGroups(table, 0, PARTIAL, cache)
    assert dict(again.items()) == {("all", 60, 0): [[1] + [0] * (WIDTH - 1), {"0": 5}]}


def test_a_cached_group_is_used_while_the_store_holds_an_equal_record() -> None:
    """A store on disk returns new bytes at every read: equal bytes are the same record."""
    table, cache = stored_and_cached()
    table.data["0|all|60|0"] = bytes(bytearray(table.data["0|all|60|0"]))  # a copy
    assert cache.take("0|all|60|0", table.data["0|all|60|0"]) is not None
