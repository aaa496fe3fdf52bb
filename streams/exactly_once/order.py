"""Every partition's messages reach the handlers once each, in offset order.

Why: faust-streaming 0.15.3 loses messages around rebalances (measured by the kill -9
fault test). At the end of table recovery it resumes the stream partitions and seeks
them to the committed offsets *before* it resumes flow control, and resuming flow
control clears the stream queues: messages fetched in that window are thrown away while
the consumer's read position has passed them, so they are not fetched again. Its commit
then steps over such a hole when it is one message long (``Consumer._new_offset`` tests
``min(acked) - committed > 1``): the message is lost for good. A longer hole stalls the
commit, and after the next restart the missing messages arrive *after* later offsets,
which the replay marks of the partial panes then take for replays. Around the same seek
messages also arrive twice.

So the agents read their messages through this guard. It keeps the next expected offset
of every partition, starting at the group's committed offset: an earlier offset was
handled by this process already and is dropped; a jump ahead is a hole, whose records
the guard reads itself with a private client and hands over first (a hole without
records — transaction markers, deleted records — is simply passed). Once the batch is
done, Faust is told that the hole's offsets may be committed. A hole at the end of a
partition shows no later message: a partition behind its log end that delivers nothing
for a while is sought back to its next expected offset (``rewind_stuck``, every tick) —
unless messages of it are waiting in Faust's stream buffers. Under a backlog a buffer
holds thousands of messages in arrival order, so a partition can wait there for tens of
seconds (``make bench``, two workers on two cores): that is a queue, not a hole, and
seeking it only threw the fetched data away to read it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP as FaustTP

log = logging.getLogger("funnelpulse.sequencer")

TP = tuple[str, int]
Hole = tuple[TP, int, int]  # partition, first missing offset, first offset after the hole
RETRY_SECONDS = (0.5, 1, 2, 5, 10)
CALL_TIMEOUT = 30.0  # a call to Kafka that hangs is given up and tried again
STUCK_AFTER = 10.0  # a partition behind its log end that delivered nothing for this long


@dataclass(frozen=True)
class Fetched:
    """A record the guard read itself: the fields the handlers use of a Faust message."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


