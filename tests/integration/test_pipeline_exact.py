"""The acceptance test of the KPI pipeline: every count and KPI, for every scope and the
1 h, 24 h, 7 d and 30 d windows, in Redis, on /kpis and on /metrics, equals an independent
recount of a seeded scenario (singles and batches, duplicates, late and out-of-order
events, events hours and days old up to the 35-day horizon, events past it, bad events,
several currencies, repeated stages, anonymous funnel events) — before and after a
graceful restart of the worker."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from .conftest import Stack
from .recount import check_everything, counter_total, dead_letters, produce_phases
from .scenario import build
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(55)]


async def test_every_kpi_equals_an_independent_recount(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    sc = build(seed=20261123, now=time.time(), target_events=20_000)
    assert sc.valid_events >= 20_000
    assert sc.far_events > 0  # 31-34.5 days old: counted, in no window
    worker = Worker(stack, namespace, tmp_path).start_ready()
    try:
        assert (
            worker.proc is not None
            and "libjemalloc" in Path(f"/proc/{worker.proc.pid}/maps").read_text()
        ), "the worker re-executes itself under jemalloc (funnelpulse/malloc.py)"
        await produce_phases(stack.bootstrap, namespace, redis, sc)
        await check_everything(redis, namespace, worker, sc)

        dlq = await dead_letters(stack.bootstrap, f"{namespace}.dead-letter", len(sc.bad_reasons))
        reasons = Counter(dict(r.headers)["error.reason"].decode() for r in dlq)
        assert reasons == Counter(sc.bad_reasons)
        for record in dlq:
            headers = dict(record.headers)
            assert {"error.detail", "source.topic", "source.partition", "source.offset"} <= set(
                headers
            )
            assert headers["source.topic"].decode().startswith(f"{namespace}.")
        assert counter_total(worker.url, "marketing_events_rejected_total") == len(sc.bad_reasons)
        assert counter_total(worker.url, "marketing_events_duplicate_total") == sc.duplicates
        # every valid event is counted, the ones older than every window included
        assert counter_total(worker.url, "marketing_events_total") == sc.valid_events
    finally:
        assert worker.stop() == 0, worker.tail()

    # A graceful stop and a fresh start: state comes back from the changelogs, nothing
    # is lost or counted twice.
    await redis.delete(*[k async for k in redis.scan_iter(f"{namespace}:kpi:*")])
    again = Worker(stack, namespace, tmp_path, name="restarted").start_ready()
    try:
        await check_everything(redis, namespace, again, sc)
    finally:
        assert again.stop() == 0, again.tail()
