"""Partial panes on their way to the merge stage: absolute snapshots, keyed by scope.

Every ``FUNNELPULSE_SNAPSHOT_INTERVAL`` a timer sends the panes the counting stages
changed since the last call — absolute values with their versions, never deltas — to
the merge partition that owns each scope (``partition_for(scope)``). Absolute and
versioned, a snapshot can be lost, repeated or reordered without harm: after a recovery
every stored partial is sent again (``PartialCounts.on_partials_recovered``), and the
merge stage keeps the newest version per source.

The trap: a full re-send after recovery holds every pane of every scope, so messages
are split at ``SNAPSHOT_PANES_PER_MESSAGE`` to stay far below Kafka's size limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from .campaign_channels import ChannelTally
from .codec import partition_for
from .exactly_once.delivery import require_delivery
from .pane_values import version
from .partial_counts import PartialCounts

SNAPSHOT_PANES_PER_MESSAGE = 2000  # ~200 KB of JSON
TALLIES_PER_MESSAGE = 5000  # campaigns' channel tallies, ~150 KB


class PartialSnapshots:
    def __init__(
        self,
        sources: Sequence[PartialCounts],
        merge_topic: Any,
        merge_partitions: int,
        channels: ChannelTally,
    ) -> None:
        self.sources, self.topic, self.partitions = sources, merge_topic, merge_partitions
        self.channels = channels

    async def send_changed(self) -> None:
        """Absolute partials of the panes changed since the last call, in a few messages:
        one per merge partition, split when large."""
        for counts in self.sources:
            pending, groups = counts.take_changed()
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
                await self._send(counts.stage.source(partition), by_scope)
        await self._send_channels()

    async def _send_channels(self) -> None:
        """The campaigns' channel tallies since the last call, to each one's merge
        partition, where its owner keeps the totals (``campaign_channels.py``)."""
        for dest, tallies in self.channels.take(self.partitions).items():
            campaigns = list(tallies.items())
            for start in range(0, len(campaigns), TALLIES_PER_MESSAGE):
                chunk = dict(campaigns[start : start + TALLIES_PER_MESSAGE])
                await self._send_one("channels", dest, {}, channels=chunk)

    async def _send(self, source: str, by_scope: dict[str, list[list[Any]]]) -> None:
        outgoing: dict[int, dict[str, list[list[Any]]]] = defaultdict(dict)
        sizes: dict[int, int] = defaultdict(int)
        for scope, panes in by_scope.items():
            dest = partition_for(scope, self.partitions)
            outgoing[dest][scope] = panes
            sizes[dest] += len(panes)
            if sizes[dest] >= SNAPSHOT_PANES_PER_MESSAGE:
                await self._send_one(source, dest, outgoing.pop(dest))
                sizes[dest] = 0
        for dest, scopes in outgoing.items():
            await self._send_one(source, dest, scopes)

    async def _send_one(self, source: str, dest: int, scopes: dict[str, Any], **extra: Any) -> None:
        body = orjson.dumps({"src": source, "scopes": scopes, **extra})
        sent = await self.topic.send(value=body, partition=dest)
        require_delivery(sent, f"a snapshot of {source} to merge partition {dest}")
