"""Input validation (SPEC §1): every bad event becomes a Rejected with its reason code."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import events
from streams.events import (
    CHANNELS,
    MAX_EVENT_BYTES,
    SHAPES,
    BadEvent,
    Event,
    EventType,
    Limits,
    Reason,
    Rejected,
    channel_table,
    decode_message,
    parse_checked,
    parse_event,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z; the clock is injected, never read
NOW_RFC = "2027-01-15T08:00:00Z"
RATES = {"USD": Decimal(1), "EUR": Decimal("1.08"), "JPY": Decimal("0.0067")}
LIMITS = Limits(now=NOW, max_future=300, horizon=90_000, fx_rates=RATES)

IMPRESSION, CLICK, OPEN = EventType.IMPRESSION, EventType.CLICK, EventType.OPEN
SIGNUP, LEAD_STAGE = EventType.SIGNUP, EventType.LEAD_STAGE
PURCHASE, SPEND = EventType.PURCHASE, EventType.SPEND

BASE: dict[EventType, dict[str, Any]] = {
    IMPRESSION: {"event_id": "imp-1", "ts": NOW_RFC, "campaign_id": "spring-sale",
                 "channel": "display"},
    CLICK: {"event_id": "clk-1", "ts": NOW_RFC, "campaign_id": "spring-sale",
            "channel": "paid_search"},
    OPEN: {"event_id": "opn-1", "ts": NOW_RFC, "campaign_id": "newsletter.2027-01",
           "channel": "email"},
    SIGNUP: {"event_id": "sgn-1", "ts": NOW_RFC, "campaign_id": "spring-sale",
             "channel": "paid_social", "lead_id": "lead-1"},
    LEAD_STAGE: {"event_id": "stg-1", "ts": NOW_RFC, "lead_id": "lead-1", "stage": "mql"},
    PURCHASE: {"event_id": "pur-1", "ts": NOW_RFC, "amount": "49.90", "currency": "USD",
               "customer_id": "cust-1", "order_id": "ord-1"},
    SPEND: {"event_id": "spd-1", "ts": NOW_RFC, "campaign_id": "spring-sale",
            "channel": "paid_search", "amount": "100.00", "currency": "EUR"},
}  # fmt: skip
DROP = object()  # marks a field to leave out


def doc(kind: EventType, **changes: Any) -> dict[str, Any]:
    """The base event of ``kind`` with some fields changed (or dropped with DROP)."""
    out = dict(BASE[kind])
    for name, value in changes.items():
        if value is DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def encode(payload: bytes | dict[str, Any] | list[Any]) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def decode_one(payload: bytes | dict[str, Any] | list[Any], kind: EventType) -> Event | Rejected:
    items = decode_message(encode(payload), kind, LIMITS)
    assert len(items) == 1
    return items[0]


def accept(kind: EventType, **changes: Any) -> Event:
    item = decode_one(doc(kind, **changes), kind)
    assert isinstance(item, Event), item
    return item


# --- one case per way to be wrong; together they produce every Reason -----------------

BIG = "x" * (MAX_EVENT_BYTES + 10)
REASON_CASES: list[tuple[str, EventType, bytes | dict[str, Any] | list[Any], Reason]] = [
    ("message over 1 MiB", CLICK, b'{"pad":"' + b"x" * (1024 * 1024) + b'"}', Reason.TOO_LARGE),
    ("event over 64 KiB", CLICK, doc(CLICK, pad=BIG), Reason.TOO_LARGE),
    ("batch element over 64 KiB", CLICK, [doc(CLICK, pad=BIG)], Reason.TOO_LARGE),
    ("batch of 10,001 events", CLICK, b"[" + b",".join([b"{}"] * 10_001) + b"]",
     Reason.TOO_LARGE),
    ("event nested 300 deep", CLICK, b'{"event_id":"e1","x":' + b"[" * 299 + b"]" * 299 + b"}",
     Reason.TOO_DEEP),
    ("invalid utf-8 in a string", CLICK, b'{"event_id": "\xff"}', Reason.INVALID_UTF8),
    ("truncated utf-8 sequence", CLICK, b'["\xc3"]', Reason.INVALID_UTF8),
    ("lone continuation byte", CLICK, b"\x80", Reason.INVALID_UTF8),
    ("empty message", CLICK, b"", Reason.INVALID_JSON),
    ("truncated object", CLICK, b'{"event_id": "e1"', Reason.INVALID_JSON),
    ("trailing comma", CLICK, b'{"event_id": "e1",}', Reason.INVALID_JSON),
    ("NaN literal", CLICK, b'{"amount": NaN}', Reason.INVALID_JSON),
    ("plain text", CLICK, b"clicked!", Reason.INVALID_JSON),
    ("number overflowing a double", CLICK, b"1e400", Reason.INVALID_JSON),
    ("scalar number", CLICK, b"42", Reason.NOT_AN_OBJECT),
    ("scalar string", CLICK, b'"click"', Reason.NOT_AN_OBJECT),
    ("null", CLICK, b"null", Reason.NOT_AN_OBJECT),
    ("boolean", CLICK, b"true", Reason.NOT_AN_OBJECT),
    ("batch element number", CLICK, [5], Reason.NOT_AN_OBJECT),
    ("batch element string", CLICK, ["clk-1"], Reason.NOT_AN_OBJECT),
    ("batch element array", CLICK, [[doc(CLICK)]], Reason.NOT_AN_OBJECT),
    ("batch element null", CLICK, [None], Reason.NOT_AN_OBJECT),
    ("empty batch", CLICK, b"[]", Reason.EMPTY_BATCH),
    ("empty batch, spaced", CLICK, b" [ ]\n", Reason.EMPTY_BATCH),
    ("no event_id", CLICK, doc(CLICK, event_id=DROP), Reason.MISSING_FIELD),
    ("null event_id", CLICK, doc(CLICK, event_id=None), Reason.MISSING_FIELD),
    ("no ts", CLICK, doc(CLICK, ts=DROP), Reason.MISSING_FIELD),
    ("no campaign on impression", IMPRESSION, doc(IMPRESSION, campaign_id=DROP),
     Reason.MISSING_FIELD),
    ("no campaign on click", CLICK, doc(CLICK, campaign_id=DROP), Reason.MISSING_FIELD),
    ("no campaign on open", OPEN, doc(OPEN, campaign_id=DROP), Reason.MISSING_FIELD),
    ("no campaign on signup", SIGNUP, doc(SIGNUP, campaign_id=DROP), Reason.MISSING_FIELD),
    ("no campaign on spend", SPEND, doc(SPEND, campaign_id=DROP), Reason.MISSING_FIELD),
    ("signup without lead_id", SIGNUP, doc(SIGNUP, lead_id=DROP), Reason.MISSING_FIELD),
    ("stage without lead_id", LEAD_STAGE, doc(LEAD_STAGE, lead_id=DROP), Reason.MISSING_FIELD),
    ("stage without stage", LEAD_STAGE, doc(LEAD_STAGE, stage=DROP), Reason.MISSING_FIELD),
    ("purchase without amount", PURCHASE, doc(PURCHASE, amount=DROP), Reason.MISSING_FIELD),
    ("purchase null amount", PURCHASE, doc(PURCHASE, amount=None), Reason.MISSING_FIELD),
    ("spend without currency", SPEND, doc(SPEND, currency=DROP), Reason.MISSING_FIELD),
    ("event_id number", CLICK, doc(CLICK, event_id=42), Reason.WRONG_TYPE),
    ("type number", CLICK, doc(CLICK, type=1), Reason.WRONG_TYPE),
    ("ts boolean", CLICK, doc(CLICK, ts=True), Reason.WRONG_TYPE),
    ("ts array", CLICK, doc(CLICK, ts=[NOW]), Reason.WRONG_TYPE),
    ("ts object", CLICK, doc(CLICK, ts={"s": NOW}), Reason.WRONG_TYPE),
    ("campaign number", CLICK, doc(CLICK, campaign_id=7), Reason.WRONG_TYPE),
    ("channel number", CLICK, doc(CLICK, channel=3), Reason.WRONG_TYPE),
    ("channel array", CLICK, doc(CLICK, channel=["email"]), Reason.WRONG_TYPE),
    ("count string", IMPRESSION, doc(IMPRESSION, count="5"), Reason.WRONG_TYPE),
    ("count fraction", IMPRESSION, doc(IMPRESSION, count=2.5), Reason.WRONG_TYPE),
    ("count boolean", IMPRESSION, doc(IMPRESSION, count=True), Reason.WRONG_TYPE),
    ("lead_id number", SIGNUP, doc(SIGNUP, lead_id=5), Reason.WRONG_TYPE),
    ("stage number", LEAD_STAGE, doc(LEAD_STAGE, stage=2), Reason.WRONG_TYPE),
    ("amount boolean", PURCHASE, doc(PURCHASE, amount=True), Reason.WRONG_TYPE),
    ("amount array", SPEND, doc(SPEND, amount=[1]), Reason.WRONG_TYPE),
    ("currency number", SPEND, doc(SPEND, currency=978), Reason.WRONG_TYPE),
    ("user_id number", CLICK, doc(CLICK, user_id=5), Reason.WRONG_TYPE),
    ("customer_id number", PURCHASE, doc(PURCHASE, customer_id=5), Reason.WRONG_TYPE),
    ("order_id number", PURCHASE, doc(PURCHASE, order_id=5), Reason.WRONG_TYPE),
    ("empty event_id", CLICK, doc(CLICK, event_id=""), Reason.INVALID_VALUE),
    ("event_id of 129", CLICK, doc(CLICK, event_id="e" * 129), Reason.INVALID_VALUE),
    ("campaign with a space", CLICK, doc(CLICK, campaign_id="spring sale"),
     Reason.INVALID_VALUE),
    ("campaign with a slash", CLICK, doc(CLICK, campaign_id="spring/sale"),
     Reason.INVALID_VALUE),
    ("campaign non-ascii", CLICK, doc(CLICK, campaign_id="campa\u00f1a"), Reason.INVALID_VALUE),
    ("campaign of 129", CLICK, doc(CLICK, campaign_id="c" * 129), Reason.INVALID_VALUE),
    ("empty campaign", CLICK, doc(CLICK, campaign_id=""), Reason.INVALID_VALUE),
    ("campaign charset on stage", LEAD_STAGE, doc(LEAD_STAGE, campaign_id="a b"),
     Reason.INVALID_VALUE),
    ("bad stage", LEAD_STAGE, doc(LEAD_STAGE, stage="customer"), Reason.INVALID_VALUE),
    ("stage in upper case", LEAD_STAGE, doc(LEAD_STAGE, stage="MQL"), Reason.INVALID_VALUE),
    ("count 0", IMPRESSION, doc(IMPRESSION, count=0), Reason.INVALID_VALUE),
    ("count negative", IMPRESSION, doc(IMPRESSION, count=-5), Reason.INVALID_VALUE),
    ("count 1000001", IMPRESSION, doc(IMPRESSION, count=1_000_001), Reason.INVALID_VALUE),
    ("empty lead_id", SIGNUP, doc(SIGNUP, lead_id=""), Reason.INVALID_VALUE),
    ("user_id of 129", CLICK, doc(CLICK, user_id="u" * 129), Reason.INVALID_VALUE),
    ("click on the impressions topic", IMPRESSION, doc(IMPRESSION, type="click"),
     Reason.TYPE_MISMATCH),
    ("impression on the clicks topic", CLICK, doc(CLICK, type="impression"),
     Reason.TYPE_MISMATCH),
    ("type in another case", CLICK, doc(CLICK, type="Click"), Reason.TYPE_MISMATCH),
    ("negative amount", PURCHASE, doc(PURCHASE, amount=-1), Reason.INVALID_AMOUNT),
    ("negative amount string", SPEND, doc(SPEND, amount="-0.01"), Reason.INVALID_AMOUNT),
    ("NaN string", PURCHASE, doc(PURCHASE, amount="NaN"), Reason.INVALID_AMOUNT),
    ("nan string", SPEND, doc(SPEND, amount="nan"), Reason.INVALID_AMOUNT),
    ("sNaN string", SPEND, doc(SPEND, amount="sNaN"), Reason.INVALID_AMOUNT),
    ("Infinity string", PURCHASE, doc(PURCHASE, amount="Infinity"), Reason.INVALID_AMOUNT),
    ("-Infinity string", SPEND, doc(SPEND, amount="-Infinity"), Reason.INVALID_AMOUNT),
    ("word amount", PURCHASE, doc(PURCHASE, amount="ten"), Reason.INVALID_AMOUNT),
    ("empty amount", PURCHASE, doc(PURCHASE, amount=""), Reason.INVALID_AMOUNT),
    ("hex amount", SPEND, doc(SPEND, amount="0x10"), Reason.INVALID_AMOUNT),
    ("amount over 1e12", SPEND, doc(SPEND, amount="1e13"), Reason.INVALID_AMOUNT),
    ("amount number over 1e12", SPEND, doc(SPEND, amount=1e13), Reason.INVALID_AMOUNT),
    ("unknown currency", SPEND, doc(SPEND, currency="XXX"), Reason.UNKNOWN_CURRENCY),
    ("empty currency", PURCHASE, doc(PURCHASE, currency=""), Reason.UNKNOWN_CURRENCY),
    ("currency name", PURCHASE, doc(PURCHASE, currency="euro"), Reason.UNKNOWN_CURRENCY),
    ("naive datetime", CLICK, doc(CLICK, ts="2027-01-15T08:00:00"), Reason.INVALID_TS),
    ("date only", CLICK, doc(CLICK, ts="2027-01-15"), Reason.INVALID_TS),
    ("garbage ts", CLICK, doc(CLICK, ts="yesterday"), Reason.INVALID_TS),
    ("empty ts", CLICK, doc(CLICK, ts=""), Reason.INVALID_TS),
    ("month 13", CLICK, doc(CLICK, ts="2027-13-01T00:00:00Z"), Reason.INVALID_TS),
    ("epoch as a string", CLICK, doc(CLICK, ts="1800000000"), Reason.INVALID_TS),
    ("negative epoch", CLICK, doc(CLICK, ts=-1), Reason.INVALID_TS),
    ("negative float epoch", CLICK, doc(CLICK, ts=-0.5), Reason.INVALID_TS),
    ("301 s ahead", CLICK, doc(CLICK, ts=NOW + 301), Reason.TS_IN_FUTURE),
    ("6 min ahead, RFC 3339", CLICK, doc(CLICK, ts="2027-01-15T08:06:00Z"),
     Reason.TS_IN_FUTURE),
    ("an hour ahead, ms", CLICK, doc(CLICK, ts=int(NOW + 3600) * 1000), Reason.TS_IN_FUTURE),
    ("past the horizon", CLICK, doc(CLICK, ts=NOW - 90_001), Reason.TS_TOO_OLD),
    ("epoch 0", CLICK, doc(CLICK, ts=0), Reason.TS_TOO_OLD),
    ("years ago, RFC 3339", CLICK, doc(CLICK, ts="2020-01-01T00:00:00+00:00"),
     Reason.TS_TOO_OLD),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [case[1:] for case in REASON_CASES],
    ids=[case[0] for case in REASON_CASES],
)
def test_rejected_with_reason(
    kind: EventType, payload: bytes | dict[str, Any] | list[Any], reason: Reason
) -> None:
    item = decode_one(payload, kind)
    assert isinstance(item, Rejected), item
    assert item.reason is reason
    assert item.detail
    if isinstance(payload, list):
        assert item.index == 0
        assert item.raw == orjson.dumps(payload[0])
    elif reason is not Reason.TOO_LARGE:
        assert item.index is None
        assert item.raw == encode(payload)  # the message unchanged


# Raised by the worker around a crash in its own code (streams.app), never by validation.
NOT_INPUT_REASONS = {"internal_error"}


def test_every_reason_has_a_case() -> None:
    input_reasons = {reason for reason in Reason if reason.value not in NOT_INPUT_REASONS}
    assert {case[3] for case in REASON_CASES} == input_reasons


def test_a_too_large_message_keeps_only_a_prefix() -> None:
    small = replace(LIMITS, max_message_bytes=1000)
    message = orjson.dumps([doc(CLICK, event_id=f"clk-{i}") for i in range(20)])
    assert len(message) > 1000
    (item,) = decode_message(message, CLICK, small)
    assert isinstance(item, Rejected)
    assert item.reason is Reason.TOO_LARGE
    assert item.index is None
    assert message.startswith(item.raw)
    assert str(len(message)) in item.detail


def test_a_message_exactly_at_the_limit_is_decoded() -> None:
    message = orjson.dumps(doc(CLICK))
    (item,) = decode_message(message, CLICK, replace(LIMITS, max_message_bytes=len(message)))
    assert isinstance(item, Event)


def test_no_message_value_is_invalid_json() -> None:
    (item,) = decode_message(None, CLICK, LIMITS)
    assert isinstance(item, Rejected)
    assert item.reason is Reason.INVALID_JSON
    assert item.raw == b""


def test_detail_names_the_field() -> None:
    item = decode_one(doc(SIGNUP, lead_id=DROP), SIGNUP)
    assert isinstance(item, Rejected)
    assert "lead_id" in item.detail
    item = decode_one(doc(IMPRESSION, count="5"), IMPRESSION)
    assert isinstance(item, Rejected)
    assert "count" in item.detail


def test_parse_event_raises_bad_event() -> None:
    with pytest.raises(BadEvent, match="currency") as caught:
        parse_event(doc(SPEND, currency="XXX"), SPEND, LIMITS)
    assert caught.value.reason is Reason.UNKNOWN_CURRENCY


# --- batches ----------------------------------------------------------------------------


def test_a_batch_keeps_the_good_and_rejects_only_the_bad() -> None:
    batch = [
        doc(CLICK, event_id="a"),
        doc(CLICK, event_id="b", ts=DROP),
        doc(CLICK, event_id="c", channel="EMAIL"),
        7,
        doc(CLICK, event_id="e", type="open"),
        doc(CLICK, event_id="f"),
    ]
    items = decode_message(orjson.dumps(batch), CLICK, LIMITS)
    assert len(items) == len(batch)
    good = [item for item in items if isinstance(item, Event)]
    bad = [item for item in items if isinstance(item, Rejected)]
    assert [event.event_id for event in good] == ["a", "c", "f"]
    assert [(r.index, r.reason) for r in bad] == [
        (1, Reason.MISSING_FIELD),
        (3, Reason.NOT_AN_OBJECT),
        (4, Reason.TYPE_MISMATCH),
    ]
    assert [r.raw for r in bad] == [orjson.dumps(batch[i]) for i in (1, 3, 4)]
    assert isinstance(items[2], Event)
    assert items[2].channel == "email"


def test_a_batch_of_one_is_like_a_single_event() -> None:
    (single,) = decode_message(orjson.dumps(doc(OPEN)), OPEN, LIMITS)
    (batched,) = decode_message(orjson.dumps([doc(OPEN)]), OPEN, LIMITS)
    assert single == batched


def test_a_rejected_single_event_keeps_the_message_byte_for_byte() -> None:
    message = b' { "event_id" : 1 }\n'
    (item,) = decode_message(message, CLICK, LIMITS)
    assert isinstance(item, Rejected)
    assert item.reason is Reason.WRONG_TYPE
    assert item.raw == message
    assert item.index is None


def test_an_oversized_element_does_not_drop_its_neighbours() -> None:
    batch = [doc(CLICK, event_id="a"), doc(CLICK, event_id="b", pad=BIG), doc(CLICK)]
    items = decode_message(orjson.dumps(batch), CLICK, LIMITS)
    assert [type(item) for item in items] == [Event, Rejected, Event]
    assert isinstance(items[1], Rejected)
    assert (items[1].index, items[1].reason) == (1, Reason.TOO_LARGE)


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T08:00:00+00:00", NOW),
        ("2027-01-15T08:00:00.000Z", NOW),
        ("2027-01-15T09:00:00+01:00", NOW),
        ("2027-01-15T03:00:00-05:00", NOW),
        (1_800_000_000, NOW),
        (1_800_000_000.0, NOW),
        (1_800_000_000_000, NOW),  # epoch milliseconds
        (1_800_000_000_000.0, NOW),
        ("2027-01-15T07:59:30.25Z", 1_799_999_970.25),
        (1_799_999_970.25, 1_799_999_970.25),
        (1_799_999_970_250, 1_799_999_970.25),
        ("2027-01-15T07:59:59.123+00:00", 1_799_999_999.123),
        (1_799_999_999.123, 1_799_999_999.123),
        (1_799_999_999_123, 1_799_999_999.123),
    ],
)
def test_ts_formats_agree(ts: str | float, expected: float) -> None:
    event = accept(CLICK, ts=ts)
    assert event.ts == expected
    assert type(event.ts) is float


@pytest.mark.parametrize(
    "ts", [NOW + 300, NOW - 90_000, (NOW + 300) * 1000, "2027-01-15T08:05:00Z"]
)
def test_ts_limits_are_inclusive(ts: float | str) -> None:
    accept(CLICK, ts=ts)


def test_lower_case_z_is_rfc3339() -> None:
    assert accept(CLICK, ts="2027-01-15t08:00:00z").ts == NOW


# --- fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("email", "email"),
        ("EMAIL", "email"),
        ("Paid_Social", "paid_social"),
        (" video ", "video"),
        ("tiktok", "other"),
        ("e-mail", "email"),
        ("CPC", "paid_search"),
        ("social", "paid_social"),
        ("", "other"),
        (None, "other"),
        (DROP, "other"),
    ],
)
def test_channel_normalisation(channel: Any, expected: str) -> None:
    assert accept(CLICK, channel=channel).channel == expected


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_every_known_channel_is_kept(channel: str) -> None:
    assert accept(IMPRESSION, channel=channel.upper()).channel == channel


def test_known_channels_are_those_of_the_spec() -> None:
    assert set(CHANNELS) == {
        "email", "paid_search", "paid_social", "display", "video", "affiliate", "organic",
        "referral", "direct", "other",
    }  # fmt: skip


def test_an_unknown_channel_counts_as_other_and_says_which() -> None:
    event = accept(CLICK, channel=" TikTok ")
    assert (event.channel, event.unknown_channel) == ("other", "tiktok")
    assert accept(CLICK, channel="cpc").unknown_channel is None
    assert accept(CLICK, channel="").unknown_channel is None
    assert accept(CLICK, channel=DROP).unknown_channel is None


def test_channels_and_aliases_come_from_the_limits() -> None:
    table = channel_table([*CHANNELS, "podcast"], {"pod": "podcast"})
    limits = replace(LIMITS, channels=table)
    for given_name, kind in (("Podcast", CLICK), ("pod", IMPRESSION), ("POD", SIGNUP)):
        event = parse_event(doc(kind, channel=given_name), kind, limits)
        assert (event.channel, event.unknown_channel) == ("podcast", None)
    assert parse_event(doc(CLICK, channel="cpc"), CLICK, limits).channel == "other"


def test_every_declared_field_is_in_a_shape_and_every_shape_field_declared() -> None:
    used = {slot.name for shape in SHAPES.values() for slot in shape}
    assert used == set(events.FIELDS)
    assert set(SHAPES) == set(EventType)


@pytest.mark.parametrize("kind", list(EventType))
def test_each_required_field_is_required(kind: EventType) -> None:
    for slot in SHAPES[kind]:
        item = decode_one(doc(kind, **{slot.name: DROP}), kind)
        if slot.required:
            assert isinstance(item, Rejected)
            assert (item.reason, item.detail) == (Reason.MISSING_FIELD, f"{slot.name} is required")
        else:
            assert isinstance(item, Event), item


@pytest.mark.parametrize(
    ("kind", "amount", "currency", "micros"),
    [
        (SPEND, "10.00", "EUR", 10_800_000),
        (SPEND, "10.00", "eur", 10_800_000),
        (SPEND, "10.00", " Eur ", 10_800_000),
        (SPEND, 10, "EUR", 10_800_000),
        (SPEND, 10.0, "EUR", 10_800_000),
        (PURCHASE, "49.90", "USD", 49_900_000),
        (PURCHASE, 0.1, "USD", 100_000),  # the float's shortest repr, not its binary value
        (PURCHASE, 0, "USD", 0),
        (PURCHASE, "0.0000005", "USD", 0),  # half a micro rounds to even
        (PURCHASE, "0.0000015", "USD", 2),
        (PURCHASE, "0.0000025", "usd", 2),
        (SPEND, 1000, "JPY", 6_700_000),
        (SPEND, "0.000001", "EUR", 1),  # 1.08 micros
        (SPEND, "1e12", "USD", 10**18),
        (SPEND, " 12.5 ", "USD", 12_500_000),
    ],
)
def test_money_is_converted_to_reporting_micros(
    kind: EventType, amount: Any, currency: str, micros: int
) -> None:
    assert accept(kind, amount=amount, currency=currency).amount_micros == micros


def test_count_on_impressions() -> None:
    assert accept(IMPRESSION, count=250).count == 250
    assert accept(IMPRESSION, count=1).count == 1
    assert accept(IMPRESSION, count=1_000_000).count == 1_000_000
    assert accept(IMPRESSION, count=DROP).count == 1


def test_a_whole_float_count_is_an_integer() -> None:
    """JSON has one number type, and JSON Schema's ``integer`` accepts 2.0: so do we."""
    assert accept(IMPRESSION, count=2.0).count == 2
    assert type(accept(IMPRESSION, count=2.0).count) is int


