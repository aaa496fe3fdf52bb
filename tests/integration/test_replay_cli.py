"""``funnelpulse replay`` end to end: a JSON Lines file through the real CLI into a real topic."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from .conftest import ROOT, Stack, create_topic

pytestmark = [pytest.mark.integration, pytest.mark.seconds(3)]

EVENTS = 250


def _jsonl(path: Path) -> None:
    """250 clicks over two campaigns, with one broken line and one line without a type."""
    now = time.time()
    lines = [
        orjson.dumps(
            {
                "type": "click",
                "event_id": f"c{i}",
                "ts": now,
                "campaign_id": "spring-sale" if i % 2 else "summer-sale",
                "channel": "email",
            }
        )
        for i in range(EVENTS)
    ]
    lines.insert(10, b'{"type": "click", "event_id": ')  # line 11
    lines.insert(50, b"")  # line 51: blank lines are passed over, not "skipped"
    lines.insert(101, b'{"event_id": "untyped", "campaign_id": "spring-sale"}')  # line 102
    path.write_bytes(b"\n".join(lines) + b"\n")


async def _consume(bootstrap: str, topic: str, want: int) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[tuple[bytes | None, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 30
        while sum(len(orjson.loads(v)) for _, v in records) < want:
            assert time.monotonic() < deadline, f"only {len(records)} messages arrived"
            batches = await consumer.getmany(timeout_ms=500)
            records += [(r.key, r.value) for recs in batches.values() for r in recs if r.value]
        await asyncio.sleep(1)  # anything extra would show up now
        batches = await consumer.getmany(timeout_ms=500)
        records += [(r.key, r.value) for recs in batches.values() for r in recs if r.value]
    finally:
        await consumer.stop()
    return records


async def test_replay_sends_every_good_line_as_batches(
    stack: Stack, namespace: str, tmp_path: Path
) -> None:
    topic = f"{namespace}.clicks"
    await create_topic(stack.bootstrap, topic, 3)
    path = tmp_path / "events.jsonl"
    _jsonl(path)
    env = {
        **os.environ,
        "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.",
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
    }
    args = ["-m", "funnelpulse.cli", "replay", str(path), "--batch", "100"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "line 11: not valid JSON" in stderr
    assert 'line 102: no "type" field' in stderr
    assert f"replay: sent {EVENTS} events in 4 messages, skipped 2 lines" in stderr

    records = await _consume(stack.bootstrap, topic, EVENTS)
    batches = [(key, orjson.loads(value)) for key, value in records]
    assert all(isinstance(events, list) for _, events in batches)
    assert len(batches) >= 3
    assert all(1 <= len(events) <= 100 for _, events in batches)
    ids = [event["event_id"] for _, events in batches for event in events]
    assert sorted(ids) == sorted(f"c{i}" for i in range(EVENTS))  # each exactly once
    for key, events in batches:  # keyed by campaign: a campaign lives on one partition
        assert {event["campaign_id"].encode() for event in events} == {key}
