"""The other outputs of SPEC §3: the HTTP collector, pub/sub and stream updates, the
compacted kpis topic, and publishing that survives Redis going away."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from .conftest import Stack
from .processes import free_port, redis_server
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(25)]


async def _hash_value(
    redis: Redis, key: str, field: str, want: float, patience: float = 60
) -> None:
    deadline = time.monotonic() + patience
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = await redis.hget(key, field)
        except Exception:  # Redis may be restarting
            seen = None
        if seen is not None and float(seen) == want:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{key}.{field} = {seen!r}, want {want}")


def _click(i: int, campaign: str = "spring-sale") -> dict[str, object]:
    return {"event_id": f"c{i}", "ts": time.time() - 5, "campaign_id": campaign, "channel": "email"}


async def test_collector_pubsub_stream_and_kpis_topic(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    worker = Worker(stack, namespace, tmp_path).start_ready()
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{namespace}:kpi-updates")
    try:
        with httpx.Client(base_url=worker.url, timeout=10) as http:
            bad = {"event_id": "x", "ts": "not a time", "campaign_id": "spring-sale"}
            batch = [_click(1), _click(2), bad, _click(3)]
            answer = http.post("/events/click", content=orjson.dumps(batch))
            assert answer.status_code == 400
            assert answer.json()["accepted"] == 3
            assert answer.json()["rejected"] == [
                {"index": 2, "reason": "invalid_ts", "detail": "ts 'not a time' is not RFC 3339"}
            ]
            assert http.post("/events/click", content=orjson.dumps(_click(4))).status_code == 202
            assert http.post("/events/teleport", content=b"{}").status_code == 404
        key = f"{namespace}:kpi:5m:campaign:spring-sale"
        await _hash_value(redis, key, "clicks", 4)

        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message is not None, "no kpi-updates message"
        update = orjson.loads(message["data"])
        assert any(s["scope"] == "campaign:spring-sale" for s in update["snapshots"])
        assert await redis.xlen(f"{namespace}:kpi-stream") >= 1

        consumer = AIOKafkaConsumer(
            f"{namespace}.kpis", bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            keys: set[bytes] = set()
            deadline = time.monotonic() + 20
            while b"5m:campaign:spring-sale" not in keys and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    keys |= {r.key for r in records if r.key}
        finally:
            await consumer.stop()
        assert b"5m:campaign:spring-sale" in keys
    finally:
        await pubsub.aclose()
        assert worker.stop() == 0, worker.tail()


async def test_consumption_goes_on_while_redis_is_down(
    stack: Stack, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    server = redis_server(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    redis = Redis.from_url(url, socket_timeout=2)
    await asyncio.sleep(0.5)
    worker = Worker(stack, namespace, tmp_path, REDIS_URL=url).start_ready()
    http = httpx.Client(base_url=worker.url, timeout=10)
    try:
        http.post("/events/click", content=orjson.dumps([_click(i) for i in range(5)]))
        key = f"{namespace}:kpi:5m:all"
        await _hash_value(redis, key, "clicks", 5)

        server.terminate()
        server.wait(10)
        http.post("/events/click", content=orjson.dumps([_click(i) for i in range(5, 12)]))
        deadline = time.monotonic() + 30
        while http.get("/healthz").json()["status"] != "degraded" and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        health = http.get("/healthz").json()
        assert health["status"] == "degraded" and health["redis"] == "down"
        # degraded shows at the first failed publish, which may come before all seven
        # clicks are counted (they reach the merge stage from several partitions)
        clicks = None
        deadline = time.monotonic() + 30
        while clicks != 12 and time.monotonic() < deadline:
            clicks = http.get("/kpis", params={"window": "5m", "scope": "all"}).json()["clicks"]
            if clicks != 12:
                await asyncio.sleep(0.3)
        assert clicks == 12  # counted while Redis was away
        assert http.get("/healthz").json()["redis"] == "down"

        server = redis_server(port, tmp_path)  # empty: everything must be republished
        await _hash_value(redis, key, "clicks", 12)
        assert http.get("/healthz").json()["status"] == "ok"
        assert await redis.exists(f"{namespace}:kpi:1h:campaign:spring-sale")
    finally:
        http.close()
        await redis.aclose()
        assert worker.stop() == 0, worker.tail()
        server.terminate()
        server.wait(10)
    log = worker.log_path.read_text(errors="replace")
    # Redis away is one warning line per kind of failure, and no Python warning (redis-py
    # 8 warned on every connection when the asyncio client got the sync Retry)
    assert not re.search(r"\w+Warning: ", log), log
    assert log.count("Redis unavailable (ConnectionError") == 1, log
