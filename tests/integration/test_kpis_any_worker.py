"""/kpis and /alerts from any worker, against the real broker and Redis with two workers in
one group: every scope, from either worker, equals the recount and the other worker's
answer, and says where it came from (``local`` for the worker's own merge partitions,
``owner:<host:port>`` for the other's); with the owner killed, its scopes come from Redis
(``redis``) until the survivor takes them over."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streams.codec import partition_for

from .conftest import Stack
from .recount import check_http, produce_phases, wait_for_counts, wait_republished
from .scenario import LONGEST, Scenario, build
from .worker import Worker, explained

pytestmark = [pytest.mark.integration, pytest.mark.seconds(75)]
PARTITIONS = 3  # tests/integration/worker.py
TIMES = ("window_start", "window_end", "updated_at", "source")  # may differ a tick apart
BURNING = [f"burn-{i}" for i in range(6)]  # spend, no sign-ups: cpl_spike fires
ids = itertools.count()


def numbers(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in TIMES}


async def publishing(worker: Worker) -> set[int]:
    """The merge partitions the worker publishes (none while it does not answer: a loaded
    machine can hold its loop for seconds during a rebalance)."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            health = (await http.get(f"{worker.url}/healthz")).json()
    except httpx.TimeoutException:
        return set()
    return set(health["partitions"]["publishing"])


async def wait_spread(first: Worker, second: Worker, patience: float = 120) -> list[set[int]]:
    """Both workers publish a share of the merge partitions, together all of them."""
    deadline = time.monotonic() + patience
    shares: list[set[int]] = []
    while time.monotonic() < deadline:
        shares = [await publishing(first), await publishing(second)]
        if all(shares) and not shares[0] & shares[1] and len(shares[0] | shares[1]) == PARTITIONS:
            return shares
        await asyncio.sleep(0.5)
    raise AssertionError(f"the partitions were never spread over both workers: {shares}")


async def feed(
    stack: Stack, namespace: str, redis: Redis, sc: Scenario, workers: list[Worker]
) -> None:
    """The scenario in its three phases (a funnel stage after its sign-up), then counted."""
    await produce_phases(stack.bootstrap, namespace, redis, sc)
    await wait_for_counts(redis, f"{namespace}:kpi:{LONGEST}:all", sc.truth[("all", LONGEST)], 120)
    await wait_republished([w.url for w in workers])
    await asyncio.sleep(1.5)  # every scope's snapshot of that tick


def listing(worker: Worker, window: str) -> dict[str, Any]:
    answer = httpx.get(f"{worker.url}/kpis", params={"window": window}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def expected_source(scope: str, own: set[int], other: Worker) -> str:
    return "local" if partition_for(scope, PARTITIONS) in own else f"owner:127.0.0.1:{other.port}"


def check_sources(worker: Worker, own: set[int], other: Worker) -> dict[str, Any]:
    body = listing(worker, "24h")
    assert body["local_partitions"] == sorted(own) and body["unavailable_partitions"] == []
    for scope, doc in body["scopes"].items():
        assert doc["source"] == expected_source(scope, own, other), scope
        one = httpx.get(f"{worker.url}/kpis", params={"window": "24h", "scope": scope}, timeout=10)
        assert one.headers["X-Funnelpulse-Source"] == one.json()["source"] == doc["source"]
    scopes: dict[str, Any] = body["scopes"]
    return scopes


async def spend_without_leads(worker: Worker) -> None:
    now = time.time()
    base = {"ts": now - 60, "channel": "paid_social", "amount": 80, "currency": "USD"}
    docs = [{**base, "event_id": f"burn{next(ids)}", "campaign_id": c} for c in BURNING]
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{worker.url}/events/spend", json=docs)
    assert answer.status_code == 202, answer.text


async def alerts_on_both(first: Worker, second: Worker, patience: float = 60) -> list[Any]:
    """Both workers' /alerts, once both list every burning campaign and agree."""
    deadline = time.monotonic() + patience
    bodies: list[Any] = []
    while time.monotonic() < deadline:
        async with httpx.AsyncClient(timeout=10) as http:
            bodies = [(await http.get(f"{w.url}/alerts")).json() for w in (first, second)]
        active = [{(a["scope"], a["started_at"]) for a in b["active"]} for b in bodies]
        burning = {f"campaign:{c}" for c in BURNING}
        if active[0] == active[1] and burning <= {scope for scope, _ in active[0]}:
            return bodies
        await asyncio.sleep(0.5)
    raise AssertionError(f"the workers never agreed on the burning campaigns: {bodies}")


async def test_every_scope_from_either_worker(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    sc = build(seed=20261203, now=time.time(), target_events=3_000)
    first = Worker(stack, namespace, tmp_path, name="w1").start_ready()
    second = Worker(stack, namespace, tmp_path, name="w2").start_ready()
    try:
        with explained(first, second):
            shares = await wait_spread(first, second)
            await feed(stack, namespace, redis, sc, [first, second])
        assert check_http(first.url, sc) == check_http(second.url, sc) > 60
        mine = check_sources(first, shares[0], second)
        theirs = check_sources(second, shares[1], first)
        assert {s: numbers(d) for s, d in mine.items()} == {
            s: numbers(d) for s, d in theirs.items()
        }

        await spend_without_leads(first)
        bodies = await alerts_on_both(first, second)
        for body, own, other in ((bodies[0], shares[0], second), (bodies[1], shares[1], first)):
            assert body["unavailable_partitions"] == []
            for alert in body["active"]:
                assert alert["source"] == expected_source(alert["scope"], own, other)

        before = listing(second, "24h")["scopes"]
        assert second.proc is not None
        second.proc.kill()  # SIGKILL: its partitions stay put for SESSION_TIMEOUT
        second.proc.wait()
        after = listing(first, "24h")
        assert set(after["scopes"]) == set(before) and after["unavailable_partitions"] == []
        for scope, doc in after["scopes"].items():
            held = partition_for(scope, PARTITIONS) in shares[0]
            assert doc["source"] == ("local" if held else "redis"), (scope, doc["source"])
            assert numbers(doc) == numbers(before[scope]), scope
        assert after["sources"]["redis"] > 0
    finally:
        if second.proc is not None and second.proc.poll() is None:
            second.proc.kill()
        code = first.stop()
    assert code == 0, first.tail()
