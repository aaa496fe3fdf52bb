"""What the agents have processed, and how far behind the log ends that leaves them.

Faust's read offset moves when a message enters a stream buffer, not when an agent is
done with it, so the stages report what they processed (``done``), and the lag is
measured against that. ``measure_lag`` is called once per publish tick; it is also the
tick's moment to let the offset guard look for partitions stuck behind their log end
(``exactly_once.order``), which is why it takes the guard. Its readings feed three
decisions: ``behind`` (batches linger longer under a backlog, ``exactly_once.batches``),
``settled`` (the CPL alert is evaluated only when what waited a tick ago has arrived,
``settled.py``) and ``/healthz`` (input waiting while nothing is processed is a stall).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .exactly_once.order import OffsetGuard
from .settled import settled

log = logging.getLogger("funnelpulse")

LAG_SLACK = 50  # messages in flight that never count as a backlog


class Progress:
    def __init__(
        self,
        consumer: Callable[[], Any],
        guard: OffsetGuard,
        *,
        watched: Collection[str],
        inputs: Collection[str],
        state_whole: Callable[[], bool],
        kafka_options: Mapping[str, Any],
        backlog: int,
    ) -> None:
        """``consumer``: Faust's consumer, once it exists; ``backlog``: messages waiting
        that make the worker ``behind`` (a full batch)."""
        self._consumer, self.guard = consumer, guard
        self.watched, self.inputs = set(watched), list(inputs)
        self.state_whole = state_whole
        self.kafka_options, self.backlog = dict(kafka_options), backlog
        self.processed: dict[tuple[str, int], int] = {}
        self.messages_done = 0
        self.last_progress = time.monotonic()
        self.streams: list[Any] = []  # the agents' streams, for their buffers
        self.behind = False  # more than a batch waits in Kafka (at the last reading)
        self.settled = False  # what waited at the previous reading is processed
        self._previous_ends: dict[Any, int] = {}
        self._offsets_client: AIOKafkaConsumer | None = None
        self._opening = asyncio.Lock()

    def done(self, offsets: Mapping[tuple[str, int], int], messages: int) -> None:
        self.processed.update(offsets)
        self.messages_done += messages
        self.last_progress = time.monotonic()

    async def measure_lag(self) -> dict[str, int]:
        """Messages not yet *processed*, per topic, over this worker's partitions; sets
        ``behind`` and ``settled`` and lets the guard rewind stuck partitions."""
        consumer = self._consumer()
        committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
        lag: dict[str, int] = dict.fromkeys(self.inputs, 0)
        tps = [tp for tp in consumer.assignment() if tp.topic in self.watched]
        try:
            highs = await self._end_offsets(tps) if tps else {}
        except Exception as exc:  # broker unreachable: unknown, which is not "caught up"
            log.debug("end offsets unavailable: %r", exc)
            return {topic: -1 for topic in lag}
        if not self.state_whole():
            self.guard.hold()
        else:
            ends = {(tp.topic, tp.partition): h for tp, h in highs.items()}
            await self.guard.rewind_stuck(ends, self.buffered_partitions)
        positions = {}
        for tp, high in highs.items():
            key = (tp.topic, tp.partition)
            done = self.processed.get(key)
            if done is not None:
                position = done + 1
            else:  # nothing processed yet: where reading starts (a partition Faust never
                # delivered once looked caught up here: SIGTERM test, spend[2])
                start = committed.get(tp)
                position = start if start is not None else self.guard.next.get(key, high)
            positions[tp] = position
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, (high or 0) - position)
        self.settled = settled(self._previous_ends, positions)
        self.behind = sum(lag.values()) > self.backlog
        self._previous_ends = {tp: high or 0 for tp, high in highs.items()}
        return lag

    def caught_up(self, lag: Mapping[str, int], done_last_tick: int) -> bool:
        """Not reading a backlog: what waits is less than one tick's worth of work, and
        what waited at the previous tick has been processed (``streams/settled.py``).

        Live traffic always has a few messages in flight, so "zero lag" would almost never
        hold; a backlog (a burst, a restart) is what makes topics land far apart.
        """
        if any(v < 0 for v in lag.values()):
            return False  # end offsets unknown
        return self.settled and sum(lag.values()) <= max(LAG_SLACK, done_last_tick // 4)

    def buffered_partitions(self) -> set[tuple[str, int]]:
        """Partitions with messages waiting in the agents' stream buffers (Faust's queues
        between its fetcher and each agent), read in place: a backlog, not a hole."""
        waiting: set[tuple[str, int]] = set()
        for stream in self.streams:
            queue = getattr(stream.channel, "queue", None)
            for event in list(getattr(queue, "_queue", ())):
                message = getattr(event, "message", None)
                if message is not None:
                    waiting.add((message.topic, message.partition))
        return waiting

    async def _client(self) -> AIOKafkaConsumer:
        async with self._opening:  # the start-up task and the first tick may meet here
            if self._offsets_client is None:
                client = AIOKafkaConsumer(**self.kafka_options, request_timeout_ms=5000)
                await client.start()
                self._offsets_client = client
        return self._offsets_client

    async def connect(self) -> None:
        """Opens the offsets client and has it learn the watched topics (an end-offsets
        request for partition 0 of each), at the worker's start. Why: left to the first
        publish tick, that request waited for a metadata refresh per topic new to the
        client — 1.01 s of every restarted worker's first tick (the tick's own log), and a
        restart's first new counts waited behind it."""
        try:
            client = await self._client()
            await client.end_offsets([TopicPartition(topic, 0) for topic in sorted(self.watched)])
        except Exception as exc:  # the first tick tries again, and says so in /healthz
            log.info("offsets client not ready at start: %r", exc)

    async def _end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        """End offsets from a group-less client in this loop: Faust's own call goes
        through its consumer thread and waits behind the fetch long-poll (~1.5 s)."""
        client = await self._client()
        ends = await client.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        by_key = {(tp.topic, tp.partition): tp for tp in tps}
        return {by_key[(tp.topic, tp.partition)]: end for tp, end in ends.items()}
