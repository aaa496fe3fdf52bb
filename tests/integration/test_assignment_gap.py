"""An assignment that leaves out a table's partitions holds the batches; it does not crash.

After a broker restart the group was once assigned while the metadata lacked the
``channels`` changelog topic: the merge stage got its topic's partitions without that
table's, met ``NotHeld`` in its next batch and the worker exited (``streams/assignment.py``).
Here the same gap is made for real: the changelog topic is deleted while the worker is
idle (the group then assigns without it), traffic arrives, the topic is created again.
The worker must stay up, say what it lacks in ``/healthz``, count nothing while it lacks
it, and once the topic is back ask for a whole assignment by itself and count every
event exactly. With the memory store: a RocksDB database remembers the deleted topic's
offsets, and Faust then refuses the new topic (``ConsistencyError``: "persisted offset
... higher than the last offset in that topic"), rightly, since its data was removed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from streams.topics import changelog_topic

from .conftest import Stack
from .recount import check_everything, produce, wait_for_counts
from .scenario import LONGEST, build
from .worker import Worker, explained

pytestmark = [pytest.mark.integration, pytest.mark.seconds(90)]
PARTITIONS = 3  # the Worker helper's FUNNELPULSE_PARTITIONS


async def wait_health(worker: Worker, want: str, test: Any, patience: float) -> dict[str, Any]:
    deadline = time.monotonic() + patience
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await worker.healthz()
        if test(body):
            return body
        await asyncio.sleep(0.5)
    raise TimeoutError(f"/healthz never showed {want} in {patience} s: {body}")


async def test_a_table_left_out_of_the_assignment_holds_batches_until_it_is_back(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    sc = build(seed=20261207, now=time.time(), target_events=3_000)
    channels = changelog_topic(namespace, "channels")
    worker = Worker(stack, namespace, tmp_path, FUNNELPULSE_STORE="memory").start_ready()
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    key = f"{namespace}:kpi:{LONGEST}:all"
    try:
        with explained(worker):
            await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 1])
            signups = sc.truth[("all", LONGEST)]["signups"]
            await wait_for_counts(redis, key, {"signups": signups}, 120)
            await asyncio.sleep(3)  # the merge stage's writes acknowledged: nothing in flight

            await admin.delete_topics([channels])
            gap = await wait_health(
                worker, "the channels partitions missing",
                lambda b: any(m.startswith(channels) for m in b.get("assignment_missing", [])),
                60,
            )  # fmt: skip
            assert sorted(gap["assignment_missing"]) == [f"{channels}[{p}]" for p in range(3)]

            # traffic while the gap lasts: held, not counted, and the worker stays up
            before = float((await redis.hget(key, "purchases")) or 0)
            await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 2])
            await asyncio.sleep(5)
            assert float((await redis.hget(key, "purchases")) or 0) == before
            assert (await worker.healthz())["assignment_missing"], "the gap closed by itself"

            compacted = {"cleanup.policy": "compact"}
            await admin.create_topics([NewTopic(channels, PARTITIONS, 1, topic_configs=compacted)])
            await wait_health(worker, "a whole assignment",
                              lambda b: not b["assignment_missing"], 60)  # fmt: skip
            purchases = {"purchases": sc.purchases_by_phase[1] + sc.purchases_by_phase[2]}
            await wait_for_counts(redis, key, purchases, 120)
            await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 3])
            await check_everything(redis, namespace, worker, sc)
        worker.assert_alive()
    finally:
        await admin.close()
        code = worker.stop()
    assert code == 0, worker.tail()