class RecordSource(Protocol):
    async def starts(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The offset each partition's reading starts at (the group's committed offset)."""
        ...

    async def fetch(self, tp: TP, start: int, end: int) -> list[Fetched]:
        """The records of ``tp`` in ``[start, end)``."""
        ...


class OffsetGuard:
    def __init__(self, source: RecordSource, consumer: Any = None) -> None:
        self.source = source
        self.consumer = consumer  # Faust's consumer, told about filled holes
        self.next: dict[TP, int] = {}
        self.last_seen: dict[TP, float] = {}  # monotonic time of the last hand-over
        self.rewinds = 0
        self.dropped = 0  # messages delivered again, not handed over
        self.filled = 0  # records read to fill holes
        self.holes = 0
        self.queued = 0  # silent partitions found waiting in Faust's buffers, not stuck
        self.revocations = 0  # revocations seen (``forget``): the gate re-orders across one

    def positions(self, tps: Iterable[TP]) -> dict[TP, int | None]:
        """The next expected offset of each partition (None: not started yet)."""
        return {tp: self.next.get(tp) for tp in tps}

    def restore(self, positions: Mapping[TP, int | None]) -> None:
        """Puts back what an ordering pass moved, for partitions not forgotten since (a
        forgotten one starts again from its committed offset)."""
        for tp, position in positions.items():
            if tp not in self.next:
                continue
            if position is None:
                del self.next[tp]
            else:
                self.next[tp] = position

    async def order(self, messages: Sequence[Any]) -> tuple[list[Any], list[Hole]]:
        unknown = {(m.topic, m.partition) for m in messages} - self.next.keys()
        if unknown:
            starts = await self.source.starts(unknown)
            log.info("reading starts at %s", starts)
            self._start(starts)
        ordered: list[Any] = []
        holes: list[Hole] = []
        for m in messages:
            tp = (m.topic, m.partition)
            expected = self.next.get(tp, m.offset)
            if m.offset < expected:
                self.dropped += 1
                continue
            if m.offset > expected:
                records = await self.source.fetch(tp, expected, m.offset)
                log.warning(
                    "%s[%s]: offsets %s-%s were not delivered; read %s of them directly",
                    m.topic, m.partition, expected, m.offset - 1, len(records),
                )  # fmt: skip
                ordered.extend(records)
                holes.append((tp, expected, m.offset))
                self.filled += len(records)
                self.holes += 1
            ordered.append(m)
            self.next[tp] = m.offset + 1
            self.last_seen[tp] = time.monotonic()
        return ordered, holes

    def _start(self, starts: Mapping[TP, int]) -> None:
        """Start offsets for partitions still unknown *now*: while the committed offsets
        were asked for, another caller (an agent's batch, the stuck check of a tick) may
        have started the partition and handed messages over. Overwriting its next offset
        with the committed one made the next message look like a hole over what was
        handed over already, read again and handed over twice (``make bench``: Prometheus
        counters +2,400 clicks, the tables exact thanks to the pane marks)."""
        for tp, start in starts.items():
            self.next.setdefault(tp, start)

    async def release(self, holes: list[Hole]) -> None:
        """Lets Faust commit past filled holes (it never saw those offsets acked)."""
        add_gap = getattr(self.consumer, "_add_gap", None)
        if add_gap is None:
            return  # without it the commit waits at the hole: replayed, never lost
        for (topic, partition), start, end in holes:
            await add_gap(FaustTP(topic, partition), start, end - 1)

    async def rewind_stuck(
        self, ends: Mapping[TP, int], buffered: Callable[[], AbstractSet[TP]] = frozenset
    ) -> list[TP]:
        """Seeks Faust's consumer back to the next expected offset of every partition that
        is behind its log end (``ends``), delivered nothing for ``STUCK_AFTER`` and has no
        message waiting in Faust's stream buffers (``buffered``, asked only when there is
        such a partition): the messages Faust dropped were its last ones, so no later
        message reveals the hole. A false alarm only re-reads what the guard then drops
        as already handed over."""
        now = time.monotonic()
        unknown = [tp for tp in ends if tp not in self.next]
        if unknown:
            self._start(await self.source.starts(unknown))
        stuck = []
        waiting: AbstractSet[TP] | None = None
        for tp, end in ends.items():
            expected = self.next.get(tp)
            if expected is None or expected >= end:
                continue
            if now - self.last_seen.setdefault(tp, now) < STUCK_AFTER:
                continue
            waiting = buffered() if waiting is None else waiting
            if tp in waiting:
                self.queued += 1
                continue
            stuck.append(tp)
            self.last_seen[tp] = now  # give the re-read time before the next alarm
            log.warning(
                "%s[%s]: nothing delivered from %s to %s; reading again (%s)",
                *tp, expected, end, fetch_state(self.consumer, tp),
            )  # fmt: skip
            if self.consumer is not None:
                # in the consumer's own thread: Faust's plain ``seek`` changes aiokafka's
                # fetcher from this one, and a fetch under way then crashed the worker
                # (KeyError in ``fetched_records``, seen in the two-worker fault test)
                await self.consumer.seek_wait({FaustTP(*tp): expected})
        self.rewinds += len(stuck)
        return stuck

    def hold(self) -> None:
        """A rebalance or a recovery is under way: partitions are paused and seeked by
        Faust, so silence says nothing; the stuck clocks start again afterwards."""
        self.last_seen.clear()

    def forget(self, tps: Iterable[Any]) -> None:
        """Revoked partitions start again from the committed offset when they come back."""
        self.revocations += 1
        revoked = {(tp.topic, tp.partition) for tp in tps}
        log.info("revoked at %s", {tp: self.next.get(tp) for tp in revoked & self.next.keys()})
        for tp in tps:
            self.next.pop((tp.topic, tp.partition), None)
            self.last_seen.pop((tp.topic, tp.partition), None)


def fetch_state(consumer: Any, tp: TP) -> str:
    """Why Faust may not be fetching ``tp``, from its and aiokafka's private state (for
    the log only: any of it may be missing in another version)."""
    ftp = FaustTP(*tp)
    facts = []
    for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
        tps = getattr(consumer, name, None)
        if tps is not None:
            facts.append(f"{name.strip('_').split('_')[0]}={ftp in tps}")
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    try:
        ktp = TopicPartition(*tp)
        state = client._subscription.subscription.assignment.state_value(ktp)  # type: ignore[union-attr]
        buffered = ktp in client._fetcher._records  # type: ignore[union-attr]
        position = state.position if state.has_valid_position else None
        facts.append(f"kafka: paused={state.paused} position={position} fetched={buffered}")
    except Exception as exc:  # no client, no assignment: say so
        facts.append(f"kafka: {type(exc).__name__}")
    return ", ".join(facts)


class KafkaRecords:
    """The guard's own view of Kafka: group offsets and direct reads, outside Faust."""

    def __init__(self, client_kwargs: dict[str, Any], group: str) -> None:
        self.client_kwargs = client_kwargs  # bootstrap servers, protocol, SASL, TLS
        self.group = group
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def starts(self, tps: Iterable[TP]) -> dict[TP, int]:
        wanted = [TopicPartition(t, p) for t, p in tps]
        async with self._lock:
            for pause in (*RETRY_SECONDS, None):
                try:
                    return await asyncio.wait_for(self._starts(wanted), CALL_TIMEOUT)
                except Exception as exc:
                    if pause is None:
                        log.warning("committed offsets unavailable (%r): order from now on", exc)
                        return {}
                    await asyncio.sleep(pause)
        return {}

    async def _starts(self, wanted: list[TopicPartition]) -> dict[TP, int]:
        admin, consumer = await self._clients()
        committed = await admin.list_consumer_group_offsets(self.group, partitions=wanted)
        starts = {
            (tp.topic, tp.partition): m.offset for tp, m in committed.items() if m.offset >= 0
        }
        fresh = [tp for tp in wanted if (tp.topic, tp.partition) not in starts]
        if fresh:  # nothing committed yet: reading starts at the log start
            for tp, offset in (await consumer.beginning_offsets(fresh)).items():
                starts[(tp.topic, tp.partition)] = offset
        return starts

    async def fetch(self, tp: TP, start: int, end: int) -> list[Fetched]:
        async with self._lock:
            attempt = 0
            while True:  # the records exist: giving up would lose them
                try:
                    return await asyncio.wait_for(self._fetch(tp, start, end), CALL_TIMEOUT)
                except Exception as exc:
                    pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    log.warning(
                        "reading %s[%s]@%s failed (%r); again in %ss", *tp, start, exc, pause
                    )
                    attempt += 1
                    await asyncio.sleep(pause)

    async def _fetch(self, tp: TP, start: int, end: int) -> list[Fetched]:
        _, consumer = await self._clients()
        part = TopicPartition(*tp)
        consumer.assign([part])
        consumer.seek(part, start)
        records: list[Fetched] = []
        while await consumer.position(part) < end:
            batch = await consumer.getmany(part, timeout_ms=2000, max_records=end - start)
            for r in batch.get(part, []):
                if r.offset < end:
                    records.append(Fetched(r.topic, r.partition, r.offset, r.value, r.key))
        return records

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.client_kwargs, request_timeout_ms=10_000)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self.client_kwargs,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a hole past the log start: read what is left
                request_timeout_ms=10_000,
            )
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
