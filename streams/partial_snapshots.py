"""Partial panes on their way to the merge stage: absolute snapshots, keyed by scope.

Every ``FUNNELPULSE_SNAPSHOT_INTERVAL`` a timer sends the panes the counting stages
changed since the last call — absolute values with their versions, never deltas — to
the merge partition that owns each scope (``partition_for(scope)``). Absolute and
versioned, a snapshot can be lost, repeated or reordered without harm: after a recovery
every stored partial above the partition's sent mark is sent again (found a slice per
tick, ``PartialCounts.read_stored``; each tick's futures go back to it, and the mark
moves once the broker has them all), and the merge stage keeps the newest version per
source.

The trap: a full re-send after recovery holds every pane of every scope, so messages
are split at ``SNAPSHOT_PANES_PER_MESSAGE`` to stay far below Kafka's size limit. And it
is sent a share at a time, the next share only once the merge stage has taken the last
(``ResendPace``): a merge partition is first in, first out, and a re-send sent at the
timer's pace (8,000 panes every 100 ms) piled up there faster than the merge stage takes
it, so a restart's first new counts queued behind a backlog that grew with the history.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import orjson

from .campaign_channels import ChannelTally
from .codec import partition_for
from .exactly_once.delivery import require_delivery
from .pane_values import version
from .partial_counts import RESEND_GROUPS, PartialCounts

SNAPSHOT_PANES_PER_MESSAGE = 2000  # ~200 KB of JSON
TALLIES_PER_MESSAGE = 5000  # campaigns' channel tallies, ~150 KB


class ResendPace:
    """Lets the next re-send share go once every message that carried the previous one
    has been merged: ``merged_through(partition)`` is the last merge-topic offset the
    merge stage here has processed, or None for a merge partition this worker does not
    consume (then delivery is all it waits for)."""

    def __init__(self, merged_through: Callable[[int], int | None]) -> None:
        self.merged_through = merged_through
        self.last_sent: dict[int, asyncio.Future[Any]] = {}  # merge partition → newest send

    def budget(self) -> int:
        """Groups the next share may hold: ``RESEND_GROUPS``, or 0 while one is in flight."""
        for dest, sent in list(self.last_sent.items()):
            if not sent.done():
                return 0
            if not sent.cancelled() and sent.exception() is None:
                through = self.merged_through(dest)
                if through is not None and through < sent.result().offset:
                    return 0
            del self.last_sent[dest]  # merged, or failed (require_delivery stops the worker)
        return RESEND_GROUPS

    def carried(self, dest: int, sent: Any) -> None:
        self.last_sent[dest] = sent


class PartialSnapshots:
    def __init__(
        self,
        sources: Sequence[PartialCounts],
        merge_topic: Any,
        merge_partitions: int,
        channels: ChannelTally,
        pace: ResendPace | None = None,
        durable: Callable[[], AbstractAsyncContextManager[None]] = nullcontext,
    ) -> None:
        """``durable``: a context inside which the stores hold only state whose changelog
        records the broker has (``app``: the batches paused, the producer flushed)."""
        self.sources, self.topic, self.partitions = sources, merge_topic, merge_partitions
        self.channels = channels
        self.pace = pace if pace is not None else ResendPace(lambda _partition: None)
        self.durable = durable

    async def send_changed(self) -> None:
        """Absolute partials of the panes changed since the last call, in a few messages:
        one per merge partition, split when large.

        The trap: a snapshot of a pane whose changelog record is not on the broker yet.
        If the worker dies then, the record is lost but the merge stage keeps the
        snapshot's version; the next owner counts the replayed messages again, but when
        their first sightings fall in another order its marks, and so its versions, may
        stay below that snapshot's, and the merge stage ignores the pane's later counts
        (an old hourly pane, rarely touched again, stays short). So panes are read only
        where every record of every batch so far is acknowledged (``durable``), and the
        batches are paused for that only when a pane waits to be sent: an idle worker's
        tick costs no producer flush."""
        for counts in self.sources:  # a slice of each recovered partition's stored groups
            counts.read_stored()
        if any(counts.changed or counts.marks_due() for counts in self.sources):
            async with self.durable():
                await self._send_changed()
        else:
            await self._send_channels()

    async def _send_changed(self) -> None:
        budget = self.pace.budget()
        for counts in self.sources:
            await counts.store_marks()  # of the earlier ticks now delivered
            resending = budget > 0 and counts.resending > 0
            pending, groups = counts.take_changed(budget)
            through, sends = counts.sent_through(), []
            for partition in {*pending, *groups}:
                state = counts.groups(partition)
                by_scope: dict[str, list[list[Any]]] = defaultdict(list)
                for scope, size, block in groups.get(partition, ()):
                    for start, value in state.group(scope, size, block).items():
                        by_scope[scope].append([size, start, version(value), value[0]])
                for scope, size, start in pending.get(partition, ()):
                    value = state.get((scope, size, start))
                    if value is not None:
                        by_scope[scope].append([size, start, version(value), value[0]])
                state.close()
                sends += await self._send(counts.stage.source(partition), by_scope, resending)
            counts.snapshot_sent(through, sends)
        await self._send_channels()

    async def _send_channels(self) -> None:
        """The campaigns' channel tallies since the last call, to each one's merge
        partition, where its owner keeps the totals (``campaign_channels.py``)."""
        for dest, tallies in self.channels.take(self.partitions).items():
            campaigns = list(tallies.items())
            for start in range(0, len(campaigns), TALLIES_PER_MESSAGE):
                chunk = dict(campaigns[start : start + TALLIES_PER_MESSAGE])
                await self._send_one("channels", dest, {}, channels=chunk)

    async def _send(
        self, source: str, by_scope: dict[str, list[list[Any]]], resending: bool
    ) -> list[Any]:
        """``resending``: the panes include a re-send share, which ``pace`` follows.
        Returns the sends' futures."""
        outgoing: dict[int, dict[str, list[list[Any]]]] = defaultdict(dict)
        sizes: dict[int, int] = defaultdict(int)
        last: dict[int, Any] = {}
        sends = []
        for scope, panes in by_scope.items():
            dest = partition_for(scope, self.partitions)
            outgoing[dest][scope] = panes
            sizes[dest] += len(panes)
            if sizes[dest] >= SNAPSHOT_PANES_PER_MESSAGE:
                last[dest] = await self._send_one(source, dest, outgoing.pop(dest))
                sends.append(last[dest])
                sizes[dest] = 0
        for dest, scopes in outgoing.items():
            last[dest] = await self._send_one(source, dest, scopes)
            sends.append(last[dest])
        if resending:
            for dest, sent in last.items():
                self.pace.carried(dest, sent)
        return sends

    async def _send_one(self, source: str, dest: int, scopes: dict[str, Any], **extra: Any) -> Any:
        """Sends one message; returns the send's future (require_delivery checks it)."""
        body = orjson.dumps({"src": source, "scopes": scopes, **extra})
        sent = await self.topic.send(value=body, partition=dest)
        require_delivery(sent, f"a snapshot of {source} to merge partition {dest}")
        return sent
