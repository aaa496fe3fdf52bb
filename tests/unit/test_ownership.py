"""Batches wait out rebalances and table restores, keep only partitions still assigned,
are put in offset order in the generation they are handled in, and a revocation can
wait for the batch under way (streams/exactly_once/ownership.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

from streams.exactly_once.order import TP, OffsetGuard
from streams.exactly_once.ownership import Ownership
from tests.unit.test_sequencer import FaustConsumer, Log


def msg(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, acked=False)


def guard(committed: dict[TP, int] | None = None) -> OffsetGuard:
    return OffsetGuard(Log({}, committed or {}, set()), FaustConsumer())


def revoke(offsets: OffsetGuard, *tps: TP) -> None:
    offsets.forget([SimpleNamespace(topic=t, partition=p) for t, p in tps])


async def feed(*batches: list[Any]) -> AsyncGenerator[list[Any], None]:
    for batch in batches:
        yield batch


class World:
    def __init__(self) -> None:
        self.is_whole = True
        self.owned = {("t", 0), ("t", 1)}

    def ownership(self) -> Ownership:
        return Ownership(lambda: self.is_whole, lambda: self.owned)


async def test_a_batch_waits_for_the_restore_then_keeps_only_partitions_still_owned() -> None:
    world = World()
    world.is_whole = False  # a rebalance: tables being restored
    ownership = world.ownership()
    handed: list[list[Any]] = []
    batch = [msg("t", 0, 5), msg("t", 1, 7), msg("t", 0, 6)]

    async def agent() -> None:
        async for handed_batch in ownership.gate(feed(batch), guard({("t", 0): 5})):
            handed.append(handed_batch)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)
    assert handed == []  # nothing touches state while it is being restored
    world.owned = {("t", 0)}  # the rebalance moved t[1] away
    world.is_whole = True
    await asyncio.wait_for(task, 2)
    assert [[(m.partition, m.offset) for m in b] for b in handed] == [[(0, 5), (0, 6)]]
    assert ownership.held == 1 and ownership.disowned == 1
    assert [m.acked for m in batch] == [False, True, False]  # t[1]'s: never acked here


async def test_a_revocation_waits_for_the_batch_under_way() -> None:
    ownership = World().ownership()
    release = asyncio.Event()
    finished: list[str] = []

    async def agent() -> None:
        async for _batch in ownership.gate(feed([msg("t", 0, 1)]), guard({("t", 0): 1})):
            await release.wait()  # the handler is mid-batch (awaiting sends)
            finished.append("batch")

    async def revocation() -> None:
        await ownership.idle()
        finished.append("revoked")

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.05)
    revoking = asyncio.create_task(revocation())
    await asyncio.sleep(0.1)
    assert not revoking.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(task, revoking), 2)
    assert finished == ["batch", "revoked"]


async def test_a_held_batch_is_never_dropped_only_cancelled() -> None:
    """A stopping worker cancels the wait; the gate never ends the stream by itself (the
    held messages, taken from the stream but not handled, could then be acked)."""
    world = World()
    world.is_whole = False
    ownership = world.ownership()
    handed: list[list[Any]] = []

    async def agent() -> None:
        async for batch in ownership.gate(feed([msg("t", 0, 1)]), guard({("t", 0): 1})):
            handed.append(batch)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)
    assert not task.done() and handed == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and handed == []
    await asyncio.wait_for(ownership.idle(), 1)  # nothing under way


async def test_a_batch_held_over_a_revocation_is_ordered_from_the_committed_offset() -> None:
    """Offsets 5-9 were handled but not committed; 10-11 arrive as a rebalance begins.
    Ordered before the hold (as once), 10-11 were handled first after it and the re-read
    from the committed offset (5-9) after them: every pane they touched already held
    mark 11, and their counts were skipped as replays (the two-worker fault test)."""
    world = World()
    offsets = guard({("t", 0): 5})
    ownership = world.ownership()
    handed: list[int] = []
    arrived = asyncio.Event()

    async def batches() -> AsyncGenerator[list[Any], None]:
        yield [msg("t", 0, o) for o in range(5, 10)]
        world.is_whole = False  # the rebalance: the next batch waits in the gate
        arrived.set()
        yield [msg("t", 0, 10), msg("t", 0, 11)]
        yield [msg("t", 0, o) for o in range(5, 13)]  # Faust's re-read from the commit

    async def agent() -> None:
        async for batch in ownership.gate(batches(), offsets):
            handed.extend(m.offset for m in batch)

    task = asyncio.create_task(agent())
    await arrived.wait()
    await asyncio.sleep(0.1)
    revoke(offsets, ("t", 0))  # and reassigned here: it starts again from offset 5
    world.is_whole = True
    await asyncio.wait_for(task, 2)
    assert handed == [5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 10, 11, 12]
    assert offsets.filled == 5  # 5-9 read directly, ahead of 10 and 11


async def test_a_revocation_during_the_ordering_orders_the_batch_again() -> None:
    """The guard awaits Kafka (a start, a hole); a rebalance that begins meanwhile resets
    it, so the batch is ordered again, from the new generation's start."""
    world = World()
    log = Log({}, {("t", 0): 3}, set())
    offsets = OffsetGuard(log, FaustConsumer())
    ownership = world.ownership()
    starts = log.starts
    calls = 0

    async def slow_starts(tps: Any) -> dict[TP, int]:
        nonlocal calls
        calls += 1
        found = await starts(tps)
        if calls == 1:  # the rebalance lands while the first start is asked for
            revoke(offsets, ("t", 0))
            log.committed[("t", 0)] = 1  # what the new generation starts from
        return found

    log.starts = slow_starts  # type: ignore[method-assign]
    handed = [
        [m.offset for m in batch]
        async for batch in ownership.gate(feed([msg("t", 0, 3), msg("t", 0, 4)]), offsets)
    ]
    assert handed == [[1, 2, 3, 4]] and ownership.reordered == 1


