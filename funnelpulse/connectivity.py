"""Is Kafka really usable, is Redis really answering?

A listening port proves nothing about a broker that is still electing its controller,
so the Kafka check does a full produce/consume round trip through a health topic.
Used by ``make up`` (with ``--wait``) and by ``funnelpulse check``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.asyncio import Redis

HEALTH_TOPIC = "__funnelpulse_health"


async def _ensure_health_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        if HEALTH_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def kafka_round_trip(bootstrap: str) -> float:
    """Produce one record and read it back; returns the round trip in seconds."""
    started = time.monotonic()
    await _ensure_health_topic(bootstrap)
    token = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await producer.start()
    try:
        sent = await producer.send_and_wait(HEALTH_TOPIC, token)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(HEALTH_TOPIC, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    if record.value != token:
        raise RuntimeError("Kafka health round trip returned a different record")
    return time.monotonic() - started


async def redis_ping(url: str) -> float:
    """PING with short timeouts; returns the round trip in seconds."""
    started = time.monotonic()
    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        if not await client.ping():
            raise RuntimeError("Redis PING did not answer PONG")
    finally:
        await client.aclose()
    return time.monotonic() - started


async def wait_until(check: str, target: str, patience: float) -> float:
    """Retry one check until it passes or ``timeout`` seconds are gone."""
    probe = kafka_round_trip if check == "kafka" else redis_ping
    deadline = time.monotonic() + patience
    while True:
        try:
            return await asyncio.wait_for(probe(target), timeout=max(5.0, patience))
        except Exception as exc:  # any failure means "not yet"; the last one is reported
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{check} at {target} is not healthy: {exc!r}") from exc
            await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description="Wait until Kafka / Redis are really usable.")
    parser.add_argument("--kafka", help="bootstrap servers to check with a round trip")
    parser.add_argument("--redis", help="Redis URL to PING")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying")
    args = parser.parse_args(argv)
    checks = [("kafka", args.kafka), ("redis", args.redis)]
    for check, target in checks:
        if not target:
            continue
        try:
            took = asyncio.run(wait_until(check, target, args.wait))
        except RuntimeError as exc:
            print(f"{check}: FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"{check}: ok ({target}, {took * 1000:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
