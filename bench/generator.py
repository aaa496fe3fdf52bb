"""Seeded benchmark data: N events over ~1,000 Zipf-weighted campaigns, all event types.

The same event sequence is written in up to three forms, each to its own seven input
topics (``<prefix><form>.<suffix>``, 4 partitions): ``single`` (one JSON event per
message, keyed by campaign), ``batch`` (JSON arrays of up to 100 events of one type and
one campaign, keyed by it) and ``mixed`` (arrays of up to 100 events of one type from
any campaigns, in the order they happened, keyed by the first one's campaign: what a
collector sends; most events arrive away from their campaign's partition). Every event
is valid for funnelpulse, carries a campaign, and has an event
time within the last ``span_s`` seconds (also the Kafka record timestamp). The ground
truth (counts per type, per campaign, messages per form, and every KPI count per
(campaign, channel) cell, recounted here from SPEC §2 without the product's code) is
returned for exactness checks.

``memory_messages`` makes the memory phase's data instead: many campaigns, each with
events in every coarse pane of the last 24 h and every minute of the last hour.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from funnelpulse.settings import Settings
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
STAGE_FIELD = {"mql": "mql", "sql": "sql", "opportunity": "opportunities", "won": "won",
               "lost": "lost"}  # fmt: skip
FORMS = ("single", "batch", "mixed")
# The worker runs with the default exchange rates: the recount converts with the same table.
FX_RATES: dict[str, Decimal] = dict(Settings().fx_rates)


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
    # (campaign, channel) → KPI counts (money in micro-units of the reporting currency)
    cells: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    def add(self, kind: EventType, campaign: str, doc: dict[str, Any]) -> None:
        """Counts one generated event, by type and into its cell's KPI counts."""
        self.events += 1
        self.by_type[kind.value] += 1
        self.by_campaign[campaign] += 1
        channel = doc["channel"]
        cell = self.cells.get((campaign, channel))
        if cell is None:
            cell = self.cells[(campaign, channel)] = Counter()
        recount(cell, kind, doc)

    def update(self, other: GroundTruth) -> None:
        """Adds ``other``'s events (data written in several parts to the same topics)."""
        self.events += other.events
        self.by_type.update(other.by_type)
        self.by_campaign.update(other.by_campaign)
        for form, n in other.messages.items():
            self.messages[form] = self.messages.get(form, 0) + n
        for cell, counts in other.cells.items():
            self.cells.setdefault(cell, Counter()).update(counts)

    def scopes(self) -> dict[str, Counter[str]]:
        """Every scope's counts over all events: ``all``, ``channel:*``, ``campaign:*``."""
        out: dict[str, Counter[str]] = {}
        for (campaign, channel), cell in self.cells.items():
            for scope in ("all", f"channel:{channel}", f"campaign:{campaign}"):
                out.setdefault(scope, Counter()).update(cell)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "by_type": dict(self.by_type),
            "by_campaign": dict(self.by_campaign),
            "messages": self.messages,
        }


def micros(amount: float, currency: str) -> int:
    exact = Decimal(repr(amount)) * FX_RATES[currency] * 1_000_000
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def recount(cell: Counter[str], kind: EventType, doc: dict[str, Any]) -> None:
    """SPEC §2 for the events this generator makes: every (lead, stage) and every
    customer occurs once, and every event names its campaign."""
    email = doc["channel"] == "email"
    if kind is EventType.IMPRESSION:
        n = doc.get("count", 1)
        cell["impressions"] += n
        if email:
            cell["email_impressions"] += n
    elif kind is EventType.CLICK:
        cell["clicks"] += 1
        if email:
            cell["email_clicks"] += 1
    elif kind is EventType.OPEN:
        cell["opens"] += 1
    elif kind is EventType.SIGNUP:
        cell["signups"] += 1
    elif kind is EventType.LEAD_STAGE:
        cell[STAGE_FIELD[doc["stage"]]] += 1
    elif kind is EventType.PURCHASE:
        cell["purchases"] += 1
        cell["new_customers"] += 1
        cell["revenue"] += micros(doc["amount"], doc["currency"])
    else:
        cell["spend"] += micros(doc["amount"], doc["currency"])


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
    bootstrap: str, prefix: str, forms: list[str], spec: DataSpec, now: float | None = None,
    *, batch_copies: list[dict[EventType, str]] | None = None,
) -> GroundTruth:  # fmt: skip
    """Generates the events once and writes them in every form asked; topics must exist.
    ``batch_copies``: the batch form goes to each of these topic sets instead (the same
    messages for several workers that must not share their input topics' consumers);
    ``truth.messages["batch"]`` counts one copy."""
    truth = GroundTruth()
    producer = _producer(bootstrap)
    await producer.start()
    try:
        sinks = {form: _Sink(producer, spec.partitions) for form in forms}
        topics = {form: topic_names(prefix, form) for form in forms}
        copies = (batch_copies or [topics["batch"]]) if "batch" in forms else []
        buffers: dict[tuple[EventType, str], list[dict[str, Any]]] = {}
        for kind, campaign, doc in generate(spec, time.time() if now is None else now):
            truth.add(kind, campaign, doc)
            ts_ms = int(doc["ts"] * 1000)
            if "single" in sinks:
                await sinks["single"].add(
                    topics["single"][kind], campaign.encode(), orjson.dumps(doc), ts_ms
                )
            if "batch" in sinks:
                buf = buffers.setdefault((kind, campaign), [])
                buf.append(doc)
                if len(buf) >= spec.batch_size:
                    await _add_copies(sinks["batch"], [c[kind] for c in copies], buf)
            if "mixed" in sinks:
                buf = buffers.setdefault((kind, ""), [])
                buf.append(doc)
                if len(buf) >= spec.batch_size:
                    await _add_buffer(sinks["mixed"], topics["mixed"][kind], buf)
        for (kind, campaign), buf in buffers.items():
            if buf and campaign == "":
                await _add_buffer(sinks["mixed"], topics["mixed"][kind], buf)
            elif buf:
                await _add_copies(sinks["batch"], [c[kind] for c in copies], buf)
        for form, sink in sinks.items():
            await sink.close()
            truth.messages[form] = sink.messages // (len(copies) if form == "batch" else 1)
        await producer.flush()
    finally:
        await producer.stop()
    return truth


