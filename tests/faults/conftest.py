"""Fixtures of the fault tests: the integration stack, plus a scale and a figures report.

``FUNNELPULSE_FAULTS=full`` (what ``make test-faults`` sets) runs the sizes the reliability
issue asks for (>= 200,000 events, >= 20 kills); without it the same tests run reduced, so
that ``make test`` can afford them. Every test adds the figures it measured to a summary
printed at the end of the run, a line per fault that can be quoted as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.conftest import (
    ROOT,
    Stack,
    _local_stack_env,
    figures,
    namespace,
    redis,
    stack,
    stop_throwaway_stack,
)
from tests.integration.processes import free_port

__all__ = [
    "figures",
    "namespace",
    "redis",
    "stack",
]  # the integration fixtures, for these tests too


@dataclass(frozen=True)
class Scale:
    full: bool
    events: int  # scenario size of the kill -9 test (other tests use a fraction)
    kills: int
    redis_outage: float  # seconds Redis stays away
    broker_down: float  # seconds the broker stays away

    @classmethod
    def from_env(cls) -> Scale:
        full = os.environ.get("FUNNELPULSE_FAULTS", "reduced") == "full"
        return cls(full, 200_000, 20, 30.0, 20.0) if full else cls(False, 15_000, 2, 12.0, 10.0)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.from_env()


@pytest.fixture
def private_broker(stack: Stack) -> Iterator[Stack]:
    """A broker of the test's own, next to the shared Redis: a test that stops its broker
    must not take it away from the tests running beside it (``make test`` runs two at a
    time)."""
    while True:
        port = free_port()
        if port < 65535 and _port_free(port + 1):  # the KRaft controller's port
            break
    own = Stack(f"127.0.0.1:{port}", stack.redis_url)
    env = _local_stack_env(own.bootstrap, own.redis_url)
    script = str(ROOT / "scripts" / "stack.sh")
    subprocess.run([script, "up"], check=True, env=env, capture_output=True)
    yield own
    stop_throwaway_stack({**env, "FUNNELPULSE_ONLY": "kafka"})
    shutil.rmtree(env["FUNNELPULSE_STACK_DIR"], ignore_errors=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault tests (kill -9, outages, rebalances, SIGTERM): make test-faults"
    )
