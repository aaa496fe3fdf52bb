"""Batches wait out rebalances and table restores, keep only partitions still assigned,
and a revocation can wait for the batch under way (streams/ownership.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from streams.exactly_once.ownership import Ownership


def msg(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


async def feed(*batches: list[Any]) -> AsyncIterator[list[Any]]:
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

    async def agent() -> None:
        async for batch in ownership.gate(feed([msg("t", 0, 5), msg("t", 1, 7), msg("t", 0, 6)])):
            handed.append(batch)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)
    assert handed == []  # nothing touches state while it is being restored
    world.owned = {("t", 0)}  # the rebalance moved t[1] away
    world.is_whole = True
    await asyncio.wait_for(task, 2)
    assert [[(m.partition, m.offset) for m in b] for b in handed] == [[(0, 5), (0, 6)]]
    assert ownership.held == 1 and ownership.disowned == 1


async def test_a_revocation_waits_for_the_batch_under_way() -> None:
    ownership = World().ownership()
    release = asyncio.Event()
    finished: list[str] = []

    async def agent() -> None:
        async for _batch in ownership.gate(feed([msg("t", 0, 1)])):
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
        async for batch in ownership.gate(feed([msg("t", 0, 1)])):
            handed.append(batch)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)
    assert not task.done() and handed == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and handed == []
    await asyncio.wait_for(ownership.idle(), 1)  # nothing under way
