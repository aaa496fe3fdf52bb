"""The producer contract against the real broker and worker: the client's retried batch is
counted once, the collector reads campaign and channel from a URL, a topic named on its
own is used as it is, and the worker serves the committed schema and OpenAPI document."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from funnelpulse.client import DeliveryError, FunnelPulseProducer
from funnelpulse.settings import Settings

from .conftest import Stack
from .recount import counter_total, wait_for_counts
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(40)]
DOCS = Path(__file__).resolve().parents[2] / "docs"


class AckLost:
    """A real producer whose first acknowledgement is lost after the broker took the
    batch: the client must send the same batch again, the worker must count it once."""

    def __init__(self, bootstrap: str) -> None:
        self.kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.lost = 1

    async def start(self) -> None:
        await self.kafka.start()

    async def stop(self) -> None:
        await self.kafka.stop()

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        sent = await self.kafka.send_and_wait(topic, value, key=key)
        if self.lost:
            self.lost -= 1
            raise KafkaTimeoutError("acknowledgement lost (test)")
        return sent


def unknown_channels(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {s.labels["channel"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "marketing_unknown_channel_total"}  # fmt: skip


async def test_the_producer_contract(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "FUNNELPULSE_APP_ID": namespace,
           "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.", "FUNNELPULSE_PARTITIONS": "3",
           "FUNNELPULSE_TOPIC_CLICKS": f"clicks.{namespace}",
           # the committed schemas are those of the default settings, windows included
           "FUNNELPULSE_WINDOWS": ",".join(Settings().windows)}  # fmt: skip
    worker = Worker(stack, namespace, tmp_path, **env).start_ready()
    try:
        served_as_committed(worker.url)
        copies = await client_with_a_lost_acknowledgement(Settings.from_env(env))
        collector_with_urls(worker.url)
        key = f"{namespace}:kpi:1h"
        await wait_for_counts(redis, f"{key}:all", {"clicks": 30 + 3}, 90)
        await wait_for_counts(redis, f"{key}:campaign:cmp-0", {"clicks": 10}, 10)
        await wait_for_counts(redis, f"{key}:campaign:utm-spring", {"clicks": 2}, 10)
        await wait_for_counts(redis, f"{key}:channel:paid_search", {"clicks": 1}, 10)
        await wait_for_counts(redis, f"{key}:channel:paid_social", {"clicks": 1}, 10)
        await wait_for_counts(redis, f"{key}:channel:organic", {"clicks": 1}, 10)
        await wait_for_counts(redis, f"{key}:channel:other", {"clicks": 1}, 10)
        duplicates = counter_total(worker.url, "marketing_events_duplicate_total")
        assert duplicates == sum(copies.values()) - len(copies)
        assert unknown_channels(worker.url) == {"tiktok": copies["tiktok"]}
    finally:
        assert worker.stop() == 0, worker.tail()


def served_as_committed(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        for name in ("click", "lead_stage"):
            answer = http.get(f"/schema/{name}")
            assert answer.headers["content-type"].startswith("application/schema+json")
            assert answer.text == (DOCS / "schema" / f"{name}.json").read_text()
        assert http.get("/schema").text == (DOCS / "schema" / "events.json").read_text()
        assert http.get("/schema/teleport").status_code == 404
        assert http.get("/openapi.json").text == (DOCS / "openapi.json").read_text()


async def client_with_a_lost_acknowledgement(settings: Settings) -> Counter[str]:
    """30 clicks of 3 campaigns without ids; the first batch's acknowledgement is lost,
    so flush() raises and the next flush() sends it again; then the application sends
    every click again with a new producer (the same dicts: the same ids). Returns the
    copies sent per event id."""
    now = time.time() - 30
    clicks = [{"ts": now, "campaign_id": f"cmp-{i % 3}", "channel": "email"} for i in range(29)]
    clicks.append({"ts": now, "campaign_id": "cmp-2", "channel": "TikTok"})
    fp = FunnelPulseProducer(settings, sender=AckLost(settings.kafka_bootstrap_servers))
    await fp.start()
    try:
        ids = await fp.send_many("click", clicks)
        with pytest.raises(DeliveryError):
            await fp.flush()
        assert fp.pending == 30  # the landed batch is kept too: the client cannot know
        await fp.flush()
    finally:
        await fp.stop()
    async with FunnelPulseProducer(settings) as again:  # the default aiokafka producer
        assert await again.send_many("click", clicks) == ids
    # cmp-0's batch went out first, and twice; then every click once more
    copies = Counter({event_id: 3 if click["campaign_id"] == "cmp-0" else 2
                      for event_id, click in zip(ids, clicks, strict=True)})  # fmt: skip
    copies["tiktok"] = copies.pop(ids[-1])
    return copies


def collector_with_urls(url: str) -> None:
    """Clicks that name no campaign or channel, only where the visitor landed from."""
    now = time.time() - 30
    landing = "https://shop.example/spring"
    clicks = [
        {"event_id": "u1", "ts": now, "url": f"{landing}?utm_campaign=utm-spring&utm_medium=cpc"},
        {"event_id": "u2", "ts": now, "url": f"{landing}?utm_campaign=utm-spring&fbclid=x1"},
        {"event_id": "u3", "ts": now, "campaign_id": "seo-spring", "url": landing,
         "referrer": "https://www.google.com/search?q=spring"},
    ]  # fmt: skip
    answer = httpx.post(f"{url}/events/click", content=orjson.dumps(clicks), timeout=10)
    assert (answer.status_code, answer.json()) == (202, {"accepted": 3, "rejected": []})
    no_campaign = [{"event_id": "u4", "ts": now, "url": landing}]
    answer = httpx.post(f"{url}/events/click", content=orjson.dumps(no_campaign), timeout=10)
    assert answer.status_code == 400
    assert answer.json()["rejected"][0]["reason"] == "missing_field"
