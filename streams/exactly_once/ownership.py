"""The agents touch a partition's state only while this worker owns it and it is whole.

Faust 0.15.3 hands agents messages it should hold back. Seen in ``make bench`` with two
workers on 2 cores: after a rebalance, input messages of reassigned partitions reached
the intake *while their tables were being restored from the changelogs* (by Faust's
code, the likely path: its consumer yields records of partitions in its
``_buffered_partitions`` set even when they are paused, and that set outlives a
rebalance), and a batch under way when partitions were
revoked went on writing their tables after the new owner had started to restore them.
A restore overwrites what the agent just counted in memory, and a late write of the old
owner lands in the changelog behind the new owner's: either way counts are lost, and the
two-worker run came out 5-13 % short.

So every batch passes this gate after the offset guard: it waits while Faust rebalances
or restores tables, then keeps only messages of partitions still assigned here (the
others are the new owner's to read from the committed offset). And a revocation waits,
before it lets the rebalance go on, until the batch under way is done and its changelog
records are flushed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger("funnelpulse.ownership")
POLL_SECONDS = 0.05


class Ownership:
    def __init__(
        self, whole: Callable[[], bool], assigned: Callable[[], set[tuple[str, int]]]
    ) -> None:
        self.whole = whole  # neither rebalancing nor restoring tables
        self.assigned = assigned  # the (topic, partition)s this worker reads now
        self.busy = 0  # batches being handled
        self._idle = asyncio.Event()
        self._idle.set()
        self.held = 0  # batches that waited for a rebalance or a restore
        self.disowned = 0  # messages of partitions no longer assigned here, not handled

    async def gate(self, batches: AsyncIterator[list[Any]]) -> AsyncIterator[list[Any]]:
        async for messages in batches:
            if not self.whole():
                # Held until the rebalance is over or the worker stops, which cancels
                # this wait. Never ended by returning: that would end the agent's stream,
                # and the held messages, taken from it but not handled, could be acked.
                self.held += 1
                while not self.whole():  # noqa: ASYNC110 (Faust sets plain flags)
                    await asyncio.sleep(POLL_SECONDS)
            assigned = self.assigned()
            mine = [m for m in messages if (m.topic, m.partition) in assigned]
            if len(mine) < len(messages):
                self.disowned += len(messages) - len(mine)
                log.info("%d messages of partitions no longer assigned here left to their "
                         "new owner", len(messages) - len(mine))  # fmt: skip
            if not mine:
                continue
            self.busy += 1
            self._idle.clear()
            try:
                yield mine  # handled when control comes back
            finally:
                self.busy -= 1
                if not self.busy:
                    self._idle.set()

    async def idle(self) -> None:
        """Returns once no batch is being handled."""
        await self._idle.wait()
