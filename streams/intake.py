"""The intake stage: input messages in, events validated, routed and counted.

Per batch of messages from the seven input topics and the route topic:

1. every event of an input message is validated on its own (``events.decode_message``);
   a bad one is dead-lettered, its neighbours go on;
2. funnel events (sign-ups, lead stages, purchases) are forwarded to the funnel topic,
   to the partition of their lead;
3. impressions, clicks, opens and spend are counted here when they arrived on their
   campaign's home partition, and forwarded to it through the route topic otherwise
   (``streams/routing.py``); events read from the route topic are counted as they are;
4. the partition's panes, dedup records and marks are written once
   (``streams/partial_counts.py``), and only then are the offsets acked.

The trap: the forwards are awaited before the batch's state is written and its offsets
acked. A forward lost after the commit would be an event lost; one sent twice (a crash
between send and commit) is recognised at its destination as a copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .batch import Batch
from .codec import decode_events, encode_events, funnel_key, partition_for
from .dead_letters import DeadLetters
from .events import FUNNEL_TYPES, Event, EventType, Limits, Rejected, decode_message
from .exactly_once.delivery import require_delivery
from .partial_counts import PartialCounts
from .progress import Progress
from .routing import HomePartitions, RoutePlan
from .topics import TopicNames

log = logging.getLogger("funnelpulse")

TOPIC_INDEX = {kind: i for i, kind in enumerate(EventType)}  # a source's index in marks
FUNNEL_SOURCE = len(TOPIC_INDEX)  # the funnel topic's index in replay marks
ROUTE_SOURCE = FUNNEL_SOURCE + 1  # the route topic's
LATE_AFTER = 60.0  # seconds behind the clock that make an event late (a metric)
FORWARDED_PER_MESSAGE = 1000  # ~120 KB: one batch may forward 100,000 events


class Forwarder:
    """Events to the partitions of another topic that own them, in bounded chunks."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic

    async def send(self, by_partition: Mapping[int, list[Event]]) -> None:
        """Chunks far below Kafka's message size limit; delivery is awaited, as the input
        offsets are acked after this batch."""
        name = self.topic.get_topic_name()
        for partition, events in by_partition.items():
            for start in range(0, len(events), FORWARDED_PER_MESSAGE):
                chunk = events[start : start + FORWARDED_PER_MESSAGE]
                sent = await self.topic.send(value=encode_events(chunk), partition=partition)
                require_delivery(sent, f"a forward to {name}[{partition}]")


class Intake:
    def __init__(
        self,
        counts: PartialCounts,
        names: TopicNames,
        *,
        funnel: Forwarder,
        funnel_partitions: int,
        route: Forwarder,
        homes: HomePartitions,
        dead_letters: DeadLetters,
        limits: Callable[[float], Limits],
        unknown_channel: Callable[[str], None],  # an event's channel became "other"
        clock: Callable[[], float],
        progress: Progress,
    ) -> None:
        self.counts, self.names = counts, names
        self.funnel, self.funnel_partitions = funnel, funnel_partitions
        self.route, self.homes = route, homes
        self.route_plan = RoutePlan()  # set at each assignment, before a batch is read
        self.dead_letters = dead_letters
        self.limits, self.clock, self.progress = limits, clock, progress
        self.unknown_channel = unknown_channel

    def plan_routes(self, counts: Mapping[str, int | None], partitions: int) -> None:
        """Which input topics are co-partitioned with the tables (read at every
        assignment: a topic enlarged while running is routed whole from then on)."""
        plan = RoutePlan.from_counts(counts, partitions)
        if plan != self.route_plan:
            routed = sorted(set(counts) - plan.copartitioned)
            if routed:
                log.warning("input topics without %d partitions, routed whole: %s", partitions,
                            ", ".join(f"{t} ({counts[t]})" for t in routed))  # fmt: skip
            self.route_plan = plan

    async def handle(self, messages: Sequence[Any]) -> None:
        """One batch of input messages: validated one by one, counted per (partition,
        topic) group, written to the tables once."""
        now = self.clock()
        batch = Batch(now, lambda p: self.counts.open_partition(p, now), self.limits(now))
        for msg in messages:
            try:
                await self._take(batch, msg)
            except Exception as exc:  # a bug must not stop the worker nor lose the message
                log.exception("intake failed on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
                await self.dead_letters.internal(
                    msg.value, msg.topic, msg.partition, msg.offset, exc
                )
            batch.done(msg.topic, msg.partition, msg.offset)
        await self.funnel.send(batch.funnel)
        await self.route.send(batch.routed)
        for msg, error in self.counts.count(batch):
            await self.dead_letters.internal(msg.value, msg.topic, msg.partition, msg.offset, error)
        route = self.names.route
        routed = sum(n for (topic, _p), n in batch.per_topic.items() if topic == route)
        processed = {"intake": batch.messages - routed, "route": routed}
        await self.counts.finish(batch, processed)
        self.progress.done(batch.last_offsets, batch.messages)

    async def _take(self, batch: Batch, msg: Any) -> None:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        if topic == self.names.route:  # validated where they arrived, sent here to count
            routed = list(enumerate(decode_events(msg.value or b"[]")))
            batch.groups[(partition, ROUTE_SOURCE)].append((offset, routed, msg))
            return
        kind = self.names.type_of(topic)
        now = batch.now
        counted: list[tuple[int, Event]] = []
        newest, late = 0.0, 0
        for index, item in enumerate(decode_message(msg.value, kind, batch.limits)):
            if isinstance(item, Rejected):
                await self.dead_letters.send(item, topic, partition, offset)
                continue
            newest = max(newest, item.ts)
            late += item.ts < now - LATE_AFTER
            if item.unknown_channel is not None:  # counted as other: say which name it was
                self.unknown_channel(item.unknown_channel)
            if item.type in FUNNEL_TYPES:
                key = partition_for(funnel_key(item), self.funnel_partitions)
                batch.funnel[key].append(item)
            else:
                counted.append((index, item))
        if newest:
            batch.tally.saw(topic, newest, late)
        if counted:
            source = (TOPIC_INDEX[kind], offset)
            self._route(batch, topic, partition, source, msg, counted)

    def _route(
        self, batch: Batch, topic: str, partition: int, source: tuple[int, int], msg: Any,
        counted: list[tuple[int, Event]],
    ) -> None:  # fmt: skip
        """Counted here when home, forwarded to the home partition otherwise."""
        in_place: list[tuple[int, Event]] = []
        home_of, plan = self.homes.of, self.route_plan
        for index, event in counted:  # campaign_id is required on every counted type
            home = home_of(event.campaign_id or "")
            if plan.in_place(topic, partition, home):
                in_place.append((index, event))
            else:
                batch.routed[home].append(event)
        if in_place:
            index, offset = source  # the topic's index in the replay marks, the offset
            batch.groups[(partition, index)].append((offset, in_place, msg))
