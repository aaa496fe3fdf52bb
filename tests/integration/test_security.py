"""Security against real servers (issue 6): a Kafka broker with SASL_PLAINTEXT and SASL_SSL
listeners (PLAIN and SCRAM users), a Redis with ``requirepass`` and TLS, and the worker's
collector token. ``funnelpulse check`` and the worker connect with the credentials, fail
clearly without them, and never print a secret."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from funnelpulse.security import kafka_client_kwargs
from funnelpulse.settings import Settings
from metrics.redis_client import AUTH_REFUSED

from .conftest import ROOT, Stack
from .recount import wait_for_counts
from .secure_stack import USER, SecureKafka, Tls, make_tls, secure_kafka, secure_redis
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(45)]
KAFKA_PASSWORD = f"kafka-{secrets.token_hex(8)}"
REDIS_PASSWORD = f"redis-{secrets.token_hex(8)}"
TOKEN = f"token-{secrets.token_hex(12)}"
SECRETS = (KAFKA_PASSWORD, REDIS_PASSWORD, TOKEN)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[SecureKafka]:
    with secure_kafka(tmp_path_factory.mktemp("kafka"), tls, KAFKA_PASSWORD) as broker:
        yield broker


@pytest.fixture(scope="module")
def redis_ports(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[tuple[int, int]]:
    with secure_redis(tmp_path_factory.mktemp("redis"), REDIS_PASSWORD, tls) as ports:
        yield ports


def sasl(
    kafka: SecureKafka, tls: Tls, mechanism: str = "PLAIN", over_tls: bool = True
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_ssl if over_tls else kafka.sasl_plaintext,
        "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL" if over_tls else "SASL_PLAINTEXT",
        "FUNNELPULSE_KAFKA_SASL_MECHANISM": mechanism,
        "FUNNELPULSE_KAFKA_SASL_USERNAME": USER,
        "FUNNELPULSE_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
    }
    if over_tls:
        env["FUNNELPULSE_KAFKA_SSL_CA_FILE"] = str(tls.ca)
    return env


def check(env: dict[str, str]) -> tuple[int, str]:
    """``funnelpulse check`` as a user runs it: a process with only these settings."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FUNNELPULSE_", "KAFKA_", "REDIS_"))}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "funnelpulse.cli", "check", "--timeout", "20"],
        env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    for secret in SECRETS:
        assert secret not in output, output
    return proc.returncode, output


@pytest.mark.parametrize(
    ("mechanism", "over_tls", "redis_tls", "redis_user"),
    [("PLAIN", False, False, ""), ("SCRAM-SHA-256", False, True, ""),
     ("SCRAM-SHA-512", True, True, USER), ("PLAIN", True, False, USER)],
)  # fmt: skip
def test_check_connects_with_credentials_and_tls(
    kafka: SecureKafka, tls: Tls, redis_ports: tuple[int, int], mechanism: str,
    over_tls: bool, redis_tls: bool, redis_user: str,
) -> None:  # fmt: skip
    port, tls_port = redis_ports
    redis = {"REDIS_URL": f"rediss://127.0.0.1:{tls_port}/0",
             "FUNNELPULSE_REDIS_SSL_CA_FILE": str(tls.ca)} if redis_tls else {
             "REDIS_URL": f"redis://127.0.0.1:{port}/0"}  # fmt: skip
    code, output = check({**sasl(kafka, tls, mechanism, over_tls), **redis,
                          "FUNNELPULSE_REDIS_USERNAME": redis_user,
                          "FUNNELPULSE_REDIS_PASSWORD": REDIS_PASSWORD})  # fmt: skip
    assert code == 0, output
    assert f"{'SASL_SSL' if over_tls else 'SASL_PLAINTEXT'} {mechanism} user" in output
    assert "kafka  ok" in output and "redis  ok" in output


def test_check_fails_clearly_with_wrong_credentials(
    kafka: SecureKafka, tls: Tls, redis_ports: tuple[int, int]
) -> None:
    port, _ = redis_ports
    wrong = {**sasl(kafka, tls, "SCRAM-SHA-256", over_tls=False),
             "FUNNELPULSE_KAFKA_SASL_PASSWORD": f"{KAFKA_PASSWORD}-wrong",
             "REDIS_URL": f"redis://:{REDIS_PASSWORD}-wrong@127.0.0.1:{port}/0"}  # fmt: skip
    code, output = check(wrong)
    assert code == 1, output
    assert "kafka  FAILED" in output and "SaslAuthenticationFailed" in output, output
    assert "check FUNNELPULSE_KAFKA_SASL_USERNAME" in output
    assert "redis  FAILED" in output and "AuthenticationError" in output, output
    assert "redis://:***@127.0.0.1" in output
    code, output = check({**sasl(kafka, tls), "FUNNELPULSE_KAFKA_SSL_CA_FILE": "",
                          "REDIS_URL": f"redis://127.0.0.1:{port}/0"})  # fmt: skip
    assert code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in output, output  # the system CAs do not know ours
    assert "redis  FAILED" in output and "AuthenticationError" in output, output


