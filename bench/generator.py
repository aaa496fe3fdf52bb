"""Seeded benchmark data: N events over ~1,000 Zipf-weighted campaigns, all event types.

The same event sequence is written in two forms, each to its own seven input topics
(``<prefix><form>.<suffix>``, 4 partitions, keyed by campaign): ``single`` (one JSON
event per message) and ``batch`` (JSON arrays of up to 100 events of one type and one
campaign). Every event is valid for funnelpulse, carries a campaign, and has an event
time within the last ``span_s`` seconds (also the Kafka record timestamp). The ground
truth (counts per type, per campaign, messages per form) is returned for exactness checks.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.events import TOPIC_SUFFIX, EventType

CHANNELS = ("email", "paid_search", "paid_social", "display", "video", "affiliate")
# Share of events by type: impressions (each carrying a count of 20-60) dominate, then
# clicks and e-mail opens; the funnel thins out through sign-ups, lead stages, purchases.
TYPE_MIX: dict[EventType, float] = {
    EventType.IMPRESSION: 0.50,
    EventType.CLICK: 0.18,
    EventType.OPEN: 0.14,
    EventType.SIGNUP: 0.06,
    EventType.LEAD_STAGE: 0.06,
    EventType.PURCHASE: 0.01,
    EventType.SPEND: 0.05,
}
NEXT_STAGE = {"lead": "mql", "mql": "sql", "sql": "opportunity", "opportunity": "won"}
FORMS = ("single", "batch")


@dataclass(frozen=True)
class DataSpec:
    events: int = 1_000_000
    campaigns: int = 1_000
    seed: int = 20250501
    zipf_s: float = 1.1
    span_s: float = 3600.0
    batch_size: int = 100
    partitions: int = 4


@dataclass
class GroundTruth:
    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_campaign: Counter[str] = field(default_factory=Counter)
    messages: dict[str, int] = field(default_factory=dict)  # per form

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "by_type": dict(self.by_type),
            "by_campaign": dict(self.by_campaign),
            "messages": self.messages,
        }


def topic_names(prefix: str, form: str) -> dict[EventType, str]:
    return {kind: f"{prefix}{form}.{suffix}" for kind, suffix in TOPIC_SUFFIX.items()}


def zipf_cum_weights(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, n + 1)))


def generate(spec: DataSpec, now: float) -> Iterator[tuple[EventType, str, dict[str, Any]]]:
    """(type, campaign_id, event) for ``spec.events`` events, event times increasing."""
    rng = random.Random(spec.seed)
    names = [f"cmp-{i:04d}" for i in range(spec.campaigns)]
    channels = [rng.choice(CHANNELS) for _ in names]
    channels[0] = "email"  # the busiest campaign is an e-mail one, so opens are plentiful
    email = [i for i, ch in enumerate(channels) if ch == "email"]
    n = spec.events
    picks = rng.choices(
        range(spec.campaigns), cum_weights=zipf_cum_weights(spec.campaigns, spec.zipf_s), k=n
    )
    email_picks = rng.choices(email, cum_weights=zipf_cum_weights(len(email), spec.zipf_s), k=n)
    kinds = rng.choices(list(TYPE_MIX), weights=list(TYPE_MIX.values()), k=n)
    leads: deque[tuple[str, int, str]] = deque(maxlen=50_000)  # lead_id, campaign, stage
    start, step = now - spec.span_s, spec.span_s / max(n, 1)
    for i in range(n):
        kind = kinds[i]
        c = email_picks[i] if kind is EventType.OPEN else picks[i]
        if kind is EventType.LEAD_STAGE or kind is EventType.PURCHASE:
            if leads:
                lead, c, stage = leads.popleft()
            else:
                kind, lead, stage = EventType.SIGNUP, "", "lead"
        doc: dict[str, Any] = {
            "event_id": f"e{spec.seed}-{i}",
            "ts": round(start + i * step, 3),
            "campaign_id": names[c],
            "channel": channels[c],
        }
        if kind is EventType.IMPRESSION:
            doc["count"] = rng.randint(20, 60)
        elif kind is EventType.CLICK:
            doc["user_id"] = f"u{rng.getrandbits(40):x}"
        elif kind is EventType.SIGNUP:
            doc["lead_id"] = f"l{spec.seed}-{i}"
            leads.append((doc["lead_id"], c, "lead"))
        elif kind is EventType.LEAD_STAGE:
            nxt = NEXT_STAGE.get(stage, "won") if rng.random() < 0.8 else "lost"
            doc.update(lead_id=lead, stage=nxt)
            if nxt not in ("won", "lost"):
                leads.append((lead, c, nxt))
        elif kind is EventType.PURCHASE:
            doc.update(lead_id=lead, customer_id=f"cust-{lead}", currency="USD",
                       amount=round(rng.uniform(20, 900), 2))  # fmt: skip
        elif kind is EventType.SPEND:
            doc.update(amount=round(rng.uniform(1, 200), 2), currency=rng.choice(("USD", "EUR")))
        yield kind, names[c], doc


class _Sink:
    """Per (topic, partition) record batches, sent whole with ``send_batch``."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer = producer
        self.partitions = list(range(partitions))
        self.partitioner = DefaultPartitioner()
        self.batches: dict[tuple[str, int], Any] = {}
        self.pending: list[asyncio.Future[Any]] = []
        self.messages = 0
        self._partition_of: dict[bytes, int] = {}

    async def add(self, topic: str, key: bytes, value: bytes, ts_ms: int) -> None:
        partition = self._partition_of.get(key)
        if partition is None:
            partition = self.partitioner(key, self.partitions, self.partitions)
            self._partition_of[key] = partition
        slot = (topic, partition)
        batch = self.batches.get(slot)
        if batch is None:
            batch = self.batches[slot] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=ts_ms) is None:
            await self._send(slot)
            batch = self.batches[slot] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=ts_ms)
        self.messages += 1

    async def _send(self, slot: tuple[str, int]) -> None:
        batch = self.batches.pop(slot)
        self.pending.append(await self.producer.send_batch(batch, slot[0], partition=slot[1]))
        if len(self.pending) >= 64:
            await asyncio.gather(*self.pending)
            self.pending.clear()

    async def close(self) -> None:
        for slot in list(self.batches):
            await self._send(slot)
        await asyncio.gather(*self.pending)
        self.pending.clear()


