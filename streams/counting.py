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

from metrics.counts import INDEX, Counts, add_into, zero
from metrics.scopes import scopes_for
from metrics.windows import pane_start

from .dedup import MessageDedup
from .events import FUNNEL_TYPES, NO_CAMPAIGN, Event, EventType
from .id_index import Marker, identity_digest, pack_marker
from .pane_groups import PaneKey
from .state import Lead, Seen, enter_stage, first_sight

_STAGE_FIELD = {
    "mql": "mql",
    "sql": "sql",
    "opportunity": "opportunities",
    "won": "won",
    "lost": "lost",
}
F = INDEX
Contribution = list[tuple[int, int]]  # sparse: (field index, amount)
_IMPRESSIONS, _EMAIL_IMPRESSIONS = F["impressions"], F["email_impressions"]
_CLICK: Contribution = [(F["clicks"], 1)]
_EMAIL_CLICK: Contribution = [(F["clicks"], 1), (F["email_clicks"], 1)]
_OPEN: Contribution = [(F["opens"], 1)]
_SIGNUP: Contribution = [(F["signups"], 1)]


@dataclass
class Stores:
    dedup: MessageDedup
    leads: MutableMapping[str, Lead]
    customers: MutableMapping[str, Marker]


@dataclass
class Outcome:
    deltas: dict[PaneKey, Counts] = field(default_factory=dict)
    # per pane, the offset of the last message that touched it: the pane's replay mark
    last_offsets: dict[PaneKey, int] = field(default_factory=dict)
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


def identity(event: Event) -> str:
    """What makes two events "the same event" for dedup.

    A funnel event is its type and id, met at its lead's owner. A campaign-counted event
    adds its campaign: copies are deduplicated at the campaign's home partition, so the
    same id under two campaigns meets two indexes whenever the campaigns live apart, and
    would be one event or two depending on the partition count. With the campaign in
    the identity it is always two (README, "Message keys").
    """
    if event.type in FUNNEL_TYPES:
        return f"{event.type}:{event.event_id}"
    return f"{event.type}:{event.campaign_id}:{event.event_id}"


def count_message(
    events: Iterable[tuple[int, Event]],
    source: tuple[int, int],
    stores: Stores,
    panes: Sequence[int],
) -> Outcome:
    """Counts ``(index, event)`` pairs of the message at ``source`` = (topic index, offset)."""
    topic, offset = source
    return count_events((((topic, offset, i), e) for i, e in events), stores, panes)


def count_events(
    events: Iterable[tuple[Marker, Event]],
    stores: Stores,
    panes: Sequence[int],
) -> Outcome:
    """Counts events, each with the marker of its place in its source message.

    Events are first summed per (campaign, channel, finest pane) cell — a batch of a
    hundred events usually touches a handful — and only the cells are spread over the
    scopes and coarser panes: the per-event cost does not grow with scopes or windows.
    (Coarser pane sizes are multiples of the finest, so a cell's start places it.)
    """
    outcome = Outcome()
    fine = panes[0]
    cells: dict[tuple[str, str, int], Counts] = {}
    cell_last: dict[tuple[str, str, int], int] = {}  # events come in offset order
    dedup = stores.dedup
    events = list(events)
    digests = [identity_digest(identity(event)) for _marker, event in events]
    dedup.prefetch(digests)  # one read of the index for the message (on disk: a multi-get)
    for (marker, event), digest in zip(events, digests, strict=True):
        known = dedup.get(digest)
        if known is None:
            campaign, channel = _attribute(event, stores)
            # only an attribution not read from the event itself needs remembering
            own = event.campaign_id is not None
            dedup.add(digest, marker, None if own else (campaign, channel))
        elif known == pack_marker(marker):  # a replay: attributed as the first time
            attribution = dedup.attribution(digest)
            if attribution is None:  # the event's own campaign, as at its first sighting
                campaign, channel = event.campaign_id or NO_CAMPAIGN, event.channel
            else:
                campaign, channel = attribution
        else:
            outcome.duplicates[event.type] += 1
            continue
        contribution = _contribution(event, channel, marker, stores)
        outcome.counted[(event.type, channel, campaign)] += 1
        _tally(outcome, event, contribution, channel, campaign)
        cell_key = (campaign, channel, int(event.ts // fine) * fine)
        cell = cells.get(cell_key)
        if cell is None:
            cell = cells[cell_key] = zero()
        cell_last[cell_key] = marker[1]
        for i, value in contribution:
            cell[i] += value
    deltas, last_offsets = outcome.deltas, outcome.last_offsets
    for cell_key, cell in cells.items():
        campaign, channel, start = cell_key
        last = cell_last[cell_key]
        for scope in scopes_for(campaign, channel):
            for size in panes:
                key = (scope, size, start if size == fine else pane_start(start, size))
                total = deltas.get(key)
                if total is None:
                    deltas[key] = list(cell)
                    last_offsets[key] = last
                else:
                    add_into(total, cell)
                    if last > last_offsets[key]:
                        last_offsets[key] = last
    return outcome


def _tally(
    outcome: Outcome, event: Event, contribution: Contribution, channel: str, campaign: str
) -> None:
    if event.type is EventType.IMPRESSION:
        outcome.impressions[(channel, campaign)] += event.count
    elif event.type is EventType.LEAD_STAGE:
        if contribution and event.stage in _STAGE_FIELD:
            outcome.stages[(event.stage or "", channel, campaign)] += 1
    elif event.type is EventType.PURCHASE and (F["new_customers"], 1) in contribution:
        outcome.stages[("new_customer", channel, campaign)] += 1
    if event.amount_micros:
        kind = "revenue" if event.type is EventType.PURCHASE else "spend"
        outcome.money[(kind, channel, campaign)] += event.amount_micros


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


def _contribution(event: Event, channel: str, marker: Marker, stores: Stores) -> Contribution:
    """The (field index, amount) pairs one event adds to its cell."""
    kind = event.type
    if kind is EventType.IMPRESSION:
        if channel == "email":
            return [(_IMPRESSIONS, event.count), (_EMAIL_IMPRESSIONS, event.count)]
        return [(_IMPRESSIONS, event.count)]
    if kind is EventType.CLICK:
        return _EMAIL_CLICK if channel == "email" else _CLICK
    if kind is EventType.OPEN:
        return _OPEN
    if kind is EventType.SIGNUP:
        return _SIGNUP
    if kind is EventType.LEAD_STAGE:
        return _count_stage(event, marker, stores)
    if kind is EventType.PURCHASE:
        pairs = [(F["purchases"], 1), (F["revenue"], event.amount_micros)]
        customer = event.customer_id
        if customer and first_sight(stores.customers, customer, marker) is not Seen.DUPLICATE:
            pairs.append((F["new_customers"], 1))
        return pairs
    return [(F["spend"], event.amount_micros)]


def _count_stage(event: Event, marker: Marker, stores: Stores) -> Contribution:
    assert event.lead_id is not None and event.stage is not None
    lead = stores.leads.get(event.lead_id)
    if lead is None:  # a stage before its sign-up: unattributed ("") until the sign-up comes
        lead = Lead("", "")
    seen = enter_stage(lead, event.stage, marker)
    stores.leads[event.lead_id] = lead  # write back: table stores need the assignment
    field_name = _STAGE_FIELD.get(event.stage)
    if field_name and seen is not Seen.DUPLICATE:
        return [(F[field_name], 1)]
    return []
