"""One message's events → pane deltas per scope: the per-event hot loop, pure.

All per-event work happens here, in a tight loop over the batch, and produces one
coalesced delta per (scope, pane size, pane start); the caller writes each dirty pane
once. Funnel rules (first-touch attribution, once per stage, first purchase) and event_id
dedup are decided against the stores passed in, which may be plain dicts or Faust tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field

from metrics.counts import INDEX, Counts, zero

from .events import NO_CAMPAIGN, Event, EventType
from .panes import pane_start
from .scopes import scopes_for
from .state import Lead, Marker, Seen, enter_stage, first_sight

PaneKey = tuple[str, int, int]  # (scope, pane size, pane start)

_STAGE_FIELD = {
    "mql": "mql",
    "sql": "sql",
    "opportunity": "opportunities",
    "won": "won",
    "lost": "lost",
}
F = INDEX


DedupRecord = tuple[int, int, int, str, str]  # marker, then the attribution decided then


@dataclass
class Stores:
    dedup: MutableMapping[str, DedupRecord]
    leads: MutableMapping[str, Lead]
    customers: MutableMapping[str, Marker]


@dataclass
class Outcome:
    deltas: dict[PaneKey, Counts] = field(default_factory=dict)
    counted: Counter[tuple[str, str, str]] = field(
        default_factory=Counter
    )  # type, channel, campaign
    money: Counter[tuple[str, str, str]] = field(
        default_factory=Counter
    )  # field, channel, campaign
    duplicates: Counter[str] = field(default_factory=Counter)
    # impressions (with their count) and funnel transitions, per channel and campaign
    impressions: Counter[tuple[str, str]] = field(default_factory=Counter)
    stages: Counter[tuple[str, str, str]] = field(
        default_factory=Counter
    )  # stage, channel, campaign


def count_message(
    events: Iterable[tuple[int, Event]],
    source: tuple[int, int],
    stores: Stores,
    panes: Sequence[int],
) -> Outcome:
    """Counts ``(index, event)`` pairs of the message at ``source`` = (topic index, offset)."""
    outcome = Outcome()
    for index, event in events:
        marker = (source[0], source[1], index)
        identity = f"{event.type}:{event.event_id}"
        known = stores.dedup.get(identity)
        if known is None:
            campaign, channel = _attribute(event, stores)
            stores.dedup[identity] = (*marker, campaign, channel)
        elif tuple(known[:3]) == marker:  # a replay: attributed as the first time
            campaign, channel = known[3], known[4]
        else:
            outcome.duplicates[event.type] += 1
            continue
        vector = _contribution(event, channel, marker, stores)
        outcome.counted[(event.type, channel, campaign)] += 1
        _tally(outcome, event, vector, channel, campaign)
        if event.amount_micros:
            kind = "revenue" if event.type is EventType.PURCHASE else "spend"
            outcome.money[(kind, channel, campaign)] += event.amount_micros
        for scope in scopes_for(campaign, channel):
            for size in panes:
                key = (scope, size, pane_start(event.ts, size))
                total = outcome.deltas.get(key)
                if total is None:
                    outcome.deltas[key] = list(vector)
                else:
                    for i, value in enumerate(vector):
                        total[i] += value
    return outcome


def _tally(outcome: Outcome, event: Event, vector: Counts, channel: str, campaign: str) -> None:
    if event.type is EventType.IMPRESSION:
        outcome.impressions[(channel, campaign)] += event.count
    elif event.type is EventType.LEAD_STAGE:
        field_name = _STAGE_FIELD.get(event.stage or "")
        if field_name and vector[F[field_name]]:
            outcome.stages[(event.stage or "", channel, campaign)] += 1
    elif event.type is EventType.PURCHASE and vector[F["new_customers"]]:
        outcome.stages[("new_customer", channel, campaign)] += 1


def _attribute(event: Event, stores: Stores) -> tuple[str, str]:
    """The (campaign, channel) an event counts for; first touch for anonymous funnel events."""
    if event.type is EventType.SIGNUP:
        assert event.lead_id is not None and event.campaign_id is not None
        lead = stores.leads.get(event.lead_id)
        if lead is None or not lead.campaign:  # first touch wins; stages may have come first
            stages = lead.stages if lead else {}
            stores.leads[event.lead_id] = Lead(event.campaign_id, event.channel, stages)
        return event.campaign_id, event.channel
    if event.campaign_id is not None:
        return event.campaign_id, event.channel
    lead = stores.leads.get(event.lead_id) if event.lead_id else None
    if lead is not None and lead.campaign:
        return lead.campaign, lead.channel
    return NO_CAMPAIGN, event.channel


def _contribution(event: Event, channel: str, marker: Marker, stores: Stores) -> Counts:
    vector = zero()
    kind = event.type
    email = channel == "email"
    if kind is EventType.IMPRESSION:
        vector[F["impressions"]] = event.count
        if email:
            vector[F["email_impressions"]] = event.count
    elif kind is EventType.CLICK:
        vector[F["clicks"]] = 1
        if email:
            vector[F["email_clicks"]] = 1
    elif kind is EventType.OPEN:
        vector[F["opens"]] = 1
    elif kind is EventType.SIGNUP:
        vector[F["signups"]] = 1
    elif kind is EventType.LEAD_STAGE:
        _count_stage(event, marker, stores, vector)
    elif kind is EventType.PURCHASE:
        vector[F["purchases"]] = 1
        vector[F["revenue"]] = event.amount_micros
        customer = event.customer_id
        if customer and first_sight(stores.customers, customer, marker) is not Seen.DUPLICATE:
            vector[F["new_customers"]] = 1
    else:
        vector[F["spend"]] = event.amount_micros
    return vector


def _count_stage(event: Event, marker: Marker, stores: Stores, vector: Counts) -> None:
    assert event.lead_id is not None and event.stage is not None
    lead = stores.leads.get(event.lead_id)
    if lead is None:  # a stage before its sign-up: unattributed ("") until the sign-up comes
        lead = Lead("", "")
    seen = enter_stage(lead, event.stage, marker)
    stores.leads[event.lead_id] = lead  # write back: table stores need the assignment
    field_name = _STAGE_FIELD.get(event.stage)
    if field_name and seen is not Seen.DUPLICATE:
        vector[F[field_name]] = 1