async def test_no_batch_is_handed_over_while_paused() -> None:
    """The partial snapshots read the tables while the batches are paused: none under
    way, none started (streams/partial_snapshots.py)."""
    ownership = World().ownership()
    release = asyncio.Event()
    events: list[str] = []

    async def agent() -> None:
        batches = feed([msg("t", 0, 1)], [msg("t", 0, 2)])
        async for batch in ownership.gate(batches, guard({("t", 0): 1})):
            events.append(f"batch {batch[0].offset}")
            if batch[0].offset == 1:
                await release.wait()

    async def snapshot() -> None:
        async with ownership.paused():
            events.append("paused")
            await asyncio.sleep(0.1)
            events.append("resumed")

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.05)
    pausing = asyncio.create_task(snapshot())
    await asyncio.sleep(0.05)
    assert events == ["batch 1"]  # the pause waits for the batch under way
    release.set()
    await asyncio.wait_for(asyncio.gather(task, pausing), 2)
    assert events == ["batch 1", "paused", "resumed", "batch 2"]


class AckingSource:
    """Batches acked the way ``exactly_once/batches.py`` acks them: when the consumer
    asks for the next one, never when it gives up on one."""

    def __init__(self, *batches: list[Any]) -> None:
        self.batches = batches
        self.acked: list[int] = []
        self.closed = False

    async def __call__(self) -> AsyncGenerator[list[Any], None]:
        try:
            for batch in self.batches:
                yield batch
                self.acked += [m.offset for m in batch]
            await asyncio.Event().wait()  # a quiet stream: no more batches
        finally:
            self.closed = True


async def test_a_batch_whose_handler_raised_is_no_longer_under_way_and_not_acked() -> None:
    """The agent closes the gate when its handler raises: a batch stuck "under way" made
    every later snapshot wait for it (paused) and nothing was published any more."""
    ownership = World().ownership()
    source = AckingSource([msg("t", 0, 1)], [msg("t", 0, 2)])

    async def agent() -> None:
        async with contextlib.aclosing(ownership.gate(source(), guard({("t", 0): 1}))) as gate:
            async for _batch in gate:
                raise RuntimeError("the handler failed")

    with contextlib.suppress(RuntimeError):
        await asyncio.wait_for(agent(), 2)
    assert ownership.busy == 0 and source.closed and source.acked == []
    await asyncio.wait_for(ownership.idle(), 1)
    async with ownership.paused():
        pass


class SlowGaps(FaustConsumer):
    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        await asyncio.sleep(0.05)  # Faust merges the gaps' intervals, sleeping in between
        await super()._add_gap(tp, start, end)


async def test_a_stop_waits_for_the_batch_under_way_and_its_acks_then_hands_over_nothing() -> None:
    """What Faust commits on stopping is what finished: the batch under way ends and its
    offsets are acked (even with a filled hole, whose release awaits) before ``stop``
    returns, and the next batch is never handed over."""
    ownership = World().ownership()
    offsets = OffsetGuard(Log({}, {("t", 0): 1}, set()), SlowGaps())
    source = AckingSource([msg("t", 0, 1), msg("t", 0, 3)], [msg("t", 0, 4)])  # 2: a hole
    release = asyncio.Event()
    handled: list[list[int]] = []

    async def agent() -> None:
        async with contextlib.aclosing(ownership.gate(source(), offsets)) as gate:
            async for batch in gate:
                await release.wait()
                handled.append([m.offset for m in batch])

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(ownership.stop(2))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the batch is under way
    release.set()
    assert await asyncio.wait_for(stopping, 2) is True
    assert handled == [[1, 2, 3]] and source.acked == [1, 3]
    async with ownership.paused():  # a snapshot tick while stopping does not reopen the gate
        pass
    await asyncio.sleep(0.1)
    assert handled == [[1, 2, 3]] and source.acked == [1, 3]  # offset 4: held, unacked
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert source.closed and source.acked == [1, 3]


async def test_a_stop_gives_up_waiting_after_its_patience() -> None:
    ownership = World().ownership()
    never = asyncio.Event()

    async def agent() -> None:
        async for _batch in ownership.gate(feed([msg("t", 0, 1)]), guard({("t", 0): 1})):
            await never.wait()

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.05)
    assert await ownership.stop(0.1) is False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
