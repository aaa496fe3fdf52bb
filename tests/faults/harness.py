"""What every fault test does around its fault: a worker, a feed, the stack's own services,
and the exact recount at the end."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from tests.integration.conftest import ROOT, Stack, _local_stack_env
from tests.integration.recount import (
    check_everything,
    check_redis,
    scopes_and_counts,
    wait_for_counts,
    wait_republished,
)
from tests.integration.scenario import LONGEST, Scenario
from tests.integration.worker import Worker

from .feed import Feed, counted_barrier
from .probes import Recovery, processed, wait_recovered

PARTITIONS = "4"


def start_worker(stack: Stack, namespace: str, tmp: Path, name: str = "worker",
                 **env: str) -> tuple[Worker, float]:  # fmt: skip
    worker = Worker(stack, namespace, tmp, name=name, FUNNELPULSE_PARTITIONS=PARTITIONS, **env)
    worker.start()
    return worker, time.monotonic()


async def processed_now(worker: Worker) -> float:
    """Input messages this worker process has handled (-1 when it does not answer)."""
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            return processed((await http.get(f"{worker.url}/metrics")).text)
    except httpx.HTTPError:
        return -1.0


async def health(worker: Worker) -> dict[str, object]:
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            answer = await http.get(f"{worker.url}/healthz")
            return {**answer.json(), "http": answer.status_code}
    except (httpx.HTTPError, ValueError):
        return {"status": "unreachable", "http": 0}


async def wait_progress(worker: Worker, beyond: float, timeout: float) -> float | None:
    """Seconds until the worker has handled more than ``beyond`` input messages."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await processed_now(worker) > beyond:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None


async def exact_in_redis(
    redis: Redis, namespace: str, sc: Scenario, patience: float, workers: list[Worker]
) -> int:
    """The recount check on Redis alone (with several workers, /metrics only shows the
    scopes each one owns): every count and KPI of every scope, 1 h to 30 d."""
    key = f"{namespace}:kpi:{LONGEST}:all"
    await wait_for_counts(redis, key, sc.truth[("all", LONGEST)], patience)
    await wait_republished([w.url for w in workers], patience)
    await asyncio.sleep(1.5)  # let every scope's snapshot of that tick land
    with_data = sum(1 for _w, _s, counts in scopes_and_counts(sc) if any(counts.values()))
    checked = await check_redis(redis, namespace, sc)
    assert checked >= with_data
    return checked


class OwnStack:
    """The broker and Redis that the test fixture started for these tests at their own
    ports (pid files in .stack/tests-<port>): the only services a test may stop."""

    def __init__(self, stack: Stack) -> None:
        self.env = _local_stack_env(stack.bootstrap, stack.redis_url)
        self.dir = Path(self.env["FUNNELPULSE_STACK_DIR"])

    def pid(self, service: str) -> int | None:
        try:
            pid = int((self.dir / f"{service}.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    async def stop(self, service: str) -> None:
        await self._stack("down", FUNNELPULSE_ONLY=service)

    async def start(self) -> None:
        await self._stack("up")

    async def _stack(self, command: str, **env: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "stack.sh"), command, env={**self.env, **env},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, f"stack.sh {command} failed: {err.decode()[-2000:]}"


class Streaming:
    """A worker with the seeded scenario streaming into it: the frame of every fault test.

    ``start`` runs the worker and the feed; ``reach`` waits until a share of the scenario
    is sent; ``finish`` waits for the feed and runs the exact-recount check on ``worker``
    (which the test may have replaced); ``close`` stops the feed and the worker.
    """

    def __init__(self, stack: Stack, namespace: str, tmp: Path, redis: Redis, sc: Scenario,
                 rate: float, **env: str) -> None:  # fmt: skip
        self.stack, self.namespace, self.tmp, self.redis = stack, namespace, tmp, redis
        self.sc, self.env = sc, env
        self.feed = Feed(stack.bootstrap, namespace, sc, rate)
        self.worker: Worker | None = None
        self.sending: asyncio.Task[None] | None = None

    async def start(self, name: str = "worker") -> Recovery:
        self.worker, started = start_worker(self.stack, self.namespace, self.tmp, name, **self.env)
        recovery = await wait_recovered(self.worker, started)
        if self.sending is None:
            barrier = counted_barrier(self.redis, self.namespace, self.sc, patience=900)
            self.sending = asyncio.create_task(self.feed.run(barrier))
        return recovery

    async def reach(self, share: float) -> None:
        while self.feed.sent < self.feed.total * share:
            await asyncio.sleep(0.2)

    async def finish(self, patience: float = 600) -> None:
        assert self.sending is not None and self.worker is not None
        await self.sending
        await check_everything(self.redis, self.namespace, self.worker, self.sc, patience)

    def close(self) -> int:
        if self.sending is not None:
            self.sending.cancel()
        return self.worker.stop() if self.worker is not None else 0
