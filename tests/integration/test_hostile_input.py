"""Hostile input through the real broker and the real worker (issue 6, SPEC §1 "Bad input").

Over 10,000 generated bad messages (tests/integration/hostile.py: broken UTF-8, invalid
JSON, NaN/Infinity literals, nesting up to 3,000 levels, huge strings and numbers, wrong
types, 10 MB values, arrays of 100,000 events, empty and null values, null keys,
non-object batch members, ...) are interleaved with a seeded valid scenario. Asserted:
every bad event is in the dead-letter topic with its reason and its exact bytes, the
worker never crashes or restarts, the valid events count exactly (the acceptance test's
recount), and the worker's resident memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio import Redis

from .conftest import Figures, Stack
from .hostile import SUFFIX, Bad, digest, generate, interleave
from .memory import RssSampler, rss_kb
from .recount import check_everything, counter_total, dead_letters, wait_for_counts
from .scenario import LONGEST, Message, build
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(32)]
BAD_MESSAGES = 10_000
BIG = 12 * 1024 * 1024  # input topics accept 10 MB values, as a permissive cluster might
RSS_HEADROOM_KB = 220 * 1024  # measured: +109 MB at peak (62 -> 171 MB); about twice that


async def allow_big_messages(bootstrap: str, namespace: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, f"{namespace}.{suffix}",
                                    configs={"max.message.bytes": str(BIG)})
                     for suffix in SUFFIX.values()]  # fmt: skip
        await admin.alter_configs(resources)
    finally:
        await admin.close()


async def produce_mixed(bootstrap: str, namespace: str, items: list[Message | Bad]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=BIG)
    await producer.start()
    try:
        for item in items:
            if isinstance(item, Bad):
                topic, key, value = f"{namespace}.{item.suffix}", item.key, item.value
            else:
                topic, value = f"{namespace}.{item.topic_suffix}", item.value
                key = item.key.encode() if item.key else None
            if value is not None and len(value) > 512 * 1024:
                await (await producer.send(topic, value, key=key))  # one giant at a time
            else:
                await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_rejected(url: str, expected: int, patience: float) -> float:
    deadline = time.monotonic() + patience
    got = 0.0
    while time.monotonic() < deadline:
        got = counter_total(url, "marketing_events_rejected_total")
        if got >= expected:
            return got
        await asyncio.sleep(1)
    raise AssertionError(f"{got:.0f} of {expected} rejections after {patience} s")


def crashes_in(log: str) -> list[str]:
    """Agent crashes and internal errors as the worker logs them (each one is a crash)."""
    marks = ("Crashed reason=", "intake failed", "funnel failed", "merge failed", "Traceback")
    return [line for line in log.splitlines() if any(m in line for m in marks)]


async def test_hostile_input_is_dead_lettered_and_never_crashes_the_worker(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis, figures: Figures
) -> None:
    started = time.monotonic()
    now = time.time()
    sc = build(seed=20261201, now=now, target_events=5_000)
    hostile = generate(seed=6, sc=sc, now=now, count=BAD_MESSAGES)
    assert len(hostile.messages) >= BAD_MESSAGES
    expected_dead = sum(hostile.reasons.values()) + len(sc.bad_reasons)

    worker = Worker(stack, namespace, tmp_path).start_ready()
    assert worker.proc is not None
    pid = worker.proc.pid
    sampler = RssSampler(pid)
    try:
        await allow_big_messages(stack.bootstrap, namespace)
        baseline = rss_kb(pid)
        sampler.start()
        phase1 = [m for m in sc.messages if m.phase == 1]
        await produce_mixed(
            stack.bootstrap, namespace, list(interleave(1, phase1, hostile.messages))
        )
        signups = {"signups": sc.truth[("all", LONGEST)]["signups"]}
        await wait_for_counts(redis, f"{namespace}:kpi:{LONGEST}:all", signups, patience=240)
        for phase in (2, 3):
            await produce_mixed(
                stack.bootstrap, namespace, [m for m in sc.messages if m.phase == phase]
            )
        rejected = await wait_rejected(worker.url, expected_dead, patience=240)
        await check_everything(redis, namespace, worker, sc, patience=240)  # valid: exact
        dead = await dead_letters(
            stack.bootstrap, f"{namespace}.dead-letter", expected_dead, patience=120
        )
    finally:
        sampler.stopped.set()
        alive = worker.proc.poll() is None
        log = worker.tail(100_000)
        assert worker.stop() == 0, worker.tail()

    pairs = Counter(
        (dict(r.headers)["error.reason"].decode(), digest(r.value or b"")) for r in dead
    )
    missing = hostile.expected - pairs
    reasons = Counter(reason for reason, _ in pairs.elements())
    crashes = crashes_in(log) + ([] if alive else ["worker process exited"])
    peak = max(sampler.samples)
    figures.append(
        f"hostile input: bad inputs tried {len(hostile.messages):,} messages "
        f"({sum(hostile.reasons.values()):,} bad events, {hostile.neighbours:,} valid neighbours "
        f"in their batches) / dead-lettered {len(dead):,} (expected {expected_dead:,}) / "
        f"crashes {len(crashes)}; rejected counter {rejected:.0f}; worker RSS {baseline / 1024:.0f}"
        f" MB -> peak {peak / 1024:.0f} MB; {time.monotonic() - started:.0f} s; "
        f"per reason: {dict(sorted(reasons.items()))}; per kind: {dict(hostile.labels)}"
    )
    assert not crashes, "\n".join(crashes[:20])
    assert not missing, f"{sum(missing.values())} bad events not dead-lettered as expected"
    assert len(dead) == expected_dead  # the scenario's own bad events make up the rest
    assert reasons == hostile.reasons + Counter(sc.bad_reasons)
    assert rejected == expected_dead
    for record in dead:
        headers = dict(record.headers)
        assert {"error.detail", "source.topic", "source.partition", "source.offset"} <= set(headers)
    assert peak - baseline < RSS_HEADROOM_KB, (baseline, peak)
