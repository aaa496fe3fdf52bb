"""The channel a campaign's KPI gauges carry: the one most of its events carried.

Why: the gauges of a scope ``campaign:<id>`` had ``channel=""``, so a campaign could not
be filtered by channel in Grafana. The scope has no channel (a campaign may run on
several), and the merge stage that publishes it never sees an event, only pane counts.
So the counting stages tally each batch's events per (campaign, channel)
(``ChannelTally``), the snapshot timer sends the tallies to the campaign's merge
partition, and its owner keeps the running totals in the ``channels`` table, whose
changelog moves them with the partition (``CampaignChannels``). The gauges take the
dominant channel: the most events counted, ties to the first name in alphabetical order.

Dominant, not most recent, on purpose: a campaign running on two channels at once would
change its label with every batch, and every change starts new Prometheus series. The
totals are approximate by design (a batch re-read after a crash is tallied again, a tally
not yet sent when a worker dies is lost): they choose a label, never a number. A
campaign whose panes have all expired loses its totals with them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .codec import partition_for
from .local_store import local_store
from .table_state import PartitionState, compact_json

Tallies = dict[str, dict[str, int]]  # campaign → channel → events


def dominant(totals: Mapping[str, int]) -> str:
    """The channel with the most events; ties go to the first name alphabetically."""
    return min(totals, key=lambda channel: (-totals[channel], channel)) if totals else ""


def campaign_partition(campaign: str, partitions: int) -> int:
    """The merge partition of ``campaign:<campaign>``: the owner of its gauges."""
    return partition_for(f"campaign:{campaign}", partitions)


class ChannelTally:
    """Events per (campaign, channel) counted since the last snapshot (counting side)."""

    def __init__(self) -> None:
        self._pending: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, counted: Mapping[tuple[str, str, str], int]) -> None:
        """A batch's ``(type, channel, campaign) → events``."""
        for (_type, channel, campaign), n in counted.items():
            self._pending[campaign][channel] += n

    def take(self, partitions: int) -> dict[int, Tallies]:
        """What was tallied, by merge partition, and a fresh start."""
        pending, self._pending = self._pending, defaultdict(Counter)
        out: defaultdict[int, Tallies] = defaultdict(dict)
        for campaign, channels in pending.items():
            out[campaign_partition(campaign, partitions)][campaign] = dict(channels)
        return dict(out)


class CampaignChannels:
    """The running totals of the campaigns this worker owns (merge side), and the label
    each one's gauges carry."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table, self.partitions = table, partitions
        self.label: dict[str, str] = {}  # campaign → dominant channel

    async def add(self, partition: int, tallies: Mapping[str, Mapping[str, int]]) -> None:
        """Adds a snapshot's tallies to the totals, one changelog record per campaign."""
        state: PartitionState[bytes] = PartitionState(self.table, partition)
        for campaign, delta in tallies.items():
            totals: Counter[str] = Counter(_decode(state.get(campaign)))
            totals.update(delta)
            state[campaign] = compact_json(totals)
            self.label[campaign] = dominant(totals)
        await state.flush()

    def load(self, partitions: Iterable[int]) -> None:
        """The labels of partitions just taken over, from their recovered totals."""
        store = local_store(self.table)
        for partition in partitions:
            for full, raw in store.items(partition):
                self.label[full.partition("|")[2]] = dominant(_decode(raw))

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: their gauges are not ours any more."""
        for campaign in [c for c in self.label if self._partition(c) in partitions]:
            del self.label[campaign]

    async def drop(self, campaign: str) -> None:
        """A campaign whose panes have all expired: its totals go too (tombstone)."""
        self.label.pop(campaign, None)
        state: PartitionState[bytes] = PartitionState(self.table, self._partition(campaign))
        if campaign in state:
            del state[campaign]
            await state.flush()

    def _partition(self, campaign: str) -> int:
        return campaign_partition(campaign, self.partitions)


def _decode(raw: bytes | None) -> dict[str, int]:
    decoded: dict[str, int] = orjson.loads(raw) if raw else {}
    return decoded
