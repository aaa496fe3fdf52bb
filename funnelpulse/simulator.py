"""Realistic funnel traffic: impressions ≫ clicks ≫ sign-ups ≫ stages ≫ purchases.

Seeded, so a run can be repeated exactly. Campaigns span the channels with their own
rates; e-mail campaigns also produce opens; leads advance through the stages over time
(some stage and purchase events carry no campaign_id, to exercise attribution); spend
is reported per campaign every few seconds. Events go out as JSON-array batches keyed by
campaign, the cheap form, unless ``single`` asks for one event per message.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.events import EventType

CHANNELS = ("email", "paid_search", "paid_social", "display", "video", "affiliate")
Emit = Callable[[EventType, dict[str, Any]], None]
_Batches = dict[tuple[EventType, str], list[dict[str, Any]]]


@dataclass
class Campaign:
    campaign_id: str
    channel: str
    ctr: float
    conversion: float
    cpc: float
    currency: str
    accrued: float = 0.0


@dataclass
class FunnelModel:
    seed: int
    campaigns_count: int = 12
    rng: random.Random = field(init=False)
    campaigns: list[Campaign] = field(init=False)
    leads: list[tuple[str, str, int]] = field(default_factory=list)  # lead_id, campaign, stage

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        currencies = ("USD", "USD", "EUR", "GBP")
        self.campaigns = [
            Campaign(
                f"{ch}-{i:03d}",
                ch,
                self.rng.uniform(0.01, 0.06),
                self.rng.uniform(0.05, 0.2),
                self.rng.uniform(0.3, 2.5),
                currencies[i % len(currencies)],
            )
            for i, ch in ((i, CHANNELS[i % len(CHANNELS)]) for i in range(self.campaigns_count))
        ]

    def _id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def step(self, now: float, emit: Emit) -> None:
        """One impression batch for a campaign and what follows from it."""
        c = self.rng.choice(self.campaigns)
        base = {"ts": round(now, 3), "campaign_id": c.campaign_id, "channel": c.channel}
        shown = self.rng.randint(20, 60)
        emit(EventType.IMPRESSION, {**base, "event_id": self._id(), "count": shown})
        clicks = sum(1 for _ in range(shown) if self.rng.random() < c.ctr)
        if c.channel == "email":
            for _ in range(sum(1 for _ in range(shown) if self.rng.random() < 0.25)):
                emit(EventType.OPEN, {**base, "event_id": self._id()})
        for _ in range(clicks):
            emit(EventType.CLICK, {**base, "event_id": self._id(), "user_id": self._id()[:12]})
            c.accrued += c.cpc
            if self.rng.random() < c.conversion:
                lead = self._id()[:16]
                emit(EventType.SIGNUP, {**base, "event_id": self._id(), "lead_id": lead})
                self.leads.append((lead, c.campaign_id, 0))
        self._advance_leads(now, emit)

    def _advance_leads(self, now: float, emit: Emit) -> None:
        stages = ("mql", "sql", "opportunity", "won")
        keep = []
        for lead, campaign, stage in self.leads:
            if self.rng.random() > 0.05:
                keep.append((lead, campaign, stage))
                continue
            if self.rng.random() > (0.6, 0.45, 0.5, 0.4)[stage]:
                if stage >= 2:
                    emit(EventType.LEAD_STAGE, self._stage(now, lead, campaign, "lost"))
                continue
            emit(EventType.LEAD_STAGE, self._stage(now, lead, campaign, stages[stage]))
            if stages[stage] == "won":
                emit(
                    EventType.PURCHASE,
                    {
                        "event_id": self._id(),
                        "ts": round(now, 3),
                        "lead_id": lead,
                        "customer_id": f"cust-{lead}",
                        "amount": round(self.rng.uniform(50, 900), 2),
                        "currency": "USD",
                    },
                )
            else:
                keep.append((lead, campaign, stage + 1))
        self.leads = keep[-20_000:]

    def _stage(self, now: float, lead: str, campaign: str, stage: str) -> dict[str, Any]:
        doc = {"event_id": self._id(), "ts": round(now, 3), "lead_id": lead, "stage": stage}
        if self.rng.random() < 0.5:  # half name their campaign; the rest rely on attribution
            doc["campaign_id"] = campaign
        return doc

    def spend_reports(self, now: float, emit: Emit) -> None:
        rates = {"USD": 1.0, "EUR": 1 / 1.08, "GBP": 1 / 1.27}
        for c in self.campaigns:
            if c.accrued > 0:
                amount = round(c.accrued * rates[c.currency], 2)
                emit(
                    EventType.SPEND,
                    {
                        "event_id": self._id(),
                        "ts": round(now, 3),
                        "campaign_id": c.campaign_id,
                        "channel": c.channel,
                        "amount": amount,
                        "currency": c.currency,
                    },
                )
                c.accrued = 0.0


async def simulate(
    bootstrap: str,
    topics: Mapping[EventType, str],
    rate: float,
    seed: int,
    duration: float | None,
    single: bool,
    campaigns: int,
    report: Callable[[int, float], None],
    limit: int | None = None,
    client: Mapping[str, Any] | None = None,
) -> int:
    """Produces about ``rate`` events/s until ``duration`` passes or ``limit`` events
    are sent; returns the count sent."""
    model = FunnelModel(seed, campaigns)
    # ``client``: credentials and TLS (funnelpulse.security.kafka_client_kwargs)
    options = {**(client or {}), "bootstrap_servers": bootstrap}
    producer = AIOKafkaProducer(**options, linger_ms=20, acks="all")
    await producer.start()
    sent, started, last_spend = 0, time.time(), 0.0
    try:
        while (duration is None or time.time() - started < duration) and (
            limit is None or sent < limit
        ):
            tick = time.time()
            batches: dict[tuple[EventType, str], list[dict[str, Any]]] = defaultdict(list)

            def emit(kind: EventType, doc: dict[str, Any], batches: _Batches = batches) -> None:
                batches[(kind, str(doc.get("campaign_id", doc.get("lead_id", ""))))].append(doc)

            target = int(rate * 0.1) if limit is None else min(int(rate * 0.1), limit - sent)
            produced = 0
            while produced < target:
                before = sum(len(v) for v in batches.values())
                model.step(tick, emit)
                produced += sum(len(v) for v in batches.values()) - before
            if tick - last_spend >= 2.0:
                model.spend_reports(tick, emit)
                last_spend = tick
            for (kind, key), docs in batches.items():
                topic = topics[kind]
                payloads = [orjson.dumps(d) for d in docs] if single else [orjson.dumps(docs)]
                for payload in payloads:
                    await producer.send(topic, payload, key=key.encode())
                sent += len(docs)
            report(sent, time.time() - started)
            await asyncio.sleep(max(0.0, 0.1 - (time.time() - tick)))
        await producer.flush()
    finally:
        await producer.stop()
    return sent
