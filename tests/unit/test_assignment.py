"""Whether an assignment holds every table partition the stages reading here need."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import assignment
from streams.assignment import AssignmentCheck, missing_partitions

MERGE, ROUTE, FUNNEL = "app-merge", "app-route", "app-funnel"
MERGED, CHANNELS, LEADS = "merged-changelog", "channels-changelog", "leads-changelog"
FED_BY = {MERGED: {MERGE, ROUTE}, CHANNELS: {MERGE, ROUTE}, LEADS: {FUNNEL}}


def co_partitioned(reading: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """What Faust's assignor makes active for ``reading`` when the metadata has every topic."""
    return reading | {
        (changelog, p) for changelog, feeders in FED_BY.items() for t, p in reading if t in feeders
    }


@given(st.sets(st.tuples(st.sampled_from([MERGE, ROUTE, FUNNEL, "clicks"]), st.integers(0, 5))))
def test_a_co_partitioned_assignment_is_whole(reading: set[tuple[str, int]]) -> None:
    assert missing_partitions(reading, co_partitioned(reading), FED_BY) == {}


@given(
    st.sets(st.tuples(st.sampled_from([MERGE, ROUTE, FUNNEL]), st.integers(0, 5)), min_size=1),
    st.sampled_from(sorted(FED_BY)),
)
def test_a_changelog_left_out_is_missing_for_every_partition_read(
    reading: set[tuple[str, int]], left_out: str
) -> None:
    """As after a broker restart: the metadata lacked ``left_out`` when the group assigned."""
    actives = {tp for tp in co_partitioned(reading) if tp[0] != left_out}
    expected = {p for t, p in reading if t in FED_BY[left_out]}
    assert missing_partitions(reading, actives, FED_BY) == (
        {left_out: expected} if expected else {}
    )


def test_a_standby_copy_is_not_held_active() -> None:
    reading = {(MERGE, 0), (MERGE, 1)}
    actives = {(MERGED, 0), (CHANNELS, 0), (CHANNELS, 1), (MERGE, 0), (MERGE, 1)}
    assert missing_partitions(reading, actives, FED_BY) == {MERGED: {1}}


def test_topics_feeding_no_table_need_nothing() -> None:
    assert missing_partitions({("clicks", 3)}, set(), FED_BY) == {}


def test_an_incomplete_assignment_asks_again_until_the_topics_are_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Incomplete: not whole, named, and the consumer is asked (every ``RETRY_EVERY``) for a
    new assignment once its metadata has the missing topics; a whole one stops the asking."""

    async def scenario() -> tuple[list[list[str]], list[str], bool, bool]:
        reading = {(MERGE, 0), (MERGE, 1)}
        actives = {tp for tp in co_partitioned(reading) if tp[0] != CHANNELS}
        asked: list[list[str]] = []
        known = [False, True]  # the first refresh still lacks the topic

        async def rejoin_once_known(topics: Collection[str]) -> bool:
            asked.append(sorted(topics))
            return known.pop(0) if known else True

        check = AssignmentCheck(FED_BY, lambda: reading, lambda: actives, rejoin_once_known)
        check.on_assigned()
        described = check.describe()
        was_complete = check.complete
        await asyncio.sleep(0.2)
        actives = co_partitioned(reading)  # the new assignment has it
        check.on_assigned()
        count = len(asked)
        await asyncio.sleep(0.1)
        assert len(asked) == count, "asked again after a whole assignment"
        return asked, described, was_complete, check.complete

    monkeypatch.setattr(assignment, "RETRY_EVERY", 0.01)
    asked, described, was_complete, complete_after = asyncio.run(scenario())
    assert described == [f"{CHANNELS}[0]", f"{CHANNELS}[1]"]
    assert not was_complete and complete_after
    assert len(asked) >= 2 and asked[0] == [CHANNELS]
