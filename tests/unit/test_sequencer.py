"""The offset guard hands every partition's messages over once, in offset order, filling
the holes Faust leaves around a rebalance from a source of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.exactly_once.order import TP, Fetched, OffsetGuard


class Log:
    """A partition log with a committed offset, as the guard's private client sees it."""

    def __init__(self, ends: dict[TP, int], committed: dict[TP, int], missing: set[int]) -> None:
        self.ends = ends
        self.committed = committed
        self.missing = missing  # offsets without a record (transaction markers)
        self.fetches: list[tuple[TP, int, int]] = []

    async def starts(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: self.committed.get(tp, 0) for tp in tps}

    async def fetch(self, tp: TP, start: int, end: int) -> list[Fetched]:
        self.fetches.append((tp, start, end))
        return [Fetched(*tp, o, b"x") for o in range(start, end) if o not in self.missing]


class FaustConsumer:
    def __init__(self) -> None:
        self.gaps: list[tuple[Any, int, int]] = []
        self.seeks: list[tuple[Any, int]] = []

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        """The seek done in the consumer's thread (the only one the guard may use)."""
        self.seeks += [(tuple(tp), offset) for tp, offset in partitions.items()]

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((tuple(tp), start, end))
        await asyncio.sleep(0)  # as Faust's does: other tasks run in between


def msgs(topic: str, partition: int, *offsets: int) -> list[Fetched]:
    return [Fetched(topic, partition, o, b"m") for o in offsets]


def offsets(batch: list[Any]) -> list[int]:
    return [m.offset for m in batch]


async def test_in_order_passes_untouched_and_repeats_are_dropped() -> None:
    guard = OffsetGuard(Log({}, {("t", 0): 5}, set()))
    out, holes = await guard.order(msgs("t", 0, 5, 6, 7))
    assert offsets(out) == [5, 6, 7] and holes == []
    out, holes = await guard.order(msgs("t", 0, 6, 7, 8))  # re-delivered around a seek
    assert offsets(out) == [8] and guard.dropped == 2


async def test_a_hole_is_read_directly_and_handed_over_first_then_released() -> None:
    log, faust = Log({}, {("t", 0): 10}, set()), FaustConsumer()
    guard = OffsetGuard(log, faust)
    out, holes = await guard.order([*msgs("t", 0, 10, 11, 14, 15), *msgs("u", 1, 0)])
    assert offsets(out) == [10, 11, 12, 13, 14, 15, 0]
    assert log.fetches == [(("t", 0), 12, 14)]
    assert holes == [(("t", 0), 12, 14)] and guard.filled == 2
    await guard.release(holes)
    assert faust.gaps == [(("t", 0), 12, 13)]


async def test_the_first_message_after_a_start_is_checked_against_the_committed_offset() -> None:
    log = Log({}, {("t", 2): 40}, {41})  # 41 is a transaction marker: no record
    guard = OffsetGuard(log)
    out, _ = await guard.order(msgs("t", 2, 43, 44))
    assert offsets(out) == [40, 42, 43, 44]


async def test_revoked_partitions_restart_from_their_committed_offset() -> None:
    log = Log({}, {("t", 0): 3}, set())
    guard = OffsetGuard(log)
    await guard.order(msgs("t", 0, 3, 4))
    log.committed[("t", 0)] = 9  # another worker went on meanwhile
    guard.forget([type("TP", (), {"topic": "t", "partition": 0})()])
    out, _ = await guard.order(msgs("t", 0, 9))
    assert offsets(out) == [9] and log.fetches == []


async def test_positions_moved_by_an_ordering_pass_can_be_put_back() -> None:
    """What the gate needs to order a batch again (``ownership.Ownership.gate``): every
    position back, except a forgotten partition's, which starts from its commit again."""
    guard = OffsetGuard(Log({}, {("t", 0): 0, ("t", 1): 4}, set()), FaustConsumer())
    await guard.order(msgs("t", 0, 0))
    before = guard.positions([("t", 0), ("t", 1)])
    assert before == {("t", 0): 1, ("t", 1): None}
    await guard.order([*msgs("t", 0, 1, 2), *msgs("t", 1, 4)])
    guard.restore(before)
    assert guard.positions([("t", 0), ("t", 1)]) == before
    await guard.order(msgs("t", 0, 1))
    guard.forget([type("TP", (), {"topic": "t", "partition": 0})()])
    guard.restore(before)
    assert guard.positions([("t", 0)]) == {("t", 0): None} and guard.revocations == 1