async def _add_buffer(sink: _Sink, topic: str, buf: list[dict[str, Any]]) -> None:
    """One batch message of the buffered events, keyed by the first one's campaign."""
    key = str(buf[0]["campaign_id"]).encode()
    await sink.add(topic, key, orjson.dumps(buf), int(buf[-1]["ts"] * 1000))
    buf.clear()


async def _add_copies(sink: _Sink, topics: list[str], buf: list[dict[str, Any]]) -> None:
    """One batch message of the buffered events to each of ``topics``."""
    key = str(buf[0]["campaign_id"]).encode()
    value, ts_ms = orjson.dumps(buf), int(buf[-1]["ts"] * 1000)
    for topic in topics:
        await sink.add(topic, key, value, ts_ms)
    buf.clear()


def _producer(bootstrap: str) -> AIOKafkaProducer:
    """Idempotent, so a retried send (e.g. NotLeaderForPartition right after the topics
    were made) never writes a message twice and the ground truth stays exact."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=50, max_batch_size=900_000,
                            max_request_size=1_048_576)  # fmt: skip


# -- the memory phase's data ---------------------------------------------------------------
MEMORY_TYPES: dict[EventType, float] = {
    k: w for k, w in TYPE_MIX.items() if k not in (EventType.LEAD_STAGE, EventType.PURCHASE)
}


@dataclass(frozen=True)
class MemorySpec:
    """Every campaign gets one event in each coarse pane of the last ``span_s`` seconds
    that is older than the fine part, and one in each minute of the last ``fine_minutes``:
    every pane a 24 h history can hold is occupied, with the fewest events that do it."""

    campaigns: int = 10_000
    seed: int = 20250502
    span_s: int = 86_400
    coarse_s: int = 900
    fine_minutes: int = 60
    batch_size: int = 100
    partitions: int = 4

    def event_times(self, now: float, rng: random.Random) -> list[float]:
        fine_from = now - self.fine_minutes * 60
        first = (int(now - self.span_s) // self.coarse_s + 1) * self.coarse_s
        coarse = [
            start + rng.uniform(0, self.coarse_s - 1)
            for start in range(first, int(fine_from) // self.coarse_s * self.coarse_s,
                               self.coarse_s)
        ]  # fmt: skip
        minute0 = (int(fine_from) // 60 + 1) * 60
        fine = [minute0 + m * 60 + rng.uniform(0, 59) for m in range(self.fine_minutes)]
        return [round(min(t, now - 1), 3) for t in coarse + fine]

    @property
    def events_per_campaign(self) -> int:
        return len(self.event_times(time.time(), random.Random(0)))


def memory_messages(
    spec: MemorySpec, now: float, truth: GroundTruth
) -> Iterator[tuple[EventType, str, list[dict[str, Any]]]]:
    """(type, campaign, batch of ≤ ``batch_size`` events of that campaign and type)."""
    rng = random.Random(spec.seed)
    kinds, weights = list(MEMORY_TYPES), list(MEMORY_TYPES.values())
    for c in range(spec.campaigns):
        campaign = f"mem-{c:05d}"
        channel = CHANNELS[c % len(CHANNELS)]
        by_kind: dict[EventType, list[dict[str, Any]]] = {}
        times = spec.event_times(now, rng)
        picks = rng.choices(kinds, weights, k=len(times))
        for i, (kind, ts) in enumerate(zip(picks, times, strict=True)):
            doc: dict[str, Any] = {"event_id": f"m{spec.seed}-{c}-{i}", "ts": ts,
                                   "campaign_id": campaign, "channel": channel}  # fmt: skip
            if kind is EventType.IMPRESSION:
                doc["count"] = rng.randint(20, 60)
            elif kind is EventType.CLICK:
                doc["user_id"] = f"u{rng.getrandbits(40):x}"
            elif kind is EventType.SIGNUP:
                doc["lead_id"] = f"ml{spec.seed}-{c}-{i}"
            else:
                doc.update(amount=round(rng.uniform(1, 200), 2), currency="USD")
            truth.add(kind, campaign, doc)
            by_kind.setdefault(kind, []).append(doc)
        for kind, docs in by_kind.items():
            for i in range(0, len(docs), spec.batch_size):
                yield kind, campaign, docs[i : i + spec.batch_size]


async def preload_memory(bootstrap: str, topics: dict[EventType, str], spec: MemorySpec,
                         now: float | None = None) -> GroundTruth:  # fmt: skip
    """Writes the memory phase's batches (keyed by campaign); topics must exist."""
    truth = GroundTruth()
    producer = _producer(bootstrap)
    await producer.start()
    try:
        sink = _Sink(producer, spec.partitions)
        for kind, campaign, docs in memory_messages(spec, time.time() if now is None else now,
                                                    truth):  # fmt: skip
            await sink.add(topics[kind], campaign.encode(), orjson.dumps(docs),
                           int(docs[-1]["ts"] * 1000))  # fmt: skip
        await sink.close()
        truth.messages["batch"] = sink.messages
        await producer.flush()
    finally:
        await producer.stop()
    return truth