def test_count_is_only_read_on_impressions() -> None:
    assert accept(CLICK, count=250).count == 1
    assert accept(OPEN, count=0).count == 1


@pytest.mark.parametrize("kind", [LEAD_STAGE, PURCHASE])
def test_campaign_is_optional_on_stages_and_purchases(kind: EventType) -> None:
    assert accept(kind).campaign_id is None
    assert accept(kind, campaign_id=None).campaign_id is None
    assert accept(kind, campaign_id="spring-sale").campaign_id == "spring-sale"


@pytest.mark.parametrize("campaign", ["a", "spring-sale", "Q1_2027.v2:eu", "c" * 128])
def test_campaign_charset_and_length(campaign: str) -> None:
    assert accept(CLICK, campaign_id=campaign).campaign_id == campaign


def test_campaign_with_a_trailing_newline_is_rejected() -> None:
    item = decode_one(doc(CLICK, campaign_id="spring-sale\n"), CLICK)
    assert isinstance(item, Rejected)
    assert item.reason is Reason.INVALID_VALUE


def test_event_fields() -> None:
    signup = accept(SIGNUP, user_id="u-1")
    assert signup == Event(SIGNUP, "sgn-1", NOW, "spring-sale", "paid_social",
                           lead_id="lead-1", user_id="u-1")  # fmt: skip
    stage = accept(LEAD_STAGE, stage="opportunity")
    assert (stage.lead_id, stage.stage, stage.campaign_id, stage.channel) == (
        "lead-1", "opportunity", None, "other",
    )  # fmt: skip
    purchase = accept(PURCHASE, lead_id="lead-1")
    assert purchase.customer_id == "cust-1"
    assert purchase.lead_id == "lead-1"
    assert purchase.amount_micros == 49_900_000
    assert purchase.type is PURCHASE
    spend = accept(SPEND)
    assert (spend.amount_micros, spend.campaign_id, spend.channel) == (
        108_000_000, "spring-sale", "paid_search",
    )  # fmt: skip


