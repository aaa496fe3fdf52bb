"""Start the real funnelpulse worker as a child process, with per-test names."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .conftest import Stack
from .processes import ServiceProcess, free_port

# The defaults and the week and month windows (issue 16): the recount checks 7d and 30d,
# and every test's worker publishes them (their cost shows in every run).
WINDOWS = "1m,5m,15m,1h,24h,7d,30d"


class Worker(ServiceProcess):
    def __init__(
        self, stack: Stack, namespace: str, tmp: Path, name: str = "worker", **env: str
    ) -> None:
        self.port = int(env.pop("FUNNELPULSE_WEB_PORT", free_port()))
        base = {
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "REDIS_URL": stack.redis_url,
            "FUNNELPULSE_APP_ID": namespace,
            "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.",
            "FUNNELPULSE_REDIS_PREFIX": f"{namespace}:",
            "FUNNELPULSE_WEB_PORT": str(self.port),
            "FUNNELPULSE_DATA_DIR": str(tmp / f"{name}-data"),
            "FUNNELPULSE_PARTITIONS": "3",
            "FUNNELPULSE_PUBLISH_INTERVAL": "500ms",
            "FUNNELPULSE_LOG_LEVEL": "warn",
            "FUNNELPULSE_WINDOWS": WINDOWS,
        }
        super().__init__(["-m", "funnelpulse.cli", "worker"], {**base, **env}, tmp / f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def healthz(self) -> dict[str, Any]:
        """The worker's /healthz; on a loaded machine it may answer late: ask again. A
        worker that died says so (exit code, log) instead of "connection refused"."""
        for _ in range(5):
            self.assert_alive()
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    body: dict[str, Any] = (await http.get(f"{self.url}/healthz")).json()
                return body
            except httpx.TimeoutException:
                await asyncio.sleep(1)
        raise AssertionError(f"{self.url}/healthz never answered")

    def start_ready(self) -> Worker:
        self.start()
        self.wait_http(f"{self.url}/healthz", timeout=90)
        return self

    def diagnosis(self) -> str:
        """What the worker says about itself: ``/healthz`` and, through mode's SIGUSR1
        handler, a dump of every asyncio task's stack into its log — so that a test that
        times out on a stalled worker shows where it waits (CI keeps no worker logs)."""
        try:
            health = httpx.get(f"{self.url}/healthz", timeout=3).text
        except httpx.HTTPError as exc:
            health = f"unreachable ({exc!r})"
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)  # the dump is written by the worker's loop
        return f"--- {self.log_path.name}: /healthz {health}\n{self.tail(400)}"


@contextmanager
def explained(*workers: Worker) -> Iterator[None]:
    """Re-raises a failed wait with every worker's diagnosis appended."""
    try:
        yield
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(w.diagnosis() for w in workers)) from exc
