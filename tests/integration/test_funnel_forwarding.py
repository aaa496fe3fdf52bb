"""A backlog of sign-ups larger than one Kafka message can carry, forwarded to the funnel
stage in one batch: every one is counted (a batch once forwarded them as one message over
the broker's size limit, and the send failed without a word)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from funnelpulse.settings import Settings
from streams.topics import ensure_topics

from .conftest import Stack
from .recount import wait_for_counts
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(16)]
MESSAGES, PER_MESSAGE = 80, 500  # 40,000 sign-ups: ~2.7 MB once forwarded together


async def test_a_batch_forwarding_more_than_a_message_holds(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.",
            "FUNNELPULSE_APP_ID": namespace,
            "FUNNELPULSE_PARTITIONS": "1",
        }
    )
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=2**20)
    await producer.start()
    try:
        now = time.time() - 30
        for m in range(MESSAGES):  # preloaded: the worker takes them as one batch
            batch = [
                {"event_id": f"s{m}-{i}", "ts": now, "campaign_id": "big", "lead_id": f"l{m}-{i}"}
                for i in range(PER_MESSAGE)
            ]
            await producer.send_and_wait(f"{namespace}.signups", orjson.dumps(batch), key=b"big")
    finally:
        await producer.stop()
    # a long batch wait: the whole backlog is taken, and forwarded, as one batch
    worker = Worker(
        stack, namespace, tmp_path, FUNNELPULSE_PARTITIONS="1", FUNNELPULSE_BATCH_WAIT="3s"
    ).start_ready()
    try:
        want = {"signups": MESSAGES * PER_MESSAGE}
        await wait_for_counts(redis, f"{namespace}:kpi:1h:campaign:big", want, patience=180)
    finally:
        assert worker.stop() == 0, worker.tail()
