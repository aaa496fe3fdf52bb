"""The end of a drain read the way an operator would: a consumer group's lag from the
admin API (committed offsets against end offsets), polled in a background thread.

Lag 0 means every partition the group reads (the inputs, and whatever internal topics
it consumes: funnelpulse's funnel and merge topics, Quix Streams' repartition topics)
has its committed offset at the end offset. Offsets move only when the system commits,
so the end it gives includes up to one commit interval; a system that never commits
(or is stopped by a time budget first) has no such end, and the caller falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger("bench")


def group_lag(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> int:
    """Messages not yet committed, over every partition in ``ends`` (uncommitted: all)."""
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


class LagWatch:
    """Polls one group's lag every ``interval`` s; ``zero_at`` is the first time it was 0."""

    def __init__(
        self, bootstrap: str, group: str, inputs: Iterable[str], interval: float = 0.2
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.inputs = list(inputs)
        self.interval = interval
        self.zero_at: float | None = None
        self.lag: int | None = None
        self.by_topic: dict[str, int] = {}  # lag per topic at the last poll
        self.polls = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lag-{group}", daemon=True)

    def __enter__(self) -> LagWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def wait_zero(self, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while self.zero_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.zero_at

    def _run(self) -> None:
        try:
            asyncio.run(self._poll())
        except Exception as exc:  # reported, and the caller falls back
            self.error = repr(exc)
            log.warning("lag watch for %s failed: %r", self.group, exc)

    async def _poll(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        ends_client = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await ends_client.start()
        try:
            metadata = await ends_client._client.fetch_all_metadata()
            inputs = []
            for topic in self.inputs:
                partitions = metadata.partitions_for_topic(topic) or set()
                inputs += [TopicPartition(topic, p) for p in sorted(partitions)]
            while not self._stop.is_set() and self.zero_at is None:
                started = time.time()
                raw = await admin.list_consumer_group_offsets(self.group)
                read_at = time.time()  # the commits seen were made before this moment
                committed = {tp: meta.offset for tp, meta in raw.items() if meta.offset >= 0}
                tps = sorted({*inputs, *committed}, key=lambda tp: (tp.topic, tp.partition))
                ends = await ends_client.end_offsets(tps)
                self.lag, self.polls = group_lag(committed, ends), self.polls + 1
                by_topic: dict[str, int] = {}
                for tp, end in ends.items():
                    by_topic[tp.topic] = by_topic.get(tp.topic, 0) + end - committed.get(tp, 0)
                self.by_topic = by_topic
                if self.lag == 0 and any(committed.get(tp, 0) for tp in inputs):
                    self.zero_at = read_at
                    break
                await asyncio.sleep(max(0.0, self.interval - (time.time() - started)))
        finally:
            with contextlib.suppress(Exception):
                await ends_client.stop()
            with contextlib.suppress(Exception):
                await admin.close()
