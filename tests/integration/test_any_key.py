"""Exact whatever the producer's keys: copies of an event that land on other partitions —
re-batched retries, batches that mix campaigns, messages keyed by another campaign, by a
lead or by nothing — are counted once, at their campaign's home partition (funnel events
at their lead's). Checked against the real broker, with an independent recount."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from funnelpulse.settings import Settings
from streams.topics import ensure_topics

from .conftest import Stack
from .recount import check_everything, counter_total, produce_phases, wait_for_counts
from .scenario import build
from .worker import Worker, explained

pytestmark = [pytest.mark.integration, pytest.mark.seconds(60)]
PARTITIONS = 4


def settings(stack: Stack, namespace: str) -> Settings:
    return Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.",
        "FUNNELPULSE_APP_ID": namespace, "FUNNELPULSE_PARTITIONS": str(PARTITIONS),
    })  # fmt: skip


async def send_everywhere(
    producer: AIOKafkaProducer, topic: str, event: dict[str, Any], filler: list[dict[str, Any]]
) -> int:
    """The event once on every partition (inside batches keyed by other campaigns), once
    unkeyed, once keyed by a lead, once keyed by its own campaign; returns the copies."""
    copies = 0
    for partition in range(PARTITIONS):
        batch = [*filler[partition * 3 : partition * 3 + 3], event]
        key = f"other-{partition}".encode()
        await producer.send_and_wait(topic, orjson.dumps(batch), key=key, partition=partition)
        copies += 1
    for key in (None, b"lead-xyz", str(event.get("campaign_id", "")).encode()):
        await producer.send_and_wait(topic, orjson.dumps(event), key=key)
        copies += 1
    return copies


async def test_one_event_on_every_partition_counts_once(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    await ensure_topics(settings(stack, namespace))
    now = time.time() - 120
    base = {"ts": now, "campaign_id": "solo", "channel": "paid_search"}
    click = {**base, "event_id": "the-click"}
    spend = {**base, "event_id": "the-spend", "amount": "12.50", "currency": "USD"}
    signup = {**base, "event_id": "the-signup", "lead_id": "lead-solo"}
    # the funnel's events name no campaign: attributed to the sign-up's, wherever they land
    stage = {"event_id": "the-mql", "ts": now, "lead_id": "lead-solo", "stage": "mql"}
    purchase = {"event_id": "the-order", "ts": now, "lead_id": "lead-solo",
                "customer_id": "cust-solo", "amount": "99", "currency": "USD"}  # fmt: skip
    fillers = {
        kind: [{**doc, "event_id": f"fill-{kind}-{i}", "campaign_id": f"fill-{i}"}
               for i in range(3 * PARTITIONS)]
        for kind, doc in (("clicks", click), ("spend", spend))
    }  # fmt: skip
    worker = Worker(stack, namespace, tmp_path, FUNNELPULSE_PARTITIONS=str(PARTITIONS))
    worker.start_ready()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    copies = Counter[str]()
    try:
        ns = namespace
        copies["click"] = await send_everywhere(producer, f"{ns}.clicks", click, fillers["clicks"])
        copies["spend"] = await send_everywhere(producer, f"{ns}.spend", spend, fillers["spend"])
        copies["signup"] = await send_everywhere(producer, f"{ns}.signups", signup, [])
        with explained(worker):
            await wait_for_counts(redis, f"{ns}:kpi:1h:campaign:solo", {"signups": 1}, 60)
        copies["lead_stage"] = await send_everywhere(producer, f"{ns}.lead-stages", stage, [])
        copies["purchase"] = await send_everywhere(producer, f"{ns}.purchases", purchase, [])
    finally:
        await producer.stop()
    try:
        want = {"clicks": 1, "spend": 12_500_000, "signups": 1, "mql": 1, "purchases": 1,
                "new_customers": 1, "revenue": 99_000_000}  # fmt: skip
        with explained(worker):
            await wait_for_counts(redis, f"{namespace}:kpi:1h:campaign:solo", want, 90)
            fillers_total = 3 * PARTITIONS
            await wait_for_counts(
                redis, f"{namespace}:kpi:1h:all", {"clicks": 1 + fillers_total}, 30
            )
        duplicates = sum(copies.values()) - len(copies)
        assert counter_total(worker.url, "marketing_events_duplicate_total") == duplicates
    finally:
        assert worker.stop() == 0, worker.tail()


async def test_mixed_batches_with_rebatched_retries_equal_the_recount(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    sc = build(seed=20261206, now=time.time(), target_events=12_000, keying="mixed")
    worker = Worker(stack, namespace, tmp_path, FUNNELPULSE_PARTITIONS=str(PARTITIONS))
    worker.start_ready()
    try:
        await produce_phases(stack.bootstrap, namespace, redis, sc)
        await check_everything(redis, namespace, worker, sc)
        assert counter_total(worker.url, "marketing_events_duplicate_total") == sc.duplicates
        assert counter_total(worker.url, "marketing_events_rejected_total") == len(sc.bad_reasons)
    finally:
        assert worker.stop() == 0, worker.tail()


async def make_topic(stack: Stack, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_an_input_topic_of_another_size_is_routed_whole(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    """A clicks topic made by hand with 6 partitions, tables with 4: partition 5 has no
    table partition and partition 2 is not the tables' partition 2; every click is
    routed, copies on any partition still count once."""
    await make_topic(stack, f"{namespace}.clicks", 6)
    worker = Worker(stack, namespace, tmp_path, FUNNELPULSE_PARTITIONS=str(PARTITIONS))
    worker.start_ready()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        now = time.time() - 60
        clicks = [{"event_id": f"c{i}", "ts": now, "campaign_id": f"cmp-{i % 7}"}
                  for i in range(60)]  # fmt: skip
        for partition in range(6):  # every click on every partition, in batches of 10
            for start in range(0, len(clicks), 10):
                value = orjson.dumps(clicks[start : start + 10])
                await producer.send_and_wait(f"{namespace}.clicks", value, partition=partition)
    finally:
        await producer.stop()
    try:
        await wait_for_counts(redis, f"{namespace}:kpi:1h:all", {"clicks": 60}, 90)
        await wait_for_counts(redis, f"{namespace}:kpi:1h:campaign:cmp-3", {"clicks": 9}, 10)
        assert counter_total(worker.url, "marketing_events_duplicate_total") == 5 * 60
    finally:
        assert worker.stop() == 0, worker.tail()
    assert f"{namespace}.clicks (6)" in worker.log_path.read_text(), worker.tail()


async def test_an_internal_topic_of_another_size_stops_the_worker(
    stack: Stack, namespace: str, tmp_path: Path
) -> None:
    await make_topic(stack, f"{namespace}-route", PARTITIONS + 1)
    worker = Worker(stack, namespace, tmp_path, FUNNELPULSE_PARTITIONS=str(PARTITIONS)).start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=60) == 2
    log = worker.log_path.read_text()
    assert f"{namespace}-route has {PARTITIONS + 1} partitions, {PARTITIONS} expected" in log, log
    assert "Traceback" not in log, log
