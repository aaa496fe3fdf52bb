"""The RocksDB store (``FUNNELPULSE_STORE=rocksdb``) through rebalances, against the real
broker, Redis and Faust:

- a partition revoked from a worker is closed by Faust once our revocation handler has
  flushed, and stays closed while traffic goes on (a late write would reopen it): the
  databases a worker process holds open (its RocksDB file locks, read from
  ``/proc/locks``, nothing injected into the worker) are exactly its assigned active and
  standby changelog partitions;
- with two workers every partition is active on one and a standby on the other, and the
  standby's database is kept up to date by Faust's standby recovery: after ``kill -9`` of
  one worker the survivor restores only the tail (``/healthz`` ``restore``: no partition
  rebuilt from the changelog's start, a small share of the changelogs' offsets read);
- every count and KPI stays exact, and ``/healthz`` ``restore`` matches the OpenAPI doc.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from streams import openapi

from .conftest import Stack
from .recount import check_everything, produce, wait_for_counts
from .scenario import LONGEST, build
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(150)]
ROCKSDB = {"FUNNELPULSE_STORE": "rocksdb"}


async def settled(workers: list[Worker], patience: float = 180) -> list[dict[str, Any]]:
    """Every worker's /healthz once the group is stable: each worker ok with a restore
    done, and every changelog partition active on one worker and (with two or more)
    standby on another."""
    deadline = time.monotonic() + patience
    bodies: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        bodies = [await w.healthz() for w in workers]
        parts = [b["partitions"] for b in bodies]
        actives = sum(p["active"] for p in parts)
        standbys = sum(p["standby"] for p in parts)
        if (
            all(b["status"] == "ok" and b["restore"]["state"] == "done" for b in bodies)
            and all(p["active"] for p in parts)
            and standbys == (actives if len(workers) > 1 else 0)
        ):
            await asyncio.sleep(2)  # the same a moment later: not between two rebalances
            again = [await w.healthz() for w in workers]
            if [b["partitions"] for b in again] == parts:
                return again
        await asyncio.sleep(0.5)
    raise AssertionError(f"the group never settled: {bodies}")


def store_locks(worker: Worker) -> tuple[set[str], set[str]]:
    """(every RocksDB database under the worker's data dir, those its process holds
    open): RocksDB keeps a POSIX lock on each open database's LOCK file."""
    assert worker.proc is not None
    data = Path(worker.env["FUNNELPULSE_DATA_DIR"])
    locks = {os.stat(lock).st_ino: lock.parent.name for lock in data.rglob("LOCK")}
    held = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "POSIX" and fields[4] == str(worker.proc.pid):
            inode = int(fields[5].rsplit(":", 1)[1])
            if inode in locks:
                held.add(locks[inode])
    return set(locks.values()), held


async def changelog_ends(bootstrap: str, namespace: str) -> int:
    """The sum of the end offsets of every changelog partition of the app."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = [
            t for t in await consumer.topics() if t.startswith(namespace) and "changelog" in t
        ]
        await consumer._client.force_metadata_update()  # partitions of unsubscribed topics
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        assert tps, f"no changelog partitions of {namespace}"
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def check_restore_schema(body: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(openapi.restore()).validate(body["restore"])


async def test_revocation_closes_stores_standbys_stay_warm_takeover_reads_the_tail(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis
) -> None:
    sc = build(seed=20261206, now=time.time(), target_events=4_000)
    # a fresh app's changelog topics appear after its first assignment: the partitions
    # are spread once a second worker joins
    first = Worker(stack, namespace, tmp_path, name="a", **ROCKSDB).start_ready()
    workers = [first]
    try:
        second = Worker(stack, namespace, tmp_path, name="b", **ROCKSDB).start_ready()
        workers.append(second)
        bodies = await settled(workers)
        for worker, body in zip(workers, bodies, strict=True):
            assert body["restore"]["store"] == "rocksdb"
            check_restore_schema(body)
            stores, held = store_locks(worker)
            parts = body["partitions"]
            assert len(held) == parts["active"] + parts["standby"] and held == stores

        # three workers: each partition active on one, standby on another, absent from
        # the third: every worker gives some up entirely
        third = Worker(stack, namespace, tmp_path, name="c", **ROCKSDB).start_ready()
        workers.append(third)
        await settled(workers)
        await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 1])
        key = f"{namespace}:kpi:{LONGEST}:all"  # holds every sign-up and purchase
        await wait_for_counts(redis, key, {"signups": sc.truth[("all", LONGEST)]["signups"]}, 120)
        bodies = await settled(workers)  # traffic went on after the revocations
        for worker, body in zip(workers, bodies, strict=True):
            stores, held = store_locks(worker)
            parts = body["partitions"]
            assert len(held) == parts["active"] + parts["standby"], (worker.env, held)
        stores, held = store_locks(first)
        assert stores - held, "no database of the first worker was closed by the rebalance"

        # two workers: every partition on both, active on one, a standby on the other
        assert third.stop() == 0, third.tail()
        workers.remove(third)
        await settled(workers)
        await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 2])
        purchases = {"purchases": sc.purchases_by_phase[1] + sc.purchases_by_phase[2]}
        await wait_for_counts(redis, key, purchases, 120)
        await produce(stack.bootstrap, namespace, [m for m in sc.messages if m.phase == 3])
        await wait_for_counts(redis, key, sc.truth[("all", LONGEST)], 120)
        ends = await changelog_ends(stack.bootstrap, namespace)
        assert second.proc is not None
        second.proc.kill()
        second.proc.wait()
        workers.remove(second)
        [survivor] = await settled(workers)
        restore = survivor["restore"]
        check_restore_schema(survivor)
        assert restore["rebuilding"] == 0, restore  # every partition had a local store
        assert restore["applied"] == restore["to_apply"] and restore["progress"] == 1.0
        # warm standbys: the takeover read a tail, not the changelogs (~half of `ends`
        # were the killed worker's actives)
        assert restore["to_apply"] * 10 < ends, (restore, ends)
        await check_everything(redis, namespace, first, sc)
    finally:
        for worker in workers[1:]:
            worker.stop()
        code = first.stop()
    assert code == 0, first.tail()
