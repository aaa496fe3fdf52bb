"""A batch of Kafka messages counted together: one table flush, one dedup record.

Faust's per-message machinery and the changelog send per dirty key are the costs that
matter (ARCHITECTURE.md); a message of one event paid both in full. Here the messages a
stream hands over together (``streams/take.py``, which acks them only after this batch
is done) are counted message by message — every replay mark still names its own source
offset — but each touched pane, lead and dedup record is written to the changelog once
per batch. Since the offsets are acked after ``send_firsts`` and ``send_panes`` have
handed every record to the producer, and Faust flushes the producer before it commits, a
committed offset never runs ahead of the state it produced.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .counting import Outcome, Stores, count_events, count_message
from .dedup import MessageDedup, persist
from .exactly_once.batches import BatchLimits, take_batches
from .pane_groups import PaneGroups, PaneKey
from .pane_values import apply_delta
from .table_state import PartitionState


@dataclass
class PartitionWork:
    """One partition's tables as this batch changes them."""

    partials: PaneGroups[Any]
    dedup_table: PartitionState[Any]
    dedup: MessageDedup
    stores: Stores
    touched: set[PaneKey] = field(default_factory=set)  # panes to snapshot once flushed
    flushers: list[PartitionState[Any]] = field(default_factory=list)
    first_source: str | None = None
    oldest: dict[int, float] = field(default_factory=dict)  # pane size → oldest start kept

    def apply(self, outcome: Outcome, topic: int, offset: int) -> None:
        """Adds the pane deltas of messages up to ``offset`` of ``topic``, each pane marked
        with the last message that touched it, unless the pane already holds that message.

        The mark must not depend on how the messages were grouped: after a crash they are
        replayed one by one, and the merge stage compares versions made of the marks. A
        pane marked with a group's last offset before the crash and with its own last
        message after it got a lower version for more counts, and the merge stage kept
        the older snapshot (the kill -9 test lost clicks this way).
        """
        if self.first_source is None and self.dedup.new:
            self.first_source = f"{topic}:{offset}"
        last_offsets, oldest = outcome.last_offsets, self.oldest
        for key, delta in outcome.deltas.items():
            if key[2] < oldest.get(key[1], key[2]):
                continue  # older than any window reads: eviction would drop it at once
            if apply_delta(self.partials, key, delta, topic, last_offsets[key]):
                self.touched.add(key)

    async def send_firsts(self, now: float) -> list[Any]:
        """Sends the records of what the batch saw first (its dedup record, and the leads
        and customers of the funnel); returns the sends' futures.

        They must be on the broker before any pane record of the batch is sent
        (``send_panes``): a pane record that lands without its batch's dedup record
        (a crash between the two) holds counts whose event ids nobody remembers. On the
        replay, messages of the partition's eight source topics come back in another
        order, and a copy of such an event in another topic's message, replayed first,
        was taken for its first sighting and counted again into panes whose mark for
        that topic was lower (the two-worker fault test, one click twice). With the
        firsts on the broker first, the copy is a duplicate and the original a replay."""
        sends: list[Any] = []
        for state in self.flushers:
            sends += await state.flush()
        if self.first_source is not None:
            sends += await persist(self.dedup_table, self.first_source, self.dedup, now)
        return sends

    async def send_panes(self) -> None:
        """Sends the batch's pane records (after ``send_firsts``' are delivered)."""
        await self.partials.flush()
        self.partials.close()


GroupItem = tuple[int, list[tuple[int, Any]], Any]  # offset, (index, event) pairs, message


def count_group(
    work: PartitionWork,
    items: list[GroupItem],
    topic: int,
    applied: int | None,
    panes: Sequence[int],
) -> list[Outcome]:
    """Counts one (partition, source topic) group of messages, in offset order.

    A group none of whose offsets can already be in a pane — its first offset is past
    ``applied``, everything this partition ever applied from that topic — is counted in
    one pass: equivalent to applying its messages one by one, without the per-message
    cost. After a restart the re-delivered messages are at or below that high water, and
    each is applied on its own against each pane's mark; so is every message while the
    high water is not known yet (``applied`` None).
    """
    if applied is not None and items[0][0] > applied:
        marked = [((topic, off, i), ev) for off, evs, _msg in items for i, ev in evs]
        outcome = count_events(marked, work.stores, panes)
        work.apply(outcome, topic, items[-1][0])
        return [outcome]
    outcomes = []
    for offset, events, _msg in items:
        outcome = count_message(events, (topic, offset), work.stores, panes)
        work.apply(outcome, topic, offset)
        outcomes.append(outcome)
    return outcomes


@dataclass
class Tally:
    """What the batch adds to the Prometheus counters, summed before touching them."""

    counted: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    money: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    impressions: Counter[tuple[str, str]] = field(default_factory=Counter)
    stages: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    late: int = 0
    newest: dict[str, float] = field(default_factory=dict)  # input topic → newest event time

    def add(self, outcome: Outcome) -> None:
        self.counted.update(outcome.counted)
        self.money.update(outcome.money)
        self.duplicates.update(outcome.duplicates)
        self.impressions.update(outcome.impressions)
        self.stages.update(outcome.stages)

    def saw(self, topic: str, newest: float, late: int) -> None:
        self.late += late
        if newest > self.newest.get(topic, 0.0):
            self.newest[topic] = newest


class Batch:
    """The per-partition work and the tally of one batch of messages of one stage."""

    def __init__(
        self,
        now: float,
        open_partition: Callable[[int], PartitionWork],
        limits: Any = None,
    ) -> None:
        self.now = now
        self.limits = limits  # what the clock allows, read once per batch
        self._open = open_partition
        self.parts: dict[int, PartitionWork] = {}
        self.tally = Tally()
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.per_topic: Counter[tuple[str, int]] = Counter()  # messages per (topic, partition)
        self.messages = 0
        self.funnel: defaultdict[int, list[Any]] = defaultdict(list)  # by funnel partition
        self.routed: defaultdict[int, list[Any]] = defaultdict(list)  # by home partition
        # (partition, source topic index) → its messages' countable events, in offset order
        self.groups: defaultdict[tuple[int, int], list[GroupItem]] = defaultdict(list)

    def partition(self, partition: int) -> PartitionWork:
        work = self.parts.get(partition)
        if work is None:
            work = self.parts[partition] = self._open(partition)
        return work

    def done(self, topic: str, partition: int, offset: int) -> None:
        self.last_offsets[(topic, partition)] = offset
        self.per_topic[(topic, partition)] += 1
        self.messages += 1


async def message_batches(stream: Any, limits: BatchLimits) -> AsyncGenerator[list[Any], None]:
    """The stream's messages a batch at a time (``exactly_once/batches.py``); Faust acks a
    batch's messages when the consumer asks for the next batch, never when it gives up."""
    async with aclosing(take_batches(stream, limits)) as batches:
        async for events in batches:
            yield [event.message for event in events]
