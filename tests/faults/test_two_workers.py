"""Two workers in one consumer group (same app id, 4 partitions): the second joins
mid-stream, the first is killed later; the rebalances lose and double nothing, and the
survivor held warm standby copies of the first one's tables (table_standby_replicas=1).
The traffic is keyed as collectors key it, so most events take the route topic's hop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Figures, Stack
from tests.integration.recount import check_everything
from tests.integration.scenario import build
from tests.integration.worker import Worker

from .conftest import Scale
from .feed import Feed, counted_barrier
from .harness import PARTITIONS, exact_in_redis, health, start_worker
from .probes import kill9, wait_recovered

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(65)]
SEED = 20261127
MERGE_PARTITIONS = int(PARTITIONS)


async def wait_partitions(worker: Worker, want: Any, timeout: float) -> dict[str, int] | None:
    """Polls /healthz until ``want(partitions)`` holds; returns them (None on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = (await health(worker)).get("partitions")
        if isinstance(parts, dict) and want(parts):
            return parts
        await asyncio.sleep(0.5)
    return None


async def scopes_on_both(first: Worker, second: Worker, settle: float = 30) -> set[str]:
    """Scopes that both workers answer for from their own state on /kpis (``source``
    ``local``; the others they fetch from their owner): none once the rebalance settled —
    each scope has one owner; a standby copy must not be published."""
    deadline = time.monotonic() + settle
    both: set[str] = set()
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            listed = []
            for worker in (first, second):
                answer = await http.get(f"{worker.url}/kpis", params={"window": "24h"})
                scopes = answer.json()["scopes"].items()
                listed.append({scope for scope, doc in scopes if doc["source"] == "local"})
            both = listed[0] & listed[1]
            if not both and listed[0] and listed[1]:
                return both
            await asyncio.sleep(1)
    return both


async def test_second_worker_joins_then_first_is_killed(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis, scale: Scale, figures: Figures
) -> None:
    # keyed as collectors do (mixed campaigns, any key, re-batched retries): the route
    # topic's hop is exact across the join, the rebalance and the kill too
    sc = build(seed=SEED, now=time.time(), target_events=scale.events // 3, keying="mixed")
    feed = Feed(stack.bootstrap, namespace, sc, rate=100)
    first, started = start_worker(stack, namespace, tmp_path, name="w1")
    await wait_recovered(first, started)
    sending = asyncio.create_task(feed.run(counted_barrier(redis, namespace, sc, patience=900)))
    second: Worker | None = None
    try:
        while feed.sent < feed.total * 0.25:
            await asyncio.sleep(0.2)
        second, started = start_worker(stack, namespace, tmp_path, name="w2")
        joined = await wait_recovered(second, started)
        shared = await wait_partitions(second, lambda p: p["standby"] > 0 < p["active"], 180)
        assert shared is not None, f"w2 never got both actives and standbys: {await health(second)}"
        overlap = await scopes_on_both(first, second)
        while feed.sent < feed.total * 0.6:
            await asyncio.sleep(0.2)
        first_parts = (await health(first))["partitions"]
        second_parts = (await health(second))["partitions"]
        assert isinstance(first_parts, dict) and isinstance(second_parts, dict)
        kill9(first)
        killed = time.monotonic()
        everything = first_parts["active"] + second_parts["active"]
        # taken over = every changelog partition active *and* recovered: the scopes of
        # every merge partition published by w2 (the assignment alone comes first, and
        # /kpis lacks the recovering partitions' scopes until their tables are read)
        took = await wait_partitions(
            second,
            lambda p: p["active"] >= everything and len(p["publishing"]) == MERGE_PARTITIONS,
            300,
        )
        assert took is not None, f"w2 never took over: {await health(second)}"
        takeover = time.monotonic() - killed
        await sending
        await exact_in_redis(redis, namespace, sc, patience=600, workers=[second])
        await check_everything(redis, namespace, second, sc, patience=60)  # w2 owns all now
        settled = time.monotonic() - killed
    finally:
        sending.cancel()
        kill9(first) if first.proc and first.proc.poll() is None else None
        code = second.stop() if second is not None else 0
    assert second is not None and code == 0, second.tail() if second else ""
    assert not overlap, f"scopes published by both workers: {sorted(overlap)[:10]}"
    figures.append(
        f"two workers: {feed.events_sent:,} events; w2 joined mid-stream (ready "
        f"{joined.ready:.1f} s after start); before the kill w2 held {second_parts['active']} "
        f"active and {second_parts['standby']} standby changelog partitions, w1 "
        f"{first_parts['active']} and {first_parts['standby']}; after "
        f"kill -9 of w1, w2 owned every partition in {takeover:.1f} s and Redis was exact "
        f"{settled:.1f} s after the kill; recount exact (Redis, and /kpis and /metrics on w2)"
    )
