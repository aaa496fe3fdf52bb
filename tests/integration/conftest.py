"""Real Kafka and Redis for the integration tests.

A session fixture uses the services that are already up (``make up``, or
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) and otherwise starts the project's own stack in a
separate state folder, stopping at the end only what it started. Each test gets its own
topic prefix and Redis key prefix, so tests never see each other's data.

``make test`` runs the suite in several pytest-xdist processes: the first of them to need
the stack starts it under a file lock and names the test run in a marker file; the run's
controller stops it at the very end (``tests/conftest.py``), after all are done — unless
another test run still uses it (``stop_started_stack``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from funnelpulse.connectivity import kafka_round_trip, redis_ping

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    redis_url: str


def _healthy(check: str, target: str) -> bool:
    probe = kafka_round_trip if check == "kafka" else redis_ping
    try:
        asyncio.run(asyncio.wait_for(probe(target), timeout=15))
    except Exception:
        return False
    return True


TEST_RUN_ENV = "FUNNELPULSE_TEST_RUN"  # set by tests/conftest.py, inherited by xdist workers
TEST_RUN_PID_ENV = "FUNNELPULSE_TEST_RUN_PID"  # the run's controller: alive while the run is


def started_marker(bootstrap: str) -> Path:
    """Names the test run that started the stack at ``bootstrap`` (absent: not started)."""
    return ROOT / ".stack" / f"tests-{bootstrap.rpartition(':')[2]}.started-by"


def _users(bootstrap: str) -> Path:
    """One file per test run using the stack at ``bootstrap``, holding its controller's pid."""
    return ROOT / ".stack" / f"tests-{bootstrap.rpartition(':')[2]}.users"


@contextmanager
def _stack_lock() -> Iterator[None]:
    """One process at a time checks, starts, joins, leaves or stops the test stack."""
    (ROOT / ".stack").mkdir(exist_ok=True)
    with (ROOT / ".stack" / "tests.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def stack() -> Stack:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    run = os.environ.get(TEST_RUN_ENV, "unknown")
    with _stack_lock():
        if not (_healthy("kafka", bootstrap) and _healthy("redis", redis_url)):
            env = _local_stack_env(bootstrap, redis_url)
            subprocess.run([str(ROOT / "scripts" / "stack.sh"), "up"], check=True, env=env)
            started_marker(bootstrap).write_text(run)
        users = _users(bootstrap)
        users.mkdir(exist_ok=True)
        (users / run).write_text(os.environ.get(TEST_RUN_PID_ENV, str(os.getpid())))
    return Stack(bootstrap, redis_url)


def stop_started_stack(run: str) -> None:
    """Stops the stack if this test run started it and no other run still uses it (called
    once, by the run's controller).

    The trap: two test runs at once (two terminals, two worktrees) share the stack the
    first one started; stopping it at the first run's end broke the other run mid-test.
    So the run that started the stack hands it over to a run still using it, and the
    last one out stops it."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    marker, users = started_marker(bootstrap), _users(bootstrap)
    with _stack_lock():
        (users / run).unlink(missing_ok=True)
        if not (marker.exists() and marker.read_text() == run):
            return
        for other in sorted(users.glob("*")) if users.exists() else []:
            if other.read_text().strip().isdigit() and _alive(int(other.read_text())):
                marker.write_text(other.name)  # theirs to stop
                return
            other.unlink()  # a run that died without leaving
        env = _local_stack_env(bootstrap, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        stop_throwaway_stack(env)
        marker.unlink()


def stop_throwaway_stack(env: dict[str, str]) -> None:
    """Stops services the tests started, with SIGKILL: they hold only test data, which goes
    with them (the logs stay), so the next run starts an empty broker instead of loading
    every earlier run's partitions, and nobody waits for a graceful broker shutdown."""
    down = [str(ROOT / "scripts" / "stack.sh"), "down"]
    subprocess.run(down, check=False, env={**env, "FUNNELPULSE_STOP_SIGNAL": "KILL"})
    shutil.rmtree(Path(env["FUNNELPULSE_STACK_DIR"]) / "kafka", ignore_errors=True)


def _local_stack_env(bootstrap: str, redis_url: str) -> dict[str, str]:
    """Environment for scripts/stack.sh to start the services *at these addresses*."""
    kafka_host, _, kafka_port = bootstrap.split(",")[0].rpartition(":")
    redis = urlparse(redis_url)
    for host in (kafka_host, redis.hostname):
        if host not in ("127.0.0.1", "localhost"):
            pytest.exit(f"{host} is not answering and is not local: nothing for the tests to start")
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    return {
        **env,
        "FUNNELPULSE_STACK_DIR": str(ROOT / ".stack" / f"tests-{kafka_port}"),
        "FUNNELPULSE_KAFKA_PORT": kafka_port,
        "FUNNELPULSE_KAFKA_CONTROLLER_PORT": str(int(kafka_port) + 1),
        "FUNNELPULSE_REDIS_PORT": str(redis.port or 6379),
    }


# every figure line ever measured; tests/conftest.py prints the lines of this run at its end
REPORT = ROOT / ".stack" / "test-figures.txt"
# The log tails of failed tests' processes, printed at the very end of the run: CI keeps
# only the run's output (and only its first and last lines), never the logs themselves.
FAILURE_LOGS = ROOT / ".stack" / "test-failure-logs.txt"


class Figures:
    """Lines of measured figures (fault tests, hostile input), appended to the report file
    at once: under pytest-xdist the tests run in worker processes, and the controller
    prints the run's lines at the end."""

    def append(self, line: str) -> None:
        REPORT.parent.mkdir(exist_ok=True)
        with REPORT.open("a") as out:
            out.write(f"{line}\n")


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh name for this test's topics, consumer groups, app id and Redis keys; at the
    end, a test that used the stack deletes the topics named with it.

    The trap: on a stack that was already up (``make up``, the benchmarks' broker) the
    tests' topics outlived them — 4,560 topics and 12,028 partitions after a few days of
    ``make test``, and every aiokafka client that asks for all topics' metadata (an admin
    client, a producer before its first send) parses all of them at each refresh: the
    benchmarks measured the test runs' leftovers with the worker."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        delete_topics_named(stack.bootstrap, name)


def delete_topics_named(bootstrap: str, part: str) -> None:
    """Deletes every topic whose name contains ``part`` (from a thread of its own: a sync
    fixture's teardown may run while the test's event loop is still set)."""

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if part in t]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(delete())
        except Exception as exc:  # a broker a test stopped, or one that left: say so
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"delete-{part}")
    thread.start()
    thread.join()
    if failure:
        warnings.warn(f"topics of {part} not deleted: {failure[0]!r}", stacklevel=1)


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url, socket_timeout=5)
    yield client
    await client.aclose()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