@pytest.mark.parametrize("stage", ["lead", "mql", "sql", "opportunity", "won", "lost"])
def test_every_stage_is_accepted(stage: str) -> None:
    assert accept(LEAD_STAGE, stage=stage).stage == stage


@pytest.mark.parametrize("kind", list(EventType))
def test_matching_or_null_type_is_accepted(kind: EventType) -> None:
    assert accept(kind, type=str(kind)).type is kind
    assert accept(kind, type=None).type is kind


def test_purchase_optional_ids_may_be_absent() -> None:
    event = accept(PURCHASE, customer_id=DROP, order_id=DROP, lead_id=DROP)
    assert event.customer_id is None
    assert event.lead_id is None


# --- properties: decode_message never raises ------------------------------------------

KINDS = st.sampled_from(list(EventType))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = ["event_id", "type", "ts", "campaign_id", "channel", "user_id", "lead_id", "stage",
          "amount", "currency", "count", "customer_id", "order_id"]  # fmt: skip
DAY = timedelta(hours=23, minutes=59)
utc_offsets = st.builds(timezone, st.timedeltas(min_value=-DAY, max_value=DAY))
field_values = (
    json_values
    | st.datetimes(timezones=utc_offsets | st.none()).map(lambda d: d.isoformat())
    | st.floats(min_value=NOW - 200_000, max_value=NOW + 1000)
    | st.sampled_from(["NaN", "Infinity", "-1", "1e12", "1e13", "-0", "EUR", "eur", "mql",
                       "click", "email", "EMAIL", NOW_RFC])
)  # fmt: skip
event_like = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=len(FIELDS))
CAMPAIGN = re.compile(r"[A-Za-z0-9._:-]{1,128}\n?")


