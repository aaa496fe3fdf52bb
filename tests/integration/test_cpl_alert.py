"""The in-stream cpl_spike alert against the real broker and Redis: a campaign whose spend
keeps flowing while its sign-ups collapse fires within two publish ticks of the numbers
showing it, and resolves after recovery; a steady campaign and one under the minimum
volume never alert."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from .conftest import Stack
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(23)]
TICK = 1.0  # the default publish interval
ids = itertools.count()


def spend(campaign: str, ts: float, amount: float) -> dict[str, Any]:
    return {"event_id": f"s{next(ids)}", "ts": ts, "campaign_id": campaign,
            "channel": "paid_search", "amount": amount, "currency": "USD"}  # fmt: skip


def signup(campaign: str, ts: float) -> dict[str, Any]:
    n = next(ids)
    return {"event_id": f"u{n}", "ts": ts, "campaign_id": campaign, "channel": "paid_search",
            "lead_id": f"lead-{n}"}  # fmt: skip


def history(
    campaign: str, now: float, spent: float, leads: int, old: bool
) -> list[tuple[str, dict[str, Any]]]:
    """``spent`` and ``leads`` spread over the last 20 h (old) or the last 10 min (short)."""
    span, base = (70_000, 7_200) if old else (540, 60)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(10):
        events.append(("spend", spend(campaign, now - base - span * i / 10, spent / 10)))
    for i in range(leads):
        events.append(("signups", signup(campaign, now - base - span * i / max(leads, 1))))
    return events


async def send(bootstrap: str, ns: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for suffix, doc in events:
            await producer.send(
                f"{ns}.{suffix}", orjson.dumps([doc]), key=doc["campaign_id"].encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def next_alert(pubsub: Any, patience: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return dict(orjson.loads(message["data"]))
    return None


async def first_snapshot(redis: Redis, ns: str, scope: str, min_spend: float) -> dict[str, Any]:
    """The first published 15m snapshot of ``scope`` whose spend reached ``min_spend``."""
    for _id, fields in await redis.xrange(f"{ns}:kpi-stream"):
        for snap in orjson.loads(fields[b"data"])["snapshots"]:
            if snap["window"] == "15m" and snap["scope"] == scope and snap["spend"] >= min_spend:
                return dict(snap)
    raise AssertionError(f"no 15m snapshot of {scope} with spend >= {min_spend}")


async def test_cpl_spike_fires_and_resolves(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    settings = {"FUNNELPULSE_CPL_MIN_SPEND": "100", "FUNNELPULSE_CPL_MIN_LEADS": "20",
                "FUNNELPULSE_PUBLISH_INTERVAL": "1s"}  # fmt: skip
    worker = Worker(stack, namespace, tmp_path, **settings).start_ready()
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{namespace}:alerts")
    now = time.time()
    try:
        # Phase 1: every campaign at its normal CPL; "small" is under the volume guard.
        normal = (
            history("spike", now, 2000, 100, old=True)
            + history("spike", now, 200, 10, old=False)
            + history("steady", now, 10000, 500, old=True)
            + history("steady", now, 1000, 50, old=False)
            + history("small", now, 40, 0, old=False)
        )
        await send(stack.bootstrap, namespace, normal)
        await asyncio.sleep(6 * TICK + 2)
        early = await next_alert(pubsub, 1)
        assert early is None, f"nothing should alert at normal CPL: {early}"

        # Phase 2: spike's spend keeps flowing, its sign-ups stop: 800/10 = 80 vs 2800/110.
        await send(stack.bootstrap, namespace,
                   [("spend", spend("spike", time.time() - 30, 600))])  # fmt: skip
        fired = await next_alert(pubsub, 20)
        assert fired is not None, "cpl_spike did not fire"
        assert (fired["state"], fired["scope"], fired["reason"]) == (
            "firing",
            "campaign:spike",
            "cpl_above_baseline",
        )
        assert fired["current_cpl"] == pytest.approx(80.0)
        assert fired["baseline_cpl"] == pytest.approx(2800 / 110)
        assert (fired["short_spend"], fired["short_leads"], fired["long_leads"]) == (800, 10, 110)
        shown = await first_snapshot(redis, namespace, "campaign:spike", 800)
        delay = fired["at"] - shown["updated_at"]
        assert delay <= 2 * TICK + 0.05, f"alert {delay:.2f} s after the numbers showed it"
        async with httpx.AsyncClient(base_url=worker.url) as http:
            active = (await http.get("/alerts")).json()["active"]
            assert [a["scope"] for a in active] == ["campaign:spike"]
            metrics = (await http.get("/metrics")).text
            assert (
                'marketing_alert_active{alert="cpl_spike",campaign="spike",scope="campaign"} 1.0'
                in metrics
            )

        # Phase 3: sign-ups come back: 800/70 = 11.4, well under 1.5 × 2800/170.
        await send(stack.bootstrap, namespace,
                   [("signups", signup("spike", time.time() - 20)) for _ in range(60)])  # fmt: skip
        resolved = await next_alert(pubsub, 20)
        assert resolved is not None and resolved["state"] == "resolved"
        assert resolved["scope"] == "campaign:spike" and resolved["started_at"] == fired["at"]
        assert await next_alert(pubsub, 4 * TICK + 1) is None, "steady and small must never alert"
        async with httpx.AsyncClient(base_url=worker.url) as http:
            assert (await http.get("/alerts")).json()["active"] == []

        consumer = AIOKafkaConsumer(f"{namespace}.alerts", bootstrap_servers=stack.bootstrap,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            states = []
            deadline = time.monotonic() + 15
            while len(states) < 2 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    states += [orjson.loads(r.value)["state"] for r in records]
        finally:
            await consumer.stop()
        assert states == ["firing", "resolved"]
    finally:
        await pubsub.aclose()
        assert worker.stop() == 0, worker.tail()
