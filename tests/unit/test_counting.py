"""One message's events → pane deltas per scope; funnel rules; dedup and replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metrics.counts import COUNT_FIELDS, INDEX, Counts, summed, zero
from streams.counting import Outcome, Stores, count_message
from streams.dedup import Dedup, MessageDedup
from streams.events import NO_CAMPAIGN, Event, EventType
from streams.state import Lead, Seen, first_sight

IMPRESSION, CLICK, OPEN = EventType.IMPRESSION, EventType.CLICK, EventType.OPEN
SIGNUP, LEAD_STAGE = EventType.SIGNUP, EventType.LEAD_STAGE
PURCHASE, SPEND = EventType.PURCHASE, EventType.SPEND

PANES = (60, 900)
T0 = 1_800_000_075.0  # 60 s pane 1_800_000_060; 900 s pane 1_800_000_000
FINE, COARSE = 1_800_000_060, 1_800_000_000
TOPIC = 3  # source topic index


def ev(
    kind: EventType, event_id: str, campaign: str | None = "spring", channel: str = "paid_search",
    ts: float = T0, **fields: Any,
) -> Event:  # fmt: skip
    return Event(kind, event_id, ts, campaign, channel, **fields)


def stores() -> Stores:
    return Stores(dedup=MessageDedup(Dedup()), leads={}, customers={})


def count(events: Sequence[Event], store: Stores, offset: int = 0, topic: int = TOPIC) -> Outcome:
    return count_message(list(enumerate(events)), (topic, offset), store, PANES)


def vec(**fields: int) -> Counts:
    vector = zero()
    for name, value in fields.items():
        vector[INDEX[name]] = value
    return vector


def keys(campaign: str, channel: str, ts: float = T0) -> set[tuple[str, int, int]]:
    return {
        (scope, size, int(ts // size) * size)
        for scope in ("all", f"channel:{channel}", f"campaign:{campaign}")
        for size in PANES
    }


def total(outcome: Outcome, scope: str = "all", size: int = 60) -> Counts:
    """The sum of the deltas of one scope and pane size."""
    return summed(v for (s, z, _), v in outcome.deltas.items() if s == scope and z == size)


def field(outcome: Outcome, name: str, scope: str = "all", size: int = 60) -> int:
    return total(outcome, scope, size)[INDEX[name]]


# --- touch events ----------------------------------------------------------------------


def test_impressions_with_count_on_email() -> None:
    out = count([ev(IMPRESSION, "i1", "news", "email", count=250)], stores())
    assert set(out.deltas) == keys("news", "email")
    assert all(v == vec(impressions=250, email_impressions=250) for v in out.deltas.values())
    assert out.counted == {("impression", "email", "news"): 1}
    assert not out.money
    assert not out.duplicates


def test_impressions_elsewhere_are_not_email_impressions() -> None:
    out = count([ev(IMPRESSION, "i1", count=40), ev(IMPRESSION, "i2")], stores())
    assert total(out) == vec(impressions=41)
    assert out.counted == {("impression", "paid_search", "spring"): 2}


def test_click_on_email_is_an_email_click() -> None:
    out = count([ev(CLICK, "c1", "news", "email"), ev(CLICK, "c2", "spring", "display")], stores())
    assert total(out) == vec(clicks=2, email_clicks=1)
    assert total(out, "channel:email") == vec(clicks=1, email_clicks=1)
    assert total(out, "channel:display") == vec(clicks=1)
    assert total(out, "campaign:spring", 900) == vec(clicks=1)


def test_opens() -> None:
    out = count([ev(OPEN, "o1", "news", "email")], stores())
    assert set(out.deltas) == keys("news", "email")
    assert all(v == vec(opens=1) for v in out.deltas.values())


def test_every_event_counts_in_all_channel_and_campaign_for_each_pane_size() -> None:
    out = count([ev(CLICK, "c1", "spring", "video")], stores())
    assert set(out.deltas) == {
        ("all", 60, FINE), ("all", 900, COARSE),
        ("channel:video", 60, FINE), ("channel:video", 900, COARSE),
        ("campaign:spring", 60, FINE), ("campaign:spring", 900, COARSE),
    }  # fmt: skip
    assert all(v == vec(clicks=1) for v in out.deltas.values())


def test_deltas_are_coalesced_per_pane() -> None:
    events = [
        ev(CLICK, "c1", ts=T0),
        ev(CLICK, "c2", ts=T0 + 10),  # same minute pane
        ev(CLICK, "c3", ts=T0 + 60),  # next minute pane, same 15-minute pane
        ev(CLICK, "c4", "autumn", ts=T0 + 900),  # next 15-minute pane
    ]
    out = count(events, stores())
    assert out.deltas[("all", 60, FINE)] == vec(clicks=2)
    assert out.deltas[("all", 60, FINE + 60)] == vec(clicks=1)
    assert out.deltas[("all", 60, FINE + 900)] == vec(clicks=1)
    assert out.deltas[("all", 900, COARSE)] == vec(clicks=3)
    assert out.deltas[("all", 900, COARSE + 900)] == vec(clicks=1)
    assert out.deltas[("campaign:spring", 900, COARSE)] == vec(clicks=3)
    assert ("campaign:spring", 900, COARSE + 900) not in out.deltas
    assert out.deltas[("campaign:autumn", 60, FINE + 900)] == vec(clicks=1)
    # all and channel: 3 minute panes + 2 quarter panes; spring: 2 + 1; autumn: 1 + 1
    assert len(out.deltas) == 5 + 5 + 3 + 2
    assert out.counted == {("click", "paid_search", "spring"): 3,
                           ("click", "paid_search", "autumn"): 1}  # fmt: skip


def test_each_pane_size_holds_the_whole_message() -> None:
    events = [ev(CLICK, f"c{i}", ts=T0 + 37 * i) for i in range(30)]
    out = count(events, stores())
    for scope in ("all", "channel:paid_search", "campaign:spring"):
        assert total(out, scope, 60) == total(out, scope, 900) == vec(clicks=30)


def test_no_events_no_deltas() -> None:
    out = count([], stores())
    assert out == Outcome()


# --- dedup and replay ------------------------------------------------------------------


def test_a_repeated_event_id_in_another_message_is_a_duplicate() -> None:
    store = stores()
    first = count([ev(CLICK, "c1")], store, offset=10)
    again = count([ev(CLICK, "c1"), ev(CLICK, "c2")], store, offset=11)
    assert field(first, "clicks") == 1
    assert field(again, "clicks") == 1  # only c2
    assert again.duplicates == {"click": 1}
    assert again.counted == {("click", "paid_search", "spring"): 1}


def test_a_duplicate_contributes_nothing_at_all() -> None:
    store = stores()
    count([ev(SPEND, "s1", amount_micros=5_000_000)], store, offset=1)
    again = count([ev(SPEND, "s1", amount_micros=5_000_000)], store, offset=2)
    assert again.deltas == {}
    assert not again.counted
    assert not again.money
    assert again.duplicates == {"spend": 1}


def test_a_repeated_event_id_from_another_topic_is_a_duplicate() -> None:
    store = stores()
    count([ev(CLICK, "c1")], store, offset=5, topic=1)
    again = count([ev(CLICK, "c1")], store, offset=5, topic=2)
    assert again.duplicates == {"click": 1}
    assert again.deltas == {}


def test_the_same_event_id_on_another_type_is_not_a_duplicate() -> None:
    store = stores()
    count([ev(CLICK, "x1")], store, offset=1)
    other = count([ev(OPEN, "x1", channel="email")], store, offset=2)
    assert not other.duplicates
    assert field(other, "opens") == 1


def test_a_replayed_message_counts_again_identically() -> None:
    store = stores()
    message = [
        ev(IMPRESSION, "i1", count=100),
        ev(CLICK, "c1"),
        ev(SIGNUP, "s1", lead_id="L1"),
        ev(LEAD_STAGE, "st1", None, "other", lead_id="L1", stage="mql"),
        ev(PURCHASE, "p1", None, "other", lead_id="L1", customer_id="C1",
           amount_micros=99_000_000),
        ev(SPEND, "sp1", amount_micros=12_000_000),
        ev(CLICK, "c1"),  # a copy inside the batch: a duplicate both times
    ]  # fmt: skip
    first = count(message, store, offset=42)
    replay = count(message, store, offset=42)
    assert replay == first
    assert first.duplicates == {"click": 1}
    assert field(first, "mql") == 1
    assert field(first, "new_customers") == 1
    # the first delivery again after the replay: still a replay, still identical
    assert count(message, store, offset=42) == first


def test_a_replay_is_recognised_per_event_not_per_message() -> None:
    store = stores()
    count([ev(CLICK, "c1"), ev(CLICK, "c2")], store, offset=7)
    # same offset, but c1 now sits at another index: not the event that counted first
    out = count([ev(CLICK, "c2"), ev(CLICK, "c1")], store, offset=7)
    assert out.duplicates == {"click": 2}


def test_two_copies_in_one_batch_count_once() -> None:
    out = count([ev(CLICK, "c1"), ev(CLICK, "c1"), ev(CLICK, "c1")], stores())
    assert field(out, "clicks") == 1
    assert out.duplicates == {"click": 2}
    assert out.counted == {("click", "paid_search", "spring"): 1}


def test_first_sight() -> None:
    store: dict[str, tuple[int, int, int]] = {}
    assert first_sight(store, "k", (1, 2, 3)) is Seen.NEW
    assert first_sight(store, "k", (1, 2, 3)) is Seen.REPLAY
    assert first_sight(store, "k", (1, 2, 4)) is Seen.DUPLICATE
    assert store == {"k": (1, 2, 3)}
    store["j"] = [1, 2, 3]  # type: ignore[assignment]  # as a JSON-backed table gives it back
    assert first_sight(store, "j", (1, 2, 3)) is Seen.REPLAY


# --- leads -----------------------------------------------------------------------------


def test_signup_counts_and_creates_the_lead() -> None:
    store = stores()
    out = count([ev(SIGNUP, "s1", "spring", "paid_social", lead_id="L1")], store)
    assert set(out.deltas) == keys("spring", "paid_social")
    assert all(v == vec(signups=1) for v in out.deltas.values())
    assert store.leads["L1"].campaign == "spring"
    assert store.leads["L1"].channel == "paid_social"


def test_each_stage_field() -> None:
    stages = ["lead", "mql", "sql", "opportunity", "won", "lost"]
    events = [ev(LEAD_STAGE, f"st-{s}", lead_id="L1", stage=s) for s in stages]
    out = count(events, stores())
    assert total(out) == vec(mql=1, sql=1, opportunities=1, won=1, lost=1)
    assert out.counted == {("lead_stage", "paid_search", "spring"): 6}


def test_a_lead_counts_once_per_stage() -> None:
    store = stores()
    first = count([ev(LEAD_STAGE, "a", lead_id="L1", stage="mql"),
                   ev(LEAD_STAGE, "b", lead_id="L1", stage="mql"),
                   ev(LEAD_STAGE, "c", lead_id="L2", stage="mql")], store, offset=1)  # fmt: skip
    later = count([ev(LEAD_STAGE, "d", lead_id="L1", stage="mql"),
                   ev(LEAD_STAGE, "e", lead_id="L1", stage="sql")], store, offset=2)  # fmt: skip
    assert field(first, "mql") == 2  # L1 once, L2 once
    assert total(later) == vec(sql=1)
    assert not later.duplicates  # distinct events, only the stage entry is repeated
    assert later.counted == {("lead_stage", "paid_search", "spring"): 2}


def test_a_stage_without_campaign_goes_to_its_signup_first_touch() -> None:
    store = stores()
    count([ev(SIGNUP, "s1", "spring", "paid_social", lead_id="L1")], store, offset=1)
    # a second sign-up of the same lead elsewhere counts as a sign-up there...
    second = count([ev(SIGNUP, "s2", "autumn", "email", lead_id="L1")], store, offset=2)
    assert set(second.deltas) == keys("autumn", "email")
    # ...but the lead stays with its first touch
    stage = count([ev(LEAD_STAGE, "st1", None, "direct", lead_id="L1", stage="sql")], store,
                  offset=3)  # fmt: skip
    assert set(stage.deltas) == keys("spring", "paid_social")
    assert all(v == vec(sql=1) for v in stage.deltas.values())
    assert stage.counted == {("lead_stage", "paid_social", "spring"): 1}
    assert store.leads["L1"].campaign == "spring"


def test_a_stage_with_its_own_campaign_keeps_it() -> None:
    store = stores()
    count([ev(SIGNUP, "s1", "spring", "paid_social", lead_id="L1")], store, offset=1)
    out = count([ev(LEAD_STAGE, "st1", "crm-nurture", "email", lead_id="L1", stage="mql")],
                store, offset=2)  # fmt: skip
    assert set(out.deltas) == keys("crm-nurture", "email")


def test_a_stage_of_an_unknown_lead_is_unattributed() -> None:
    out = count([ev(LEAD_STAGE, "st1", None, "organic", lead_id="nobody", stage="won")], stores())
    assert NO_CAMPAIGN == "(none)"
    assert set(out.deltas) == keys("(none)", "organic")
    assert all(v == vec(won=1) for v in out.deltas.values())
    assert out.counted == {("lead_stage", "organic", "(none)"): 1}


def test_stages_before_the_signup() -> None:
    store = stores()
    early = count([ev(LEAD_STAGE, "st1", None, "other", lead_id="L1", stage="mql")], store,
                  offset=1)  # fmt: skip
    assert set(early.deltas) == keys("(none)", "other")
    assert store.leads["L1"].campaign == ""
    signup = count([ev(SIGNUP, "s1", "spring", "email", lead_id="L1")], store, offset=2)
    assert set(signup.deltas) == keys("spring", "email")
    assert store.leads["L1"] == Lead("spring", "email", {"mql": (TOPIC, 1, 0)})
    late = count([ev(LEAD_STAGE, "st2", None, "other", lead_id="L1", stage="sql"),
                  ev(LEAD_STAGE, "st3", None, "other", lead_id="L1", stage="mql")], store,
                 offset=3)  # fmt: skip
    assert set(late.deltas) == keys("spring", "email")
    assert total(late) == vec(sql=1)  # mql was already entered before the sign-up


def test_a_replayed_stage_counts_again() -> None:
    store = stores()
    message = [ev(LEAD_STAGE, "st1", lead_id="L1", stage="opportunity")]
    first = count(message, store, offset=9)
    assert count(message, store, offset=9) == first
    assert field(first, "opportunities") == 1


def test_a_stage_before_its_signup_replays_identically() -> None:
    store = stores()
    stage = [ev(LEAD_STAGE, "st1", None, "other", lead_id="L1", stage="mql")]
    first = count(stage, store, offset=1)
    count([ev(SIGNUP, "s1", "spring", "email", lead_id="L1", ts=T0 - 3600)], store, offset=2)
    replay = count(stage, store, offset=1)  # re-delivered after a crash
    assert set(first.deltas) == keys("(none)", "other")
    assert replay == first


# --- purchases and spend ---------------------------------------------------------------


def test_first_purchase_of_a_customer_is_a_new_customer() -> None:
    store = stores()
    first = count([ev(PURCHASE, "p1", customer_id="C1", amount_micros=49_900_000)], store,
                  offset=1)  # fmt: skip
    second = count([ev(PURCHASE, "p2", customer_id="C1", amount_micros=20_000_000),
                    ev(PURCHASE, "p3", customer_id="C2", amount_micros=1),
                    ev(PURCHASE, "p4", customer_id="C2", amount_micros=2)], store,
                   offset=2)  # fmt: skip
    assert total(first) == vec(purchases=1, new_customers=1, revenue=49_900_000)
    assert total(second) == vec(purchases=3, new_customers=1, revenue=20_000_003)
    replay = count([ev(PURCHASE, "p1", customer_id="C1", amount_micros=49_900_000)], store,
                   offset=1)  # fmt: skip
    assert replay == first


def test_a_purchase_without_customer_is_not_a_new_customer() -> None:
    out = count([ev(PURCHASE, "p1", amount_micros=10)], stores())
    assert total(out) == vec(purchases=1, revenue=10)


def test_a_purchase_without_campaign_goes_to_its_lead() -> None:
    store = stores()
    count([ev(SIGNUP, "s1", "spring", "paid_search", lead_id="L1")], store, offset=1)
    out = count([ev(PURCHASE, "p1", None, "other", lead_id="L1", customer_id="C1",
                    amount_micros=7_500_000),
                 ev(PURCHASE, "p2", None, "direct", customer_id="C2", amount_micros=1)],
                store, offset=2)  # fmt: skip
    assert total(out, "campaign:spring") == vec(purchases=1, new_customers=1, revenue=7_500_000)
    assert total(out, "channel:paid_search") == total(out, "campaign:spring")
    assert total(out, "campaign:(none)") == vec(purchases=1, new_customers=1, revenue=1)
    assert total(out, "channel:direct") == total(out, "campaign:(none)")
    assert out.money == {("revenue", "paid_search", "spring"): 7_500_000,
                         ("revenue", "direct", "(none)"): 1}  # fmt: skip


def test_spend_in_micros() -> None:
    out = count([ev(SPEND, "sp1", "spring", "paid_search", amount_micros=10_800_000),
                 ev(SPEND, "sp2", "spring", "paid_search", amount_micros=1),
                 ev(SPEND, "sp3", "news", "email", amount_micros=0)], stores())  # fmt: skip
    assert total(out) == vec(spend=10_800_001)
    assert total(out, "campaign:news") == zero()
    assert ("campaign:news", 60, FINE) in out.deltas  # counted as an event, with no money
    assert out.money == {("spend", "paid_search", "spring"): 10_800_001}
    assert out.counted == {("spend", "paid_search", "spring"): 2, ("spend", "email", "news"): 1}


def test_outcome_tallies_over_a_mixed_batch() -> None:
    store = stores()
    events = [
        ev(IMPRESSION, "i1", "news", "email", count=1000),
        ev(OPEN, "o1", "news", "email"),
        ev(CLICK, "c1", "news", "email"),
        ev(CLICK, "c1", "news", "email"),
        ev(SIGNUP, "s1", "news", "email", lead_id="L1"),
        ev(LEAD_STAGE, "st1", None, "other", lead_id="L1", stage="mql"),
        ev(PURCHASE, "p1", None, "other", lead_id="L1", customer_id="C1",
           amount_micros=250_000_000),
        ev(SPEND, "sp1", "news", "email", amount_micros=40_000_000),
        ev(SPEND, "sp2", "spring", "paid_search", amount_micros=60_000_000),
    ]  # fmt: skip
    out = count(events, store)
    assert out.counted == {
        ("impression", "email", "news"): 1,
        ("open", "email", "news"): 1,
        ("click", "email", "news"): 1,
        ("signup", "email", "news"): 1,
        ("lead_stage", "email", "news"): 1,
        ("purchase", "email", "news"): 1,
        ("spend", "email", "news"): 1,
        ("spend", "paid_search", "spring"): 1,
    }
    assert out.money == {
        ("revenue", "email", "news"): 250_000_000,
        ("spend", "email", "news"): 40_000_000,
        ("spend", "paid_search", "spring"): 60_000_000,
    }
    assert out.duplicates == {"click": 1}
    news = vec(impressions=1000, email_impressions=1000, opens=1, clicks=1, email_clicks=1,
               signups=1, mql=1, purchases=1, new_customers=1, revenue=250_000_000,
               spend=40_000_000)  # fmt: skip
    assert total(out, "campaign:news") == total(out, "channel:email") == news
    assert total(out, "campaign:spring", 900) == vec(spend=60_000_000)
    assert total(out) == [a + b for a, b in zip(news, vec(spend=60_000_000), strict=True)]
    assert len(COUNT_FIELDS) == len(total(out))


def test_outcome_tallies_impressions_and_transitions_once() -> None:
    from streams.counting import Stores, count_message
    from streams.events import Event, EventType

    stores = Stores(dedup=MessageDedup(Dedup()), leads={}, customers={})
    events = [
        Event(EventType.IMPRESSION, "i1", 60.0, "a", "email", count=40),
        Event(EventType.LEAD_STAGE, "s1", 60.0, "a", "email", lead_id="L", stage="mql"),
        Event(EventType.LEAD_STAGE, "s2", 60.0, "a", "email", lead_id="L", stage="mql"),
        Event(EventType.PURCHASE, "p1", 60.0, "a", "email", amount_micros=5, customer_id="C"),
    ]
    outcome = count_message(list(enumerate(events)), (0, 1), stores, [60])
    assert outcome.impressions == {("email", "a"): 40}
    assert outcome.stages == {("mql", "email", "a"): 1, ("new_customer", "email", "a"): 1}
