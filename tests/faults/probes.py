"""What the fault tests measure from outside the worker: group offsets, the replay window in
the changelogs, recovery after a restart, memory.

*In flight* at a kill = events the broker had acknowledged to the feed that the consumer
group had not committed: each was either never read or will be delivered again.
*Replay window* = messages whose counts were already in the partial-pane changelog (the
high-water offsets stored with the counts) but whose offsets were not committed: these are
re-delivered after the restart and must be skipped, which is what makes counts exact.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from streams.events import TOPIC_SUFFIX
from streams.intake import FUNNEL_SOURCE, ROUTE_SOURCE, TOPIC_INDEX
from streams.pane_groups import PARTIAL, decode_group, group_key_of, split_group_key
from streams.topics import changelog_topic
from tests.integration.worker import Worker

from .feed import Landed

TP = tuple[str, int]


async def committed_offsets(bootstrap: str, group: str) -> dict[TP, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): m.offset for tp, m in offsets.items() if m.offset >= 0}


def in_flight(landed: Iterable[Landed], committed: dict[TP, int]) -> tuple[int, int]:
    """(messages, events) acknowledged by the broker and not committed by the group."""
    messages = events = 0
    for m in landed:
        if m.offset >= committed.get((m.topic, m.partition), 0):
            messages += 1
            events += m.events
    return messages, events


class ChangelogMarks:
    """Follows the partial-pane changelogs and keeps the highest source offset per partition
    that any stored pane says it contains."""

    def __init__(self, bootstrap: str, namespace: str) -> None:
        self.bootstrap = bootstrap
        self.topics = [changelog_topic(namespace, t) for t in ("partials", "funnel-partials")]
        source = {i: f"{namespace}.{TOPIC_SUFFIX[kind]}" for kind, i in TOPIC_INDEX.items()}
        source[FUNNEL_SOURCE] = f"{namespace}-funnel"
        source[ROUTE_SOURCE] = f"{namespace}-route"
        self.source = {str(i): name for i, name in source.items()}
        self.marks: dict[TP, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def refresh(self) -> dict[TP, int]:
        consumer = await self._open()
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    group = group_key_of(orjson.loads(record.key))  # None: the sent mark
                    if record.value is not None and group is not None:
                        _scope, size, block = split_group_key(group)
                        for pane in decode_group(PARTIAL, record.value, size, block).values():
                            self._note(tp.partition, pane[1])
        return dict(self.marks)

    def replay_window(self, committed: dict[TP, int]) -> int:
        return sum(max(0, high + 1 - committed.get(tp, 0)) for tp, high in self.marks.items())

    def _note(self, partition: int, marks: dict[str, int]) -> None:
        for index, offset in marks.items():
            tp = (self.source[index], partition)
            self.marks[tp] = max(self.marks.get(tp, -1), offset)

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            tps = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def metric_values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    values: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                values[tuple(sorted(s.labels.items()))] += s.value
    return values


def processed(text: str, stage: str = "intake") -> float:
    values = metric_values(text, "funnelpulse_messages_processed_total")
    return values.get((("stage", stage),), 0.0)


@dataclass(frozen=True)
class Recovery:
    ready: float  # start -> /healthz answers ok (or degraded), not recovering
    progress: float  # start -> first input message processed, or nothing left to process


async def wait_recovered(
    worker: Worker, started: float, timeout: float = 240, statuses: tuple[str, ...] = ("ok",)
) -> Recovery:
    """Polls the restarted worker until it is ready and consuming again."""
    deadline = time.monotonic() + timeout
    ready: float | None = None
    last = ""
    async with httpx.AsyncClient(base_url=worker.url, timeout=3) as http:
        while time.monotonic() < deadline:
            assert worker.proc is not None
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited {worker.proc.returncode}:\n{worker.tail()}")
            try:
                health = (await http.get("/healthz")).json()
                last = str(health)
                if ready is None and health["status"] in statuses:
                    ready = time.monotonic() - started
                if ready is not None:
                    text = (await http.get("/metrics")).text
                    published = health["seconds_since_publish"] is not None
                    idle = health["consumer_lag"] == 0 and published
                    if processed(text) > 0 or idle:
                        return Recovery(ready, time.monotonic() - started)
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"worker not recovered after {timeout}s (last /healthz {last}):\n"
                       f"{worker.tail()}")  # fmt: skip


def kill9(worker: Worker) -> None:
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(30)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return f"median {median:.1f} / max {ordered[-1]:.1f}"
