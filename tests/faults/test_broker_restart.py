"""The Kafka broker stops and comes back mid-stream: the worker reconnects by itself and
every KPI is exact — in memory right away, and from the changelogs after a restart.

The test runs on a broker of its own (``private_broker``: its own port and state folder,
the shared Redis), so stopping it never disturbs the tests beside it. If the worker does not resume,
/healthz must say ``stalled`` (Faust is known to hang after a broker restart).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Figures, Stack
from tests.integration.scenario import build

from .conftest import Scale
from .harness import OwnStack, Streaming, health, processed_now, wait_progress

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(75)]
SEED = 20261125
RESUME_PATIENCE = 240.0


async def test_broker_stop_and_restart_mid_stream(
    private_broker: Stack, namespace: str, tmp_path: Path, redis: Redis, scale: Scale,
    figures: Figures,
) -> None:  # fmt: skip
    stack = private_broker
    own = OwnStack(stack)
    assert own.pid("kafka") is not None, "the private broker has no pid file"
    sc = build(seed=SEED, now=time.time(), target_events=scale.events // 4)
    run = Streaming(stack, namespace, tmp_path, redis, sc, rate=120)
    try:
        await run.start()
        await run.reach(0.3)
        assert run.worker is not None
        before = await processed_now(run.worker)
        stopping = time.monotonic()
        await own.stop("kafka")
        stopped_in = time.monotonic() - stopping
        await asyncio.sleep(scale.broker_down)
        during = await health(run.worker)
        await own.start()
        back = time.monotonic()
        beyond = max(before, await processed_now(run.worker))
        resumed = await wait_progress(run.worker, beyond, RESUME_PATIENCE)
        if resumed is None:
            verdict = await health(run.worker)
            assert verdict["status"] == "stalled" and verdict["http"] == 503, verdict
            pytest.fail(f"worker hung after the broker restart; /healthz said {verdict}")
        await run.finish()
        caught_up = time.monotonic() - back
        # State written while the broker was away must be in the changelogs too.
        assert run.close() == 0, run.worker.tail()
        await redis.delete(*[k async for k in redis.scan_iter(f"{namespace}:kpi:*")])
        await run.start("restarted")
        await run.finish(patience=300)
    finally:
        code = run.close()
    assert code == 0, run.worker.tail() if run.worker else ""
    figures.append(
        f"broker restart: {run.feed.events_sent:,} events; broker stopped in {stopped_in:.1f} s, "
        f"down {scale.broker_down:.0f} s (worker /healthz meanwhile: {during.get('status')}); "
        f"processing resumed {resumed:.1f} s after the broker was back, all caught up and "
        f"exact {caught_up:.1f} s after; {run.feed.resends} sends retried by the producer; "
        f"recount exact, and exact again after a restart from the changelogs"
    )