def check_items(items: list[Event | Rejected]) -> None:
    assert len(items) >= 1
    for item in items:
        assert isinstance(item, Event | Rejected)
        if isinstance(item, Rejected):
            assert isinstance(item.reason, Reason)
            assert item.reason.value not in NOT_INPUT_REASONS
            assert isinstance(item.raw, bytes)
        else:
            assert NOW - LIMITS.horizon <= item.ts <= NOW + LIMITS.max_future
            assert item.channel in CHANNELS
            assert 1 <= item.count <= 1_000_000
            assert item.amount_micros >= 0
            assert 1 <= len(item.event_id) <= 128
            assert item.campaign_id is None or CAMPAIGN.fullmatch(item.campaign_id)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), KINDS)
def test_arbitrary_bytes_never_raise(value: bytes, kind: EventType) -> None:
    check_items(decode_message(value, kind, LIMITS))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, KINDS)
def test_arbitrary_json_never_raises(value: Any, kind: EventType) -> None:
    items = decode_message(orjson.dumps(value), kind, LIMITS)
    check_items(items)
    if isinstance(value, list) and value:
        assert len(items) == len(value)
        for i, item in enumerate(items):
            assert not isinstance(item, Rejected) or item.index == i
    else:
        assert len(items) == 1


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(event_like, st.lists(event_like, min_size=1, max_size=4)), KINDS)
def test_event_shaped_json_never_raises(value: Any, kind: EventType) -> None:
    check_items(decode_message(orjson.dumps(value), kind, LIMITS))


