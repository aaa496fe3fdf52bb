"""The ceiling: raw aiokafka ``getmany`` + orjson + per-minute counts per scope in a dict.

Offsets are committed after each ``getmany`` batch is counted (at-least-once), so the
harness can read the end of the drain from the group's lag like any other system's.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from bench.child import Reporter, load_config


async def drain() -> None:
    cfg = load_config()
    reporter = Reporter(cfg)
    type_of = {topic: kind for kind, topic in cfg["topics"].items()}
    consumer = AIOKafkaConsumer(
        *type_of,
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    counts: Counter[tuple[str, str, int]] = Counter()  # (type, scope, minute) -> events
    messages = events = 0
    expected = int(cfg["expected_messages"])
    partial = False
    await consumer.start()
    try:
        while messages < expected:
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, records in batches.items():
                if not records:
                    continue
                reporter.first()
                kind = type_of[tp.topic]
                for record in records:
                    doc = orjson.loads(record.value or b"")
                    for ev in doc if isinstance(doc, list) else (doc,):
                        minute = int(ev["ts"] // 60)
                        counts[(kind, "all", minute)] += 1
                        counts[(kind, "channel:" + ev["channel"], minute)] += 1
                        counts[(kind, "campaign:" + ev["campaign_id"], minute)] += 1
                        events += 1
                    messages += 1
            if batches:
                await consumer.commit()
            if reporter.tick(messages, events):
                partial = True
                break
        by_type: Counter[str] = Counter()
        for (kind, scope, _), n in counts.items():
            if scope == "all":
                by_type[kind] += n
        reporter.done(messages, events, partial, by_type=dict(by_type), keys=len(counts))
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(drain())
