"""Topic and consumer-group chores on the benchmark's own names (never anybody else's)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import DeleteGroupsRequest

log = logging.getLogger("bench")


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def list_topics(bootstrap: str, keep: Callable[[str], bool]) -> list[str]:
    admin = await _admin(bootstrap)
    try:
        return sorted(t for t in await admin.list_topics() if keep(t))
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _cluster(bootstrap: str) -> AsyncIterator[tuple[AIOKafkaConsumer, Any]]:
    """A group-less consumer and the metadata of every topic on the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        yield consumer, await consumer._client.fetch_all_metadata()
    finally:
        await consumer.stop()


async def census(bootstrap: str) -> tuple[int, int]:
    """(topics, partitions) on the broker: other tenants' topics cost every client that
    reads all topics' metadata (an admin client, a producer before its first send) at each
    refresh, so a broker left full of old test topics is part of what a run measured."""
    async with _cluster(bootstrap) as (_, metadata):
        topics = metadata.topics()
        return len(topics), sum(len(metadata.partitions_for_topic(t) or ()) for t in topics)


async def end_offsets_sum(bootstrap: str, topics: list[str]) -> int:
    """Sum of the end offsets of every partition of ``topics`` (messages ever written)."""
    if not topics:
        return 0
    async with _cluster(bootstrap) as (consumer, metadata):
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in metadata.partitions_for_topic(topic) or ()
        ]
        offsets = await consumer.end_offsets(tps) if tps else {}
        return int(sum(offsets.values()))


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    if not names:
        return
    admin = await _admin(bootstrap)
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def delete_groups(bootstrap: str, keep: Callable[[str], bool]) -> list[str]:
    """Deletes the (empty) consumer groups whose id ``keep`` accepts; returns them."""
    admin = await _admin(bootstrap)
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if keep(g[0])]
        for group in groups:
            try:
                node = await admin.find_coordinator(group)
                await admin._send_request(DeleteGroupsRequest([group]), node)
            except Exception as exc:  # keep cleaning the others
                log.warning("could not delete consumer group %s: %s", group, exc)
        return groups
    finally:
        await admin.close()
