"""Start the real funnelpulse worker as a child process, with per-test names."""

from __future__ import annotations

from pathlib import Path

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

    def start_ready(self) -> Worker:
        self.start()
        self.wait_http(f"{self.url}/healthz", timeout=90)
        return self
