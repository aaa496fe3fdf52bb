"""Hostile input at the parser (issue 6): whatever bytes arrive, ``decode_message`` returns
events or ``Rejected`` records with a reason — it never raises, never recurses without
bound, and never turns one message into more dead letters than it has elements.

The integration twin (tests/integration/test_hostile_input.py) sends the same kinds of
input through the real broker and worker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import dead_letter_headers
from streams.events import (
    MAX_BATCH_EVENTS,
    MAX_NESTING,
    Event,
    EventType,
    Limits,
    Reason,
    Rejected,
    _encode_deep,
    decode_message,
)

NOW = 1_800_000_000.0
LIMITS = Limits(NOW, 300, 90_000, {"USD": Decimal(1), "EUR": Decimal("1.08")})
KINDS = st.sampled_from(list(EventType))
VALID = {
    EventType.CLICK: {"event_id": "c1", "ts": NOW - 60, "campaign_id": "spring",
                      "channel": "email"},
    EventType.SPEND: {"event_id": "s1", "ts": NOW - 60, "campaign_id": "spring",
                      "amount": "12.50", "currency": "EUR"},
    EventType.SIGNUP: {"event_id": "u1", "ts": NOW - 60, "campaign_id": "spring",
                       "lead_id": "l1"},
}  # fmt: skip
HOSTILE_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b'"\\ud800"',
                  b"18446744073709551616", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00",
                  b"[" * 1100, b"{" * 300, b'"' + b"x" * 70_000 + b'"', b"null", b"[]", b"{}",
                  b"\xef\xbb\xbf", b",", b"]", b"}", b'"\\u0000"', b"-0", b"1e-400"]  # fmt: skip


def check(items: list[Event | Rejected], value: bytes | None) -> None:
    """The contract every result honours, whatever the input was."""
    assert items, "a message always yields at least one item"
    for item in items:
        assert isinstance(item, Event | Rejected)
        if isinstance(item, Rejected):
            assert isinstance(item.reason, Reason)
            assert item.reason is not Reason.INTERNAL_ERROR
            assert item.detail
            assert isinstance(item.raw, bytes)
            assert len(item.raw) <= max(len(value or b""), 4096)
            headers = dead_letter_headers(item, "mkt.clicks", 0, 1)  # encodable, bounded
            assert sum(len(v) for _, v in headers) < 2048


def mutate(base: bytes, data: st.DataObject) -> bytes:
    out = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        pos = data.draw(st.integers(0, len(out)), label="pos")
        choice = data.draw(st.integers(0, 3), label="op")
        if choice == 0:
            out[pos:pos] = data.draw(st.sampled_from(HOSTILE_TOKENS), label="token")
        elif choice == 1:
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        elif choice == 2:
            del out[pos : pos + data.draw(st.integers(1, 16), label="cut")]
        else:
            out = out[:pos]  # truncated
    return bytes(out)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), KINDS)
def test_arbitrary_bytes_always_yield_events_or_reasons(value: bytes, kind: EventType) -> None:
    check(decode_message(value, kind, LIMITS), value)


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.sampled_from(list(VALID)), st.booleans(), st.data())
def test_mutated_valid_messages_never_raise(kind: EventType, batch: bool, data: Any) -> None:
    base = orjson.dumps([VALID[kind], VALID[kind]] if batch else VALID[kind])
    value = mutate(base, data)
    check(decode_message(value, kind, LIMITS), value)


json_text = st.recursive(
    st.sampled_from(["null", "true", "1", "-0", "1e308", "1e-400", '"x"', '"\\ud83d\\ude00"',
                     '"\\u0000"', "18446744073709551615", "-9223372036854775809"]),
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.lists(st.tuples(st.sampled_from(["event_id", "ts", "campaign_id", "amount", "x"]), inner),
               max_size=4).map(lambda kv: "{" + ",".join(f'"{k}":{v}' for k, v in kv) + "}"),
    max_leaves=25,
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_text, KINDS)
def test_arbitrary_json_documents_never_raise(text: str, kind: EventType) -> None:
    value = text.encode()
    items = decode_message(value, kind, LIMITS)
    check(items, value)
    doc = orjson.loads(value)
    if isinstance(doc, list) and doc:
        assert len(items) == len(doc)  # one result per element: nothing dropped or doubled
        for i, item in enumerate(items):
            if isinstance(item, Rejected):
                assert item.index == i
                assert orjson.loads(item.raw) == doc[i]  # the element, re-encoded alone
    elif isinstance(items[0], Rejected):
        assert items[0].raw == value  # a single event is dead-lettered byte for byte


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=30,
)  # fmt: skip


@given(json_values)
def test_deep_encoding_is_orjson_encoding(value: Any) -> None:
    assert _encode_deep(value) == orjson.dumps(value)


def nested(depth: int, shape: str) -> bytes:
    """An event-sized object whose ``x`` field nests ``depth - 1`` containers deep."""
    opener, closer = (b"[", b"]") if shape == "list" else (b'{"a":', b"}")
    inner = opener * (depth - 1) + (b"1" if shape == "dict" else b"") + closer * (depth - 1)
    return b'{"event_id":"d1","ts":%d,"campaign_id":"spring","x":%s}' % (NOW - 60, inner)


@pytest.mark.parametrize("shape", ["list", "dict"])
@pytest.mark.parametrize("depth", [2, 100, MAX_NESTING, MAX_NESTING + 1, 300, 1024, 1025, 5000])
def test_nesting_at_every_depth(depth: int, shape: str) -> None:
    event = nested(depth, shape)
    good = orjson.dumps(VALID[EventType.CLICK])
    single = decode_message(event, EventType.CLICK, LIMITS)
    message = b"[" + good + b"," + event + b"," + good + b"]"
    batch = decode_message(message, EventType.CLICK, LIMITS)
    check(single, event)
    check(batch, message)
    if depth > 1024:  # past orjson's parser limit: not JSON it accepts, whole message rejected
        assert [(r.reason, r.index) for r in single + batch if isinstance(r, Rejected)] == [
            (Reason.INVALID_JSON, None)
        ] * 2
        return
    if depth <= MAX_NESTING:
        assert isinstance(single[0], Event)
        assert all(isinstance(item, Event) for item in batch)
        return
    assert isinstance(single[0], Rejected) and single[0].reason is Reason.TOO_DEEP
    assert single[0].raw == event
    if depth + 1 > 1024:  # one level more inside the batch: over the parser limit
        assert [(r.reason, r.index) for r in batch if isinstance(r, Rejected)] == [
            (Reason.INVALID_JSON, None)
        ]
        return
    first, deep, last = batch
    assert isinstance(first, Event) and isinstance(last, Event)  # neighbours survive
    assert isinstance(deep, Rejected) and deep.reason is Reason.TOO_DEEP and deep.index == 1
    assert deep.raw == event  # its own bytes, never a copy of the whole batch


def test_a_huge_batch_is_one_dead_letter_not_a_hundred_thousand() -> None:
    for element in (b"{}", b"1", b"null", b'{"a":1}'):
        value = b"[" + b",".join([element] * 100_000) + b"]"
        (item,) = decode_message(value, EventType.CLICK, LIMITS)
        assert isinstance(item, Rejected) and item.reason is Reason.TOO_LARGE
        assert "100000" in item.detail and item.raw == value
    at_cap = b"[" + b",".join([b"{}"] * MAX_BATCH_EVENTS) + b"]"
    items = decode_message(at_cap, EventType.CLICK, LIMITS)
    assert len(items) == MAX_BATCH_EVENTS
    assert {r.reason for r in items if isinstance(r, Rejected)} == {Reason.MISSING_FIELD}


def test_ten_megabytes_keep_only_a_prefix() -> None:
    value = orjson.dumps({**VALID[EventType.CLICK], "pad": "y" * 10_000_000})
    (item,) = decode_message(value, EventType.CLICK, LIMITS)
    assert isinstance(item, Rejected) and item.reason is Reason.TOO_LARGE
    assert value.startswith(item.raw) and len(item.raw) == 4096


@pytest.mark.parametrize(
    "amount", ["1_000", "\u0663", "١٢", " 1e999999 ", "Infinity", "+5", ".5", "5.", "1e", "0x1"]
)
def test_only_json_shaped_numeric_strings_are_amounts(amount: str) -> None:
    (item,) = decode_message(
        orjson.dumps({**VALID[EventType.SPEND], "amount": amount}), EventType.SPEND, LIMITS
    )
    assert isinstance(item, Rejected) and item.reason is Reason.INVALID_AMOUNT


@pytest.mark.parametrize(("amount", "micros"), [("12.50", 13_500_000), (" 2 ", 2_160_000),
                                                ("1E2", 108_000_000), ("-0", 0)])  # fmt: skip
def test_numeric_strings_in_json_form_are_amounts(amount: str, micros: int) -> None:
    (item,) = decode_message(
        orjson.dumps({**VALID[EventType.SPEND], "amount": amount}), EventType.SPEND, LIMITS
    )
    assert isinstance(item, Event) and item.amount_micros == micros


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"\xef\xbb\xbf{}", Reason.INVALID_JSON),  # a BOM is valid UTF-8, not valid JSON
     (b'{"event_id":"\xc3"}', Reason.INVALID_UTF8), (b"\xed\xa0\x80", Reason.INVALID_UTF8),
     (b'"\\ud800"', Reason.INVALID_JSON), (b"\x00", Reason.INVALID_JSON)],
)  # fmt: skip
def test_utf8_and_json_errors_are_told_apart(value: bytes, reason: Reason) -> None:
    (item,) = decode_message(value, EventType.CLICK, LIMITS)
    assert isinstance(item, Rejected) and item.reason is reason
