"""Redis goes away for 30 s (reduced: 12 s) mid-stream: consumption goes on, /healthz says
degraded, memory stays flat, and once Redis is back — empty, as after a crash without persistence —
every KPI is republished and exact. (tests/integration/test_outputs.py checks the same
behaviour on a handful of events; this is the scenario-sized version.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.integration.conftest import Figures, Stack
from tests.integration.processes import free_port, redis_server
from tests.integration.scenario import build

from .conftest import Scale
from .harness import Streaming, health, processed_now
from .probes import rss_mb

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(35)]
SEED = 20261126
RSS_GROWTH_LIMIT_MB = 150.0


async def test_redis_outage_of_30_seconds(
    stack: Stack, namespace: str, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    port = free_port()
    server = redis_server(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    # the test's own client must outlive the restart too: retry on a closed connection
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5)
    redis = Redis.from_url(url, socket_timeout=2, retry=retry,
                           retry_on_error=[RedisConnectionError, RedisTimeoutError])  # fmt: skip
    sc = build(seed=SEED, now=time.time(), target_events=scale.events // 4)
    run = Streaming(stack, namespace, tmp_path, redis, sc, rate=60, REDIS_URL=url)
    try:
        await run.start()
        worker = run.worker
        assert worker is not None and worker.proc is not None
        pid = worker.proc.pid
        await run.reach(0.2)
        rss_before = rss_mb(pid)
        hashes = len([k async for k in redis.scan_iter(f"{namespace}:kpi:*")])
        handled_before = await processed_now(worker)
        server.terminate()
        server.wait(10)
        down_at = time.monotonic()
        statuses: set[str] = set()
        degraded_after: float | None = None
        rss_peak = rss_before
        while time.monotonic() - down_at < scale.redis_outage:
            status = str((await health(worker))["status"])
            statuses.add(status)
            if status == "degraded" and degraded_after is None:
                degraded_after = time.monotonic() - down_at
            rss_peak = max(rss_peak, rss_mb(pid))
            await asyncio.sleep(0.5)
        handled_during = await processed_now(worker) - handled_before
        server = redis_server(port, tmp_path)  # empty: everything must be republished
        back_at = time.monotonic()
        ok_after = None
        while ok_after is None and time.monotonic() - back_at < 60:
            if (await health(worker))["status"] == "ok":
                ok_after = time.monotonic() - back_at
            await asyncio.sleep(0.25)
        republished = None
        while republished is None and time.monotonic() - back_at < 60:
            if len([k async for k in redis.scan_iter(f"{namespace}:kpi:*")]) >= hashes:
                republished = time.monotonic() - back_at
            await asyncio.sleep(0.25)
        await run.finish()
    finally:
        await redis.aclose()
        code = run.close()
        server.terminate()
        server.wait(10)
    assert code == 0, run.worker.tail() if run.worker else ""
    assert degraded_after is not None, f"/healthz never said degraded: {statuses}"
    assert "stalled" not in statuses, statuses
    assert handled_during > 0, "nothing was consumed while Redis was down"
    assert ok_after is not None, "/healthz did not return to ok within 60 s of Redis"
    assert republished is not None, f"fewer than {hashes} KPI hashes 60 s after Redis was back"
    assert rss_peak - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, rss_peak)
    figures.append(
        f"Redis outage: {scale.redis_outage:.0f} s with {run.feed.events_sent:,} events streaming; "
        f"/healthz degraded after {degraded_after:.1f} s (never stalled), "
        f"{handled_during:.0f} input messages consumed while Redis was down; worker RSS "
        f"{rss_before:.0f} -> peak {rss_peak:.0f} MB; /healthz ok {ok_after:.1f} s after "
        f"Redis was back; the empty Redis had all {hashes} KPI hashes again {republished:.1f} s "
        f"after; recount exact"
    )