@given(
    st.lists(st.integers(0, 30), max_size=60),
    st.sets(st.integers(0, 30), max_size=5),
    st.integers(0, 10),
)
async def test_whatever_faust_delivers_every_offset_is_handed_over_once_in_order(
    delivered: list[int], markers: set[int], committed: int
) -> None:
    delivered = [o for o in delivered if o not in markers]  # a marker is never delivered
    log = Log({}, {("t", 0): committed}, markers)
    guard = OffsetGuard(log)
    out, _ = await guard.order(msgs("t", 0, *delivered))
    got = offsets(out)
    assert got == sorted(set(got))  # strictly increasing: once each, in order
    reached = max([committed - 1, *delivered])
    assert set(got) == {o for o in range(committed, reached + 1) if o not in markers} | (
        {o for o in delivered if o >= committed}
    )


async def test_a_partition_whose_tail_was_dropped_is_read_again() -> None:
    """Faust dropped the last messages of a partition: no later message shows the hole."""
    faust = FaustConsumer()
    guard = OffsetGuard(Log({}, {("t", 0): 3, ("u", 0): 7}, set()), faust)
    await guard.order(msgs("t", 0, 3, 4))  # 5 and 6 exist but never come
    ends = {("t", 0): 7, ("u", 0): 7}  # u is caught up at its committed offset
    assert await guard.rewind_stuck(ends) == []  # not for long enough yet
    guard.last_seen[("t", 0)] -= 60
    assert await guard.rewind_stuck(ends) == [("t", 0)]
    assert faust.seeks == [(("t", 0), 5)]
    assert await guard.rewind_stuck(ends) == []  # the re-read gets its time
    out, _ = await guard.order(msgs("t", 0, 3, 4, 5, 6))  # re-read from where it was sought
    assert offsets(out) == [5, 6]
    assert await guard.rewind_stuck(ends) == []


async def test_a_start_read_while_a_batch_went_ahead_does_not_rewind_the_partition() -> None:
    """The stuck check of a tick asks for the committed offsets while the intake starts
    the same partition and hands its first messages over: the answer, arriving late, must
    not set the partition back (it made offsets 0-23 a "hole", handed over twice)."""
    asking = asyncio.Event()
    answer = asyncio.Event()

    class SlowLog(Log):
        async def starts(self, tps: Iterable[TP]) -> dict[TP, int]:
            if not asking.is_set():  # the tick's call: slow
                asking.set()
                await answer.wait()
            return await super().starts(tps)

    log = SlowLog({}, {("t", 0): 0}, set())
    guard = OffsetGuard(log, FaustConsumer())
    tick = asyncio.create_task(guard.rewind_stuck({("t", 0): 100}))
    await asking.wait()
    out, _ = await guard.order(msgs("t", 0, 0, 1, 2))  # the intake goes ahead
    assert offsets(out) == [0, 1, 2]
    answer.set()
    await tick
    out, holes = await guard.order(msgs("t", 0, 3, 4))
    assert offsets(out) == [3, 4] and holes == [] and log.fetches == []


async def test_silence_during_a_rebalance_is_no_alarm() -> None:
    """Faust pauses and seeks partitions while it rebalances and recovers: the clocks of
    the stuck check start again afterwards (a rewind then crashed a worker)."""
    faust = FaustConsumer()
    guard = OffsetGuard(Log({}, {("t", 0): 3}, set()), faust)
    await guard.order(msgs("t", 0, 3, 4))
    guard.last_seen[("t", 0)] -= 60  # silent for a minute, during a rebalance
    guard.hold()
    ends = {("t", 0): 7}
    assert await guard.rewind_stuck(ends) == []
    guard.last_seen[("t", 0)] -= 60  # and still silent a minute after it
    assert await guard.rewind_stuck(ends) == [("t", 0)]
    assert faust.seeks == [(("t", 0), 5)]


async def test_a_partition_waiting_in_fausts_buffers_is_not_rewound() -> None:
    """Under a backlog a partition's next messages can wait in a stream buffer for tens of
    seconds: silence then is a queue, not a hole, and a seek would only re-fetch them."""
    faust = FaustConsumer()
    guard = OffsetGuard(Log({}, {("t", 0): 3, ("u", 0): 3}, set()), faust)
    await guard.order(msgs("t", 0, 3, 4))
    await guard.order(msgs("u", 0, 3))
    guard.last_seen[("t", 0)] -= 60
    guard.last_seen[("u", 0)] -= 60
    ends = {("t", 0): 7, ("u", 0): 9}
    asked: list[bool] = []

    def buffered() -> set[tuple[str, int]]:
        asked.append(True)
        return {("t", 0)}

    assert await guard.rewind_stuck(ends, buffered) == [("u", 0)]
    assert faust.seeks == [(("u", 0), 4)]
    assert asked == [True]  # read once per check, however many partitions are silent
    assert await guard.rewind_stuck(ends, lambda: set()) == [("t", 0)]  # drained, still silent
    assert faust.seeks[-1] == (("t", 0), 5)