def test_worker_over_sasl_ssl_with_redis_auth_and_collector_token(
    kafka: SecureKafka, tls: Tls, redis_ports: tuple[int, int], namespace: str, tmp_path: Path
) -> None:
    port, _ = redis_ports
    stack = Stack(kafka.sasl_ssl, f"redis://127.0.0.1:{port}/0")
    env = {**sasl(kafka, tls), "FUNNELPULSE_REDIS_PASSWORD": REDIS_PASSWORD,
           "FUNNELPULSE_COLLECTOR_TOKEN": TOKEN, "FUNNELPULSE_LOG_LEVEL": "debug"}  # fmt: skip
    worker = Worker(stack, namespace, tmp_path, **env).start_ready()
    try:
        now = time.time()
        click = {"event_id": "c-1", "ts": now - 60, "campaign_id": "secure", "channel": "email"}
        with httpx.Client(base_url=worker.url, timeout=10) as http:
            assert http.post("/events/click", json=[click]).status_code == 401
            wrong = {"Authorization": f"Bearer {TOKEN}x"}
            assert http.post("/events/click", json=[click], headers=wrong).status_code == 401
            basic = {"Authorization": f"Basic {TOKEN}"}
            assert http.post("/events/click", json=[click], headers=basic).status_code == 401
            good = {"Authorization": f"Bearer {TOKEN}"}
            answer = http.post("/events/click", json=[click, {**click, "event_id": "c-2"}],
                               headers=good)  # fmt: skip
            assert answer.status_code == 202, answer.text
            assert answer.json()["accepted"] == 2
            huge = http.post("/events/click", content=b"[" + b" " * 1_500_000 + b"]", headers=good)
            assert huge.status_code == 413  # the web server reads at most 1 MiB
            assert http.get("/healthz").json()["redis"] in ("up", "down")  # no token needed
        asyncio.run(produce_and_verify(kafka, tls, stack, namespace))
        assert httpx.get(f"{worker.url}/healthz", timeout=10).json()["redis"] == "up"
    finally:
        assert worker.stop() == 0, worker.tail()
    log = worker.log_path.read_text(errors="replace")
    assert log.count("[DEBUG]") > 50  # the most talkative level, and still no secret
    for secret in SECRETS:
        assert secret not in log, f"a secret is in the worker's log ({len(log)} bytes)"


async def produce_and_verify(kafka: SecureKafka, tls: Tls, stack: Stack, namespace: str) -> None:
    """Three more clicks over SASL_SSL; the worker counts all five into the password Redis,
    and its topics exist on the broker (its admin client authenticated too)."""
    await produce_clicks(kafka, tls, namespace, 3)
    redis = Redis.from_url(stack.redis_url, password=REDIS_PASSWORD, socket_timeout=5)
    try:
        key = f"{namespace}:kpi:1h:campaign:secure"
        await wait_for_counts(redis, key, {"clicks": 5, "email_clicks": 5}, patience=90)
        assert await redis.ttl(key) > 0
    finally:
        await redis.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.plaintext)
    await admin.start()
    try:
        assert f"{namespace}.dead-letter" in set(await admin.list_topics())
    finally:
        await admin.close()


async def produce_clicks(kafka: SecureKafka, tls: Tls, namespace: str, n: int) -> None:
    """``n`` clicks on campaign ``secure``, produced over SASL_SSL."""
    producer = AIOKafkaProducer(**kafka_client_kwargs(Settings.from_env(sasl(kafka, tls))))
    await producer.start()
    try:
        clicks = [{"event_id": f"p-{i}", "ts": time.time() - 60, "campaign_id": "secure",
                   "channel": "email"} for i in range(n)]  # fmt: skip
        await producer.send_and_wait(f"{namespace}.clicks", orjson.dumps(clicks), key=b"secure")
    finally:
        await producer.stop()


def test_worker_refuses_to_start_with_wrong_kafka_credentials(
    kafka: SecureKafka, tls: Tls, redis_ports: tuple[int, int], namespace: str, tmp_path: Path
) -> None:
    stack = Stack(kafka.sasl_plaintext, f"redis://127.0.0.1:{redis_ports[0]}/0")
    env = {**sasl(kafka, tls, "SCRAM-SHA-512", over_tls=False),
           "FUNNELPULSE_KAFKA_SASL_PASSWORD": f"{KAFKA_PASSWORD}-wrong"}  # fmt: skip
    worker = Worker(stack, namespace, tmp_path, **env).start()
    assert worker.proc is not None
    code = worker.proc.wait(120)
    log = worker.log_path.read_text(errors="replace")
    assert code == 1, log
    assert "worker: cannot use Kafka at" in log and "SaslAuthenticationFailed" in log, log
    assert KAFKA_PASSWORD not in log


def test_worker_without_the_redis_password_says_so_and_keeps_counting(
    kafka: SecureKafka, tls: Tls, redis_ports: tuple[int, int], namespace: str, tmp_path: Path
) -> None:
    stack = Stack(kafka.sasl_plaintext, f"redis://127.0.0.1:{redis_ports[0]}/0")
    worker = Worker(stack, namespace, tmp_path, **sasl(kafka, tls, over_tls=False)).start_ready()
    try:
        deadline = time.monotonic() + 60
        health: dict[str, object] = {}
        while time.monotonic() < deadline:
            health = httpx.get(f"{worker.url}/healthz", timeout=10).json()
            if health.get("seconds_since_publish") is not None:
                break
            time.sleep(0.5)
        assert health["status"] == "degraded" and health["redis"] == "down", health
        assert AUTH_REFUSED in str(health["redis_error"]), health
        asyncio.run(produce_clicks(kafka, tls, namespace, 2))
        deadline = time.monotonic() + 60
        got = None
        while time.monotonic() < deadline and got != 2:  # counting goes on without Redis
            answer = httpx.get(f"{worker.url}/kpis", params={"window": "1h",
                               "scope": "campaign:secure"}, timeout=10)  # fmt: skip
            got = answer.json().get("clicks") if answer.status_code == 200 else None
            time.sleep(0.5)
        assert got == 2
    finally:
        assert worker.stop() == 0, worker.tail()
    log = worker.log_path.read_text(errors="replace")
    # Reported once, in the same words whether the refusal met the PING or a publish.
    assert log.count(AUTH_REFUSED) == 1, log
    assert not re.search(r"\w+Warning: ", log), log  # e.g. redis-py's sync Retry warning