@settings(max_examples=200)
@given(KINDS, st.sampled_from(FIELDS), st.data())
def test_a_valid_event_with_one_field_broken_never_raises(
    kind: EventType, field: str, data: st.DataObject
) -> None:
    broken = doc(kind, **{field: data.draw(field_values, label=field)})
    check_items(decode_message(orjson.dumps(broken), kind, LIMITS))


# -- the fast path for well-formed touches equals the checked path ----------------------
_touch_field = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=140),
    st.sampled_from(
        [
            "email",
            "EMAIL",
            " paid_search ",
            "display",
            "fax",
            "cmp-1",
            "a" * 129,
            "cpc",
            "CPC",
            "(none)",
            2.0,
        ]
    ),
    st.lists(st.integers(), max_size=2),
)


@given(
    kind=st.sampled_from([EventType.IMPRESSION, EventType.CLICK, EventType.OPEN]),
    fields=st.dictionaries(
        st.sampled_from(["type", "event_id", "ts", "campaign_id", "channel", "user_id", "count"]),
        _touch_field,
    ),
    base=st.booleans(),
    ts_offset=st.floats(-200_000, 1_000, allow_nan=False),
    ts_form=st.sampled_from(["s", "ms", "rfc"]),
)
def test_fast_path_agrees_with_the_checked_path(
    kind: EventType, fields: dict[str, object], base: bool, ts_offset: float, ts_form: str
) -> None:
    """Any document: either both paths give the same Event, or both reject it the same way."""
    ts: object = LIMITS.now + ts_offset
    if ts_form == "ms":
        ts = int(LIMITS.now * 1000 + ts_offset * 1000)
    elif ts_form == "rfc":
        ts = datetime.fromtimestamp(LIMITS.now + ts_offset, UTC).isoformat()
    valid = {"event_id": "e1", "ts": ts, "campaign_id": "cmp-1", "channel": "email"}
    document = {**(valid if base else {}), **fields}

    def outcome(parse: Callable[..., Event]) -> object:
        try:
            return parse(document, kind, LIMITS)
        except BadEvent as bad:
            return bad.reason

    assert outcome(parse_event) == outcome(parse_checked)
