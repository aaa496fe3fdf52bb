"""The agents touch a partition's state only while this worker owns it and it is whole,
and get each partition's messages in the offset order of the generation they run in.

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

So every batch passes this gate: it waits while Faust rebalances or restores tables,
keeps only messages of partitions still assigned here (the others are the new owner's
to read from the committed offset), and only then is put in offset order by the offset
guard (``order.py``). And a revocation waits, before it lets the rebalance go on, until
the batch under way is done and its changelog records are flushed.

The trap is the order of those two steps. With the guard first, a batch it had ordered
could then be held here across a rebalance, while the revocation reset the guard and
Faust sought the partition back to its committed offset: the held batch (offsets
338-339 of a clicks partition, say) was handled first, the re-read from the committed
offset (247-337) after it, and every pane those messages touched already carried mark
339, so their counts were taken for replays and skipped (the two-worker fault test,
542 clicks short). Now the guard orders what this gate lets through, and a batch whose
ordering a revocation overtook (a hole read from Kafka is an await) is ordered again
from the guard's fresh start.

Messages not handed over are *withheld* from Faust's acknowledgement: acked after a
revocation, an offset went into Faust's acked list of that partition, which outlives
the revocation, and Faust's commit steps over a hole of one message
(``Consumer._new_offset`` tests ``min(acked) - committed > 1``) — a stale offset right
after the committed one would have committed a message no one handled.

And a stop lets the batch under way finish before Faust closes the tables (``stop``):
Faust's ``App.on_stop`` closes every table's store *before* it stops the agents, and a
batch that read a store after that failed on a database Faust had let go (the SIGTERM
fault test: the intake crashed with RocksDB's "lock hold by current process").
Closing the gate closes its source with it, so a batch given up on (its handler raised,
or was cancelled) is never acked (``batches.py``) and no longer counts as under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, Protocol

log = logging.getLogger("funnelpulse.ownership")
POLL_SECONDS = 0.05


class Ordering(Protocol):
    """What the gate asks of the offset guard (``order.OffsetGuard``)."""

    revocations: int  # grows at every revocation the guard is told about

    async def order(self, messages: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """The messages to hand over, in offset order, and the holes filled."""
        ...

    def positions(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The next expected offset of each partition (None: not started)."""
        ...

    def restore(self, positions: Mapping[tuple[str, int], int | None]) -> None:
        """Puts back positions an ordering pass moved (partitions forgotten since stay so)."""
        ...

    async def release(self, holes: list[Any]) -> None:
        """Lets Faust commit past the holes of a batch once it is handled."""
        ...


def withhold(message: Any) -> None:
    """Keeps a message the agents did not handle out of Faust's acked offsets: it is read
    again from the committed offset, by this worker or the new owner. (Faust's ``ack``
    does nothing for a message marked acked.)"""
    message.acked = True


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
        self.reordered = 0  # batches ordered again: a revocation overtook their ordering
        self._going = asyncio.Event()  # cleared while ``paused``: no batch is handed over
        self._going.set()
        self.stopping = False  # ``stop``: no batch is handed over any more

    async def gate(
        self, batches: AsyncGenerator[list[Any], None], ordering: Ordering
    ) -> AsyncGenerator[list[Any], None]:
        """The batches to handle. Close it (``contextlib.aclosing``) when the handler gives
        up: a batch stays "under way" until control comes back here."""
        async with aclosing(batches):
            async for messages in batches:
                mine = await self._ordered(messages, ordering)
                if mine is None:
                    continue
                ordered, holes = mine
                self.busy += 1
                self._idle.clear()
                try:
                    yield ordered  # handled when control comes back
                    await ordering.release(holes)
                finally:
                    self.busy -= 1
                    if not self.busy:
                        self._idle.set()
                # no await from here to the source's acks (it acks as it is asked for
                # the next batch): ``idle`` then means "done and acked" (``stop``)

    async def _ordered(
        self, messages: list[Any], ordering: Ordering
    ) -> tuple[list[Any], list[Any]] | None:
        """The batch's messages of partitions assigned here, in order, with their holes;
        None when none is left to handle."""
        while True:
            await self._until_whole()
            assigned = self.assigned()
            mine = [m for m in messages if (m.topic, m.partition) in assigned]
            if len(mine) < len(messages):
                gone = [m for m in messages if (m.topic, m.partition) not in assigned]
                for message in gone:
                    withhold(message)
                self.disowned += len(gone)
                log.info("%d messages of partitions no longer assigned here left to their "
                         "new owner", len(gone))  # fmt: skip
            if not mine:
                return None
            revocations = ordering.revocations
            before = ordering.positions({(m.topic, m.partition) for m in mine})
            ordered, holes = await ordering.order(mine)
            await self._going.wait()  # not handed over while ``paused``
            if self.whole() and ordering.revocations == revocations:
                return ordered, holes
            # a rebalance began while the guard ordered (it awaits Kafka for holes and
            # starts): order again in the generation the batch will be handled in
            ordering.restore(before)
            self.reordered += 1
            messages = mine

    async def _until_whole(self) -> None:
        if not self.whole():
            # Held until the rebalance is over or the worker stops, which cancels this
            # wait. Never ended by returning: that would end the agent's stream, and the
            # held messages, taken from it but not handled, could be acked.
            self.held += 1
            while not self.whole():  # noqa: ASYNC110 (Faust sets plain flags)
                await asyncio.sleep(POLL_SECONDS)

    async def idle(self) -> None:
        """Returns once no batch is being handled."""
        await self._idle.wait()

    async def finished(self, patience: float) -> bool:
        """True once no batch is being handled; False if one still is after ``patience``
        seconds (a revocation and a stop go on then, and say so)."""
        try:
            await asyncio.wait_for(self.idle(), patience)
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Inside, no batch is being handled and none is handed over: the state is what
        whole batches made it (the partial snapshots read it so, ``app``)."""
        self._going.clear()
        try:
            await self.idle()
            yield
        finally:
            if not self.stopping:
                self._going.set()

    async def stop(self, patience: float) -> bool:
        """From now on no batch is handed over; returns once the batch under way is done
        and acked (True), or after ``patience`` seconds (False: it is still under way).
        Held batches stay held, unacked: the commit made on stopping stops before them."""
        self.stopping = True
        self._going.clear()
        return await self.finished(patience)