async def preload(
    bootstrap: str, prefix: str, forms: list[str], spec: DataSpec, now: float | None = None
) -> GroundTruth:
    """Generates the events once and writes them in every form asked; topics must exist."""
    truth = GroundTruth()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=50,
                                max_batch_size=900_000, max_request_size=1_048_576)  # fmt: skip
    await producer.start()
    try:
        sinks = {form: _Sink(producer, spec.partitions) for form in forms}
        topics = {form: topic_names(prefix, form) for form in forms}
        buffers: dict[tuple[EventType, str], list[dict[str, Any]]] = {}
        for kind, campaign, doc in generate(spec, time.time() if now is None else now):
            truth.events += 1
            truth.by_type[kind.value] += 1
            truth.by_campaign[campaign] += 1
            ts_ms = int(doc["ts"] * 1000)
            if "single" in sinks:
                await sinks["single"].add(
                    topics["single"][kind], campaign.encode(), orjson.dumps(doc), ts_ms
                )
            if "batch" in sinks:
                buf = buffers.setdefault((kind, campaign), [])
                buf.append(doc)
                if len(buf) >= spec.batch_size:
                    await sinks["batch"].add(
                        topics["batch"][kind], campaign.encode(), orjson.dumps(buf), ts_ms
                    )
                    buf.clear()
        if "batch" in sinks:
            for (kind, campaign), buf in buffers.items():
                if buf:
                    ts_ms = int(buf[-1]["ts"] * 1000)
                    await sinks["batch"].add(
                        topics["batch"][kind], campaign.encode(), orjson.dumps(buf), ts_ms
                    )
        for form, sink in sinks.items():
            await sink.close()
            truth.messages[form] = sink.messages
        await producer.flush()
    finally:
        await producer.stop()
    return truth
