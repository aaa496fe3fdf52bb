"""Is Kafka really usable, is Redis really answering?

A listening port proves nothing about a broker that is still electing its controller,
so ``make up`` (``python -m funnelpulse.connectivity --wait``) does a full produce/consume
round trip through a health topic on the local stack. The trap is doing the same on the
user's cluster: the round trip creates ``__funnelpulse_health``, so ``funnelpulse check``
only reads cluster metadata (brokers, topics) by default, and creates the topic only when
asked with ``--round-trip``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from redis.asyncio import Redis

from metrics.durations import parse_seconds

from .credentials import redact_url

HEALTH_TOPIC = "__funnelpulse_health"
HINTS = {
    "kafka": (
        (
            "SaslAuthenticationFailed",
            "check FUNNELPULSE_KAFKA_SASL_USERNAME, _PASSWORD, _MECHANISM",
        ),
        ("CERTIFICATE_VERIFY_FAILED", "check FUNNELPULSE_KAFKA_SSL_CA_FILE"),
        (
            "WRONG_VERSION_NUMBER",
            "TLS to a plain listener? check FUNNELPULSE_KAFKA_SECURITY_PROTOCOL",
        ),
    ),
    "redis": (
        ("AuthenticationError", "check the user and password (REDIS_URL, FUNNELPULSE_REDIS_*)"),
        ("CERTIFICATE_VERIFY_FAILED", "check FUNNELPULSE_REDIS_SSL_CA_FILE"),
    ),
}


class _Logged(logging.Handler):
    """aiokafka logs why a bootstrap failed (bad password, bad certificate) and raises
    only "Unable to bootstrap": keep what it logged, so the failure can say why."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def client_errors() -> Iterator[list[str]]:
    """The aiokafka errors logged inside the block (and not printed)."""
    logger, handler = logging.getLogger("aiokafka"), _Logged()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def explain(exc: BaseException, logged: Sequence[str] = (), system: str = "kafka") -> str:
    """One line: the exception, the client's own reason when it logged one, and a hint."""
    name, message = type(exc).__name__, " ".join(str(exc).split())[:300]
    text = f"{name}: {message.removeprefix(f'{name}: ')}"
    reasons = [m for m in logged if "connect call failed" not in m.lower()] or list(logged)
    if reasons:
        text += f" ({' '.join(reasons[-1].split())[:300]})"
    hint = _hint(text, system)
    return f"{text}; {hint}" if hint else text


def _hint(text: str, system: str) -> str | None:
    return next((h for mark, h in HINTS[system] if mark in text), None)


def kafka_failure(command: str, bootstrap: str, exc: BaseException, logged: Sequence[str]) -> str:
    """The one line a command prints when it cannot use Kafka: "is it running?" for a
    broker that does not answer, the reason and its hint for anything else."""
    explained = explain(exc, logged)
    silent = isinstance(exc, KafkaConnectionError | TimeoutError | OSError)
    if not silent or _hint(explained, "kafka"):  # it answered: a password, a certificate...
        return f"funnelpulse {command}: cannot use Kafka at {bootstrap}: {explained}"
    reason = " ".join((logged[-1] if logged else str(exc) or type(exc).__name__).split())
    return (
        f"funnelpulse {command}: cannot reach Kafka at {bootstrap} ({reason[:200]}): "
        "is it running? set KAFKA_BOOTSTRAP_SERVERS"
    )


def _kafka(bootstrap: str, client: Mapping[str, Any] | None) -> dict[str, Any]:
    """Client options: ``client`` holds credentials and TLS (security.kafka_client_kwargs)."""
    return {**(client or {}), "bootstrap_servers": bootstrap}


@dataclass(frozen=True)
class Cluster:
    """What one metadata read says about a Kafka cluster."""

    brokers: int
    topics: frozenset[str]


async def kafka_metadata(bootstrap: str, client: Mapping[str, Any] | None = None) -> Cluster:
    """How many brokers, which topics, from metadata requests only: creates nothing
    (no topic is named in the request, so auto.create.topics.enable cannot kick in)."""
    admin = AIOKafkaAdminClient(**_kafka(bootstrap, client), request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        topics = await admin.list_topics()
    finally:
        await admin.close()
    return Cluster(len(cluster.get("brokers", [])), frozenset(topics))


async def _ensure_health_topic(
    bootstrap: str, client: Mapping[str, Any] | None = None, replication: int = 1
) -> None:
    admin = AIOKafkaAdminClient(**_kafka(bootstrap, client), request_timeout_ms=5000)
    try:
        await admin.start()
        if HEALTH_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(HEALTH_TOPIC, 1, replication)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def kafka_round_trip(
    bootstrap: str, client: Mapping[str, Any] | None = None, replication: int = 1
) -> float:
    """Produce one record and read it back; returns the round trip in seconds. Creates
    ``HEALTH_TOPIC`` (one partition, ``replication`` replicas) when it is missing."""
    started = time.monotonic()
    await _ensure_health_topic(bootstrap, client, replication)
    token = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(**_kafka(bootstrap, client), request_timeout_ms=5000)
    await producer.start()
    try:
        sent = await producer.send_and_wait(HEALTH_TOPIC, token)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**_kafka(bootstrap, client), enable_auto_commit=False)
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


async def redis_ping(url: str, options: Mapping[str, Any] | None = None) -> float:
    """PING with short timeouts; returns the round trip in seconds. ``options``: credentials
    and TLS (security.redis_client_kwargs)."""
    started = time.monotonic()
    client = Redis.from_url(url, **(options or {}), socket_timeout=2, socket_connect_timeout=2)
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
                raise RuntimeError(
                    f"{check} at {redact_url(target)} is not healthy: {exc!r}"
                ) from exc
            await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description="Wait until Kafka / Redis are really usable.")
    parser.add_argument("--kafka", help="bootstrap servers to check with a round trip")
    parser.add_argument("--redis", help="Redis URL to PING")
    parser.add_argument("--wait", type=parse_seconds, default=0.0, help="how long to keep retrying")
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
        print(f"{check}: ok ({redact_url(target)}, {took * 1000:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
