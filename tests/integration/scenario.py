"""A seeded funnel scenario with its own ground truth, written from the SPEC alone.

The ledger below does not import the product's counting code: it is a second,
independent reading of SPEC §1-§2 (dedup by event_id, first-touch attribution, once per
lead per stage, first purchase per customer, currency conversion rounded half-even to
micro-units), so the test compares two implementations, not one with itself.

Event times are chosen away from window edges, so the expected windows do not depend on
the exact second the check runs: "recent" events are 2-45 minutes old (every window),
"hours" old ones 75 minutes to 22 hours (24 h, 7 d, 30 d), "days" old ones 2 to 6.5 days
(7 d, 30 d) and 8 to 29 days (30 d only), and "far" ones 31 to 34.5 days, inside the
35-day horizon but in no window: counted (in their hourly panes), shown nowhere. Only
events with no order to keep (impressions, clicks, opens, spend) are far: the phases wait
for the sign-ups and purchases of the longest window. One click just past the horizon
and others days past it are dead-lettered ``ts_too_old``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

TOPIC = {
    "impression": "impressions", "click": "clicks", "open": "opens", "signup": "signups",
    "lead_stage": "lead-stages", "purchase": "purchases", "spend": "spend",
}  # fmt: skip
RATES = {
    "USD": Decimal(1),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "JPY": Decimal("0.0067"),
}
CHANNELS = ["email", "paid_search", "paid_social", "display", "video", "affiliate", "organic"]
STAGE_FIELD = {"mql": "mql", "sql": "sql", "opportunity": "opportunities", "won": "won",
               "lost": "lost"}  # fmt: skip
DAY = 86_400.0
# window → events younger than this are in it at check time (ages are drawn away from it)
WINDOW_AGES = {"1h": 3000.0, "24h": 23 * 3600.0, "7d": 6.75 * DAY, "30d": 29.5 * DAY}
WINDOWS = tuple(WINDOW_AGES)
LONGEST = WINDOWS[-1]  # the phases wait on it: it holds every sign-up and purchase
HORIZON = 35 * DAY  # FUNNELPULSE_HORIZON's default
FIELDS = (
    "impressions", "email_impressions", "clicks", "email_clicks", "opens", "signups", "mql",
    "sql", "opportunities", "won", "lost", "purchases", "new_customers", "revenue", "spend",
)  # fmt: skip


def micros(amount: str, currency: str) -> int:
    value = Decimal(amount) * RATES[currency] * 1_000_000
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass
class Message:
    topic_suffix: str
    key: str | None
    value: bytes
    phase: int


@dataclass
class Scenario:
    seed: int
    now: float
    messages: list[Message] = field(default_factory=list)
    # (scope, window of WINDOWS) → field → value; money in micro-units
    truth: dict[tuple[str, str], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    )
    bad_reasons: list[str] = field(default_factory=list)
    purchases_by_phase: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    channels: dict[str, str] = field(default_factory=dict)  # campaign → its one channel
    valid_events: int = 0

    far_events: int = 0  # valid, older than every window: in no window's truth

    def count(self, campaign: str, channel: str, ts: float, deltas: dict[str, int]) -> None:
        age = self.now - ts
        windows = [window for window, limit in WINDOW_AGES.items() if age < limit]
        for scope in ("all", f"channel:{channel}", f"campaign:{campaign}"):
            for window in windows:
                bucket = self.truth[(scope, window)]
                for name, value in deltas.items():
                    bucket[name] += value


def build(seed: int, now: float, target_events: int = 20_000, keying: str = "campaign") -> Scenario:
    """``keying``: "campaign" — each message holds one campaign's events, keyed by it (or
    by lead); "mixed" — what collectors send: batches mix campaigns, are keyed by any of
    them, another campaign, a lead or nothing, and 10 % of the events are re-sent inside
    later batches (a tracker's retry buffer), so copies land on other partitions."""
    rng = random.Random(seed)
    sc = Scenario(seed, now)
    phase_events: dict[int, list[tuple[str, dict[str, Any]]]] = {1: [], 2: [], 3: []}
    serial = iter(range(10**9))

    def ts(far: bool = False) -> float:
        """An event time: ``far`` allows ages beyond every window (within the horizon)."""
        pick = rng.random()
        if pick < 0.8:
            age = rng.uniform(120, 2700)
        elif pick < 0.9:
            age = rng.uniform(4500, 79200)
        elif pick < 0.95:
            age = rng.uniform(2 * DAY, 6.5 * DAY)
        elif pick < 0.99 or not far:
            age = rng.uniform(8 * DAY, 29 * DAY)
        else:
            age = rng.uniform(31 * DAY, 34.5 * DAY)
            sc.far_events += 1
        return round(now - age, 3)

    def eid() -> str:
        return f"e{seed}-{next(serial)}"

    def add(kind: str, doc: dict[str, Any], phase: int = 1) -> None:
        phase_events[phase].append((kind, doc))

    campaigns = [(f"cmp-{i:02d}", CHANNELS[i % len(CHANNELS)]) for i in range(24)]
    sc.channels = dict(campaigns)
    leads: list[tuple[str, str, str]] = []  # lead, campaign, channel
    while sum(len(v) for v in phase_events.values()) < target_events:
        campaign, channel = rng.choice(campaigns)
        base = {
            "campaign_id": campaign,
            "channel": channel.upper() if rng.random() < 0.1 else channel,
        }
        t = ts(far=True)
        n = rng.randint(1, 40)
        add("impression", {**base, "event_id": eid(), "ts": t, "count": n})
        sc.count(
            campaign,
            channel,
            t,
            {"impressions": n, "email_impressions": n if channel == "email" else 0},
        )
        for _ in range(rng.randint(0, 3)):
            t2 = ts(far=True)
            add("click", {**base, "event_id": eid(), "ts": t2})
            sc.count(campaign, channel, t2, {"clicks": 1, "email_clicks": int(channel == "email")})
        if channel == "email" and rng.random() < 0.7:
            t3 = ts(far=True)
            add("open", {**base, "event_id": eid(), "ts": int(t3 * 1000)})  # epoch ms form
            sc.count(campaign, channel, int(t3 * 1000) / 1000, {"opens": 1})
        if rng.random() < 0.25:
            lead = f"lead-{seed}-{next(serial)}"
            t4 = ts()
            add("signup", {**base, "event_id": eid(), "ts": t4, "lead_id": lead})
            sc.count(campaign, channel, t4, {"signups": 1})
            leads.append((lead, campaign, channel))
        if rng.random() < 0.1:
            currency = rng.choice(list(RATES))
            amount = (
                f"{rng.uniform(1, 500):.2f}" if currency != "JPY" else str(rng.randint(100, 90000))
            )
            t5 = ts(far=True)
            amount_field: Any = amount if rng.random() < 0.5 else float(amount)
            add(
                "spend",
                {
                    **base,
                    "event_id": eid(),
                    "ts": t5,
                    "amount": amount_field,
                    "currency": currency.lower() if rng.random() < 0.2 else currency,
                },
            )
            sc.count(campaign, channel, t5, {"spend": micros(amount, currency)})
    _lead_journeys(rng, sc, leads, add, eid, ts)
    _orphans(sc, add, eid, ts)
    for phase, events in phase_events.items():
        sc.valid_events += len(events)
        rng.shuffle(events)  # out of order, late events mixed with fresh ones
        if keying == "mixed":
            _to_mixed_messages(rng, sc, events, phase, [c for c, _ in campaigns])
        else:
            _to_messages(rng, sc, events, phase)
    _bad_messages(rng, sc, now)
    return sc


def _lead_journeys(
    rng: random.Random, sc: Scenario, leads: list[tuple[str, str, str]], add: Any, eid: Any, ts: Any
) -> None:
    for lead, campaign, channel in leads:
        if rng.random() < 0.4:
            continue
        named = (
            rng.random() < 0.5
        )  # named events go in phase 1; anonymous ones need the sign-up first
        phase = 1 if named else 2
        for stage in ("mql", "sql", "opportunity", "won"):
            if stage == "won" and rng.random() < 0.4:
                stage = "lost"
            t = ts()
            doc = {"event_id": eid(), "ts": t, "lead_id": lead, "stage": stage}
            if named:
                doc["campaign_id"] = campaign
                doc["channel"] = channel
            add("lead_stage", doc, phase)
            sc.count(campaign, channel, t, {STAGE_FIELD[stage]: 1})
            if rng.random() < 0.1:  # the same transition reported again: counted once
                add("lead_stage", {**doc, "event_id": eid(), "ts": t}, phase)
            if stage == "lost" or rng.random() < 0.35:
                break
            if stage == "won":
                _purchases(rng, sc, lead, campaign, channel, named, add, eid, ts)


def _purchases(
    rng: random.Random,
    sc: Scenario,
    lead: str,
    campaign: str,
    channel: str,
    named: bool,
    add: Any,
    eid: Any,
    ts: Any,
) -> None:
    customer = f"cust-{lead}"
    for nth in range(rng.randint(1, 3)):
        currency = rng.choice(["USD", "EUR", "GBP"])
        amount = f"{rng.uniform(20, 2000):.2f}"
        t = ts()
        doc = {
            "event_id": eid(),
            "ts": t,
            "lead_id": lead,
            "customer_id": customer,
            "amount": amount,
            "currency": currency,
            "order_id": f"o-{eid()}",
        }
        if named:
            doc["campaign_id"] = campaign
            doc["channel"] = channel
        # A customer's first purchase is the first to arrive: repeats go in phase 3.
        phase = (1 if named else 2) if nth == 0 else 3
        add("purchase", doc, phase)
        sc.purchases_by_phase[phase] += 1
        sc.count(
            campaign,
            channel,
            t,
            {"purchases": 1, "revenue": micros(amount, currency), "new_customers": int(nth == 0)},
        )


def _orphans(sc: Scenario, add: Any, eid: Any, ts: Any) -> None:
    """Funnel events whose lead is unknown: attributed to campaign (none)."""
    for i in range(40):
        t = ts()
        add(
            "lead_stage",
            {
                "event_id": eid(),
                "ts": t,
                "lead_id": f"ghost-{sc.seed}-{i}",
                "stage": "mql",
                "channel": "referral",
            },
            2,
        )
        sc.count("(none)", "referral", t, {"mql": 1})
    for i in range(10):
        t = ts()
        add(
            "purchase",
            {
                "event_id": eid(),
                "ts": t,
                "customer_id": f"walk-in-{sc.seed}-{i}",
                "amount": "99.99",
                "currency": "USD",
            },
            2,
        )
        sc.purchases_by_phase[2] += 1
        sc.count(
            "(none)",
            "other",
            t,
            {"purchases": 1, "revenue": micros("99.99", "USD"), "new_customers": 1},
        )


def _key(doc: dict[str, Any]) -> str | None:
    return doc.get("campaign_id") or doc.get("lead_id") or doc.get("customer_id")


def _to_messages(
    rng: random.Random, sc: Scenario, events: list[tuple[str, dict[str, Any]]], phase: int
) -> None:
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for kind, doc in events:
        groups[(kind, _key(doc))].append(doc)
    for (kind, key), docs in groups.items():
        i = 0
        while i < len(docs):
            size = 1 if rng.random() < 0.3 else rng.randint(2, 60)
            chunk = docs[i : i + size]
            i += size
            if len(chunk) > 1 and rng.random() < 0.05:  # a duplicate inside the batch
                chunk = [*chunk, chunk[0]]
                sc.duplicates += 1
            value = orjson.dumps(chunk[0] if len(chunk) == 1 else chunk)
            sc.messages.append(Message(TOPIC[kind], key, value, phase))
            if rng.random() < 0.03:  # a producer retry: the same message again
                sc.messages.append(Message(TOPIC[kind], key, value, phase))
                sc.duplicates += len(chunk)


def _to_mixed_messages(
    rng: random.Random,
    sc: Scenario,
    events: list[tuple[str, dict[str, Any]]],
    phase: int,
    campaigns: list[str],
) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, doc in events:
        by_kind[kind].append(doc)
    for kind, docs in by_kind.items():
        chunks: list[list[dict[str, Any]]] = []
        i = 0
        while i < len(docs):
            size = 1 if rng.random() < 0.2 else rng.randint(2, 60)
            chunks.append(docs[i : i + size])
            i += size
        retries: list[list[dict[str, Any]]] = [[] for _ in chunks]
        for n, chunk in enumerate(chunks):
            for doc in chunk:
                if rng.random() < 0.1:  # kept in the buffer, sent again in a later batch
                    retries[rng.randint(min(n + 1, len(chunks) - 1), len(chunks) - 1)].append(doc)
                    sc.duplicates += 1
        for chunk, again in zip(chunks, retries, strict=True):
            batch = [*chunk, *again]
            rng.shuffle(batch)
            key = rng.choice([_key(batch[0]), rng.choice(campaigns), None, f"lead-{rng.random()}"])
            value = orjson.dumps(batch[0] if len(batch) == 1 else batch)
            sc.messages.append(Message(TOPIC[kind], key, value, phase))


def _bad_messages(rng: random.Random, sc: Scenario, now: float) -> None:
    good = {"event_id": "bad-x", "ts": now - 600, "campaign_id": "cmp-00", "channel": "email"}
    cases: list[tuple[str, str, Any]] = [
        ("invalid_json", "clicks", b"{not json"),
        ("invalid_utf8", "clicks", b'{"event_id": "\xff\xfe"}'),
        ("not_an_object", "clicks", b"42"),
        ("empty_batch", "clicks", b"[]"),
        ("missing_field", "clicks", {k: v for k, v in good.items() if k != "event_id"}),
        ("missing_field", "signups", {**good}),  # no lead_id
        ("wrong_type", "clicks", {**good, "ts": True}),
        ("invalid_value", "clicks", {**good, "campaign_id": "has spaces"}),
        ("invalid_value", "lead-stages", {**good, "lead_id": "l", "stage": "vip"}),
        ("type_mismatch", "clicks", {**good, "type": "open"}),
        ("invalid_amount", "spend", {**good, "amount": -5, "currency": "USD"}),
        ("invalid_amount", "spend", {**good, "amount": "NaN", "currency": "USD"}),
        ("unknown_currency", "spend", {**good, "amount": 5, "currency": "XXX"}),
        ("invalid_ts", "clicks", {**good, "ts": "yesterday"}),
        ("ts_in_future", "clicks", {**good, "ts": now + 3600}),
        ("ts_too_old", "clicks", {**good, "ts": now - HORIZON - 600}),  # just past it
        ("ts_too_old", "clicks", {**good, "ts": now - HORIZON - 3 * DAY}),
        ("too_large", "clicks", {**good, "user_id": "u", "pad": "x" * 70_000}),
    ]
    for case, (reason, suffix, body) in enumerate(cases):
        for copy in range(3):
            doc = (
                body
                if isinstance(body, bytes)
                else {**body, "event_id": f"bad-{case}-{copy}"}
                if "event_id" in body
                else body
            )
            if isinstance(doc, bytes):
                value = doc
            elif copy == 1:  # a bad event among good ones in a batch
                neighbour = _neighbour(sc, suffix, f"good-next-to-{case}-{reason}", now - 300)
                value = orjson.dumps([doc, neighbour])
            else:
                value = orjson.dumps(doc)
            sc.messages.append(Message(suffix, "cmp-00", value, 1))
            sc.bad_reasons.append(reason)


def _neighbour(sc: Scenario, suffix: str, event_id: str, ts: float) -> dict[str, Any]:
    """A valid event of the topic's own type, counted in the truth."""
    sc.valid_events += 1
    doc: dict[str, Any] = {
        "event_id": event_id,
        "ts": ts,
        "campaign_id": "cmp-00",
        "channel": "email",
    }
    if suffix == "clicks":
        sc.count("cmp-00", "email", ts, {"clicks": 1, "email_clicks": 1})
    elif suffix == "signups":
        doc["lead_id"] = f"lead-{event_id}"
        sc.count("cmp-00", "email", ts, {"signups": 1})
    elif suffix == "lead-stages":
        doc.update(lead_id=f"lead-{event_id}", stage="sql")
        sc.count("cmp-00", "email", ts, {"sql": 1})
    elif suffix == "spend":
        doc.update(amount="1.25", currency="GBP")
        sc.count("cmp-00", "email", ts, {"spend": micros("1.25", "GBP")})
    else:
        raise AssertionError(suffix)
    return doc
