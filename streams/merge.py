"""The merge stage: partial snapshots in, the newest per source kept, per scope.

Every counting partition (intake and funnel) sends absolute snapshots of the panes it
changed to the merge topic, to the partition that owns each scope
(``partial_snapshots.py``). Here the owner keeps, per pane, the newest version from each
source (``pane_values.merge_partial``), so ``all`` and ``channel:*`` are exact however
the counting partitions are spread over workers, and a snapshot sent twice, late or out
of order changes nothing. The publish tick reads what this stage stored.

The trap: the publish tick reads the store between batches, so a batch writes all of
its changes into the store before its first await (``write_through``), and only then
sends the changelog records.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from metrics.prometheus import Metrics

from .campaign_channels import CampaignChannels
from .pane_groups import MERGED, GroupCache, PaneGroups
from .progress import Progress

log = logging.getLogger("funnelpulse")

# (state, merge partition, source, scope, panes): the publisher's merge, which also
# keeps its index of the scopes it owns
MergeInto = Callable[[PaneGroups[Any], int, str, str, list[Any]], None]


class Merge:
    def __init__(
        self,
        merged: Any,
        merge_into: MergeInto,
        metrics: Metrics,
        progress: Progress,
        channels: CampaignChannels,
    ) -> None:
        self.merged, self.merge_into = merged, merge_into
        self.metrics, self.progress = metrics, progress
        self.channels = channels
        self.cache: GroupCache[Any] = GroupCache()  # decoded groups between batches

    def groups(self, partition: int) -> PaneGroups[Any]:
        return PaneGroups(self.merged, partition, MERGED, self.cache)

    async def handle(self, messages: Sequence[Any]) -> None:
        states: dict[int, PaneGroups[Any]] = {}
        offsets: dict[tuple[str, int], int] = {}
        tallies: dict[int, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for msg in messages:
            state = states.get(msg.partition)
            if state is None:
                state = states[msg.partition] = self.groups(msg.partition)
            try:
                body = orjson.loads(msg.value or b"{}")
                for scope, panes in body["scopes"].items():
                    self.merge_into(state, msg.partition, body["src"], scope, panes)
                for campaign, counted in (body.get("channels") or {}).items():
                    tallies[msg.partition][campaign].update(counted)
            except Exception:
                log.exception("merge failed on partition %s offset %s", msg.partition, msg.offset)
            offsets[(msg.topic, msg.partition)] = msg.offset
        for state in states.values():  # the tick reads the store: all of it there before awaiting
            state.write_through()
        for state in states.values():
            await state.flush()
            state.close()
        for partition, by_campaign in tallies.items():
            await self.channels.add(partition, by_campaign)
        self.metrics.processed.labels("merge").inc(len(messages))
        self.progress.done(offsets, len(messages))
