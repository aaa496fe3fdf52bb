"""Input events: one JSON object or a JSON array of them per Kafka message (SPEC §1).

Every event is validated on its own, so one bad event never drops its neighbours. A bad
event is not an exception that escapes: it becomes a ``Rejected`` record (errors as data)
with a short reason code for the ``error.reason`` header and a specific detail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from metrics.counts import to_micros


class EventType(StrEnum):
    IMPRESSION = "impression"
    CLICK = "click"
    OPEN = "open"
    SIGNUP = "signup"
    LEAD_STAGE = "lead_stage"
    PURCHASE = "purchase"
    SPEND = "spend"


# Funnel events are counted where their lead lives (first touch, once per stage); the
# others where their campaign does (streams/routing.py).
FUNNEL_TYPES = frozenset({EventType.SIGNUP, EventType.LEAD_STAGE, EventType.PURCHASE})

TOPIC_SUFFIX: Mapping[EventType, str] = {
    EventType.IMPRESSION: "impressions",
    EventType.CLICK: "clicks",
    EventType.OPEN: "opens",
    EventType.SIGNUP: "signups",
    EventType.LEAD_STAGE: "lead-stages",
    EventType.PURCHASE: "purchases",
    EventType.SPEND: "spend",
}
CHANNELS = frozenset(
    {
        "email",
        "paid_search",
        "paid_social",
        "display",
        "video",
        "affiliate",
        "organic",
        "referral",
        "direct",
        "other",
    }
)
STAGES = ("lead", "mql", "sql", "opportunity", "won", "lost")
NO_CAMPAIGN = "(none)"
MAX_EVENT_BYTES = 64 * 1024
MAX_BATCH_EVENTS = 10_000  # one hostile 300 KB message must not become 100,000 dead letters
MAX_NESTING = 254  # orjson re-encodes no deeper: a deeper batch element has no bytes of its own
MAX_AMOUNT = Decimal("1e12")
_CAMPAIGN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", re.ASCII)  # JSON's grammar


class Reason(StrEnum):
    """The ``error.reason`` codes; the detail names the field and the value's problem."""

    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    EMPTY_BATCH = "empty_batch"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    TYPE_MISMATCH = "type_mismatch"
    INVALID_AMOUNT = "invalid_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    INVALID_TS = "invalid_ts"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    TOO_DEEP = "too_deep"
    INTERNAL_ERROR = "internal_error"  # a bug, not the producer's fault: the message is kept


class BadEvent(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Event(NamedTuple):
    """A valid event. A named tuple, not a frozen dataclass: one is built per event, and a
    frozen dataclass's ``__init__`` costs a ``object.__setattr__`` per field."""

    type: EventType
    event_id: str
    ts: float
    campaign_id: str | None
    channel: str
    lead_id: str | None = None
    stage: str | None = None
    amount_micros: int = 0
    count: int = 1  # type: ignore[assignment]  # shadows tuple.count, on purpose
    customer_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str
    raw: bytes  # the message unchanged, or this element of a batch re-encoded
    index: int | None  # position in the batch; None for a single-event message


@dataclass(frozen=True)
class Limits:
    """What the clock and the configuration allow; ``now`` is injected, never read here."""

    now: float
    max_future: float
    retention: float
    fx_rates: Mapping[str, Decimal]
    max_message_bytes: int = 1024 * 1024


def decode_message(
    value: bytes | None, topic_type: EventType, limits: Limits
) -> list[Event | Rejected]:
    """All events of one Kafka message, each valid or rejected with its reason."""
    raw = value or b""
    if len(raw) > limits.max_message_bytes:
        return [_reject(Reason.TOO_LARGE, f"message is {len(raw)} bytes", raw[:4096], None)]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = (
            Reason.INVALID_UTF8 if "not valid utf-8" in str(exc).lower() else Reason.INVALID_JSON
        )
        return [_reject(reason, str(exc)[:200], raw, None)]
    if isinstance(doc, dict):
        if len(raw) > MAX_EVENT_BYTES:
            return [_reject(Reason.TOO_LARGE, f"event is {len(raw)} bytes", raw, None)]
        if raw.count(b"{") + raw.count(b"[") > MAX_NESTING and _too_deep(doc):
            return [_reject(Reason.TOO_DEEP, _DEEP, raw, None)]
        return [_validate_one(doc, topic_type, limits, raw, None)]
    if not isinstance(doc, list):
        return [_reject(Reason.NOT_AN_OBJECT, f"message is a JSON {_kind(doc)}", raw, None)]
    if not doc:
        return [_reject(Reason.EMPTY_BATCH, "message is an empty JSON array", raw, None)]
    if len(doc) > MAX_BATCH_EVENTS:
        detail = f"batch of {len(doc)} events; at most {MAX_BATCH_EVENTS}"
        return [_reject(Reason.TOO_LARGE, detail, raw, None)]
    return [_validate_element(item, topic_type, limits, i) for i, item in enumerate(doc)]


_DEEP = f"event nests objects/arrays deeper than {MAX_NESTING} levels"


def _too_deep(value: Any) -> bool:
    """Iterative, so that no nesting orjson accepts (1,024 levels) can exhaust the stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _encode_deep(value: Any) -> bytes:
    """orjson's compact encoding without its depth limit (an explicit stack), so a deep
    element is dead-lettered as its own bytes, never as a copy of the whole message."""
    out: list[bytes] = []
    todo: list[Any] = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, bytes):  # a piece of syntax queued below; JSON has no bytes
            out.append(node)
            continue
        parts: list[Any]
        if isinstance(node, dict):
            parts = [b"{"]
            for n, (key, child) in enumerate(node.items()):
                parts += [b"," if n else b"", orjson.dumps(key) + b":", child]
            parts.append(b"}")
        elif isinstance(node, list):
            parts = [b"["]
            for n, child in enumerate(node):
                parts += [b"," if n else b"", child]
            parts.append(b"]")
        else:
            out.append(orjson.dumps(node))
            continue
        todo.extend(reversed(parts))
    return b"".join(out)


def _validate_element(item: Any, topic_type: EventType, limits: Limits, i: int) -> Event | Rejected:
    try:
        raw = orjson.dumps(item)
    except TypeError:  # orjson's depth limit: only events nested absurdly deep get here
        return _reject(Reason.TOO_DEEP, _DEEP, _encode_deep(item), i)
    if not isinstance(item, dict):
        return _reject(Reason.NOT_AN_OBJECT, f"batch element is a JSON {_kind(item)}", raw, i)
    if len(raw) > MAX_EVENT_BYTES:
        return _reject(Reason.TOO_LARGE, f"event is {len(raw)} bytes", raw, i)
    return _validate_one(item, topic_type, limits, raw, i)


def _validate_one(
    doc: dict[str, Any], topic_type: EventType, limits: Limits, raw: bytes, index: int | None
) -> Event | Rejected:
    try:
        return parse_event(doc, topic_type, limits)
    except BadEvent as bad:
        return _reject(bad.reason, bad.detail, raw, index)


def _reject(reason: Reason, detail: str, raw: bytes, index: int | None) -> Rejected:
    return Rejected(reason, detail, raw, index)


def parse_event(doc: Mapping[str, Any], topic_type: EventType, limits: Limits) -> Event:
    """One event object → Event, or BadEvent naming the first problem found."""
    if topic_type in _TOUCH_TYPES:
        event = _well_formed_touch(doc, topic_type, limits)
        if event is not None:
            return event
    return parse_checked(doc, topic_type, limits)


_TOUCH_TYPES = frozenset({EventType.IMPRESSION, EventType.CLICK, EventType.OPEN})
_NUMBER_TYPES = (int, float)


def _well_formed_touch(doc: Mapping[str, Any], kind: EventType, limits: Limits) -> Event | None:
    """The common case — a well-formed impression, click or open — in one function.

    Impressions, clicks and opens are most of the traffic, and the checked path spends
    more time on Python calls than on checks. Anything unusual returns None and goes
    through ``parse_checked``, which finds and names the problem; a property test holds
    the two paths to the same result.
    """
    get = doc.get
    declared = get("type")
    event_id = get("event_id")
    if (declared is not None and declared != kind) or type(event_id) is not str:
        return None
    if not 0 < len(event_id) <= 128:
        return None
    raw_ts: Any = get("ts")
    if type(raw_ts) in _NUMBER_TYPES and 0 <= raw_ts < 1e15:  # finite, not NaN
        ts = raw_ts / 1000.0 if raw_ts > 1e11 else float(raw_ts)
        if not limits.now - limits.retention <= ts <= limits.now + limits.max_future:
            return None
    elif type(raw_ts) is str:
        ts = parse_ts(raw_ts, limits)  # raises what the checked path would raise here
    else:
        return None
    campaign = get("campaign_id")
    channel = get("channel", "other")
    user_id = get("user_id")
    count = get("count", 1) if kind is EventType.IMPRESSION else 1
    if (
        type(campaign) is not str
        or not _CAMPAIGN.fullmatch(campaign)
        or type(channel) is not str
        or channel not in CHANNELS
        or (user_id is not None and (type(user_id) is not str or len(user_id) > 128))
        or type(count) is not int
        or not 1 <= count <= 1_000_000
    ):
        return None
    return Event(kind, event_id, ts, campaign, channel, count=count, user_id=user_id)


def parse_checked(doc: Mapping[str, Any], topic_type: EventType, limits: Limits) -> Event:
    """Every field checked in order; BadEvent names the first problem found."""
    declared = doc.get("type")
    if declared is not None:
        if not isinstance(declared, str):
            raise BadEvent(Reason.WRONG_TYPE, f"type must be a string, not {_kind(declared)}")
        if declared != topic_type:
            raise BadEvent(Reason.TYPE_MISMATCH, f"type {declared!r} on the {topic_type} topic")
    event_id = _string(doc, "event_id", required=True, min_len=1) or ""
    ts = parse_ts(_required(doc, "ts"), limits)
    return _PARSERS[topic_type](doc, topic_type, event_id, ts, limits)


def parse_ts(value: Any, limits: Limits) -> float:
    """RFC 3339 string, or epoch seconds / milliseconds (numbers above 1e11 are ms)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadEvent(Reason.WRONG_TYPE, f"ts must be a string or a number, not {_kind(value)}")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            raise BadEvent(Reason.INVALID_TS, f"ts {value[:64]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise BadEvent(Reason.INVALID_TS, f"ts {value[:64]!r} has no UTC offset")
        ts = parsed.timestamp()
    else:
        if not math.isfinite(value) or value < 0:
            raise BadEvent(Reason.INVALID_TS, f"ts {value!r} is not a finite epoch time")
        ts = value / 1000.0 if value > 1e11 else float(value)
    if ts > limits.now + limits.max_future:
        raise BadEvent(Reason.TS_IN_FUTURE, f"ts is {ts - limits.now:.0f} s in the future")
    if ts < limits.now - limits.retention:
        raise BadEvent(Reason.TS_TOO_OLD, f"ts is {limits.now - ts:.0f} s old, past retention")
    return ts


def _required(doc: Mapping[str, Any], field: str) -> Any:
    value = doc.get(field)
    if value is None:
        raise BadEvent(Reason.MISSING_FIELD, f"{field} is required")
    return value


def _string(
    doc: Mapping[str, Any], field: str, *, required: bool = False, min_len: int = 0
) -> str | None:
    value = doc.get(field)
    if value is None:
        if required:
            raise BadEvent(Reason.MISSING_FIELD, f"{field} is required")
        return None
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"{field} must be a string, not {_kind(value)}")
    if not min_len <= len(value) <= 128:
        raise BadEvent(Reason.INVALID_VALUE, f"{field} must be {min_len}-128 characters")
    return value


def _campaign(doc: Mapping[str, Any], required: bool) -> str | None:
    value = _string(doc, "campaign_id", required=required, min_len=1)
    if value is not None and not _CAMPAIGN.fullmatch(value):
        raise BadEvent(Reason.INVALID_VALUE, "campaign_id may only hold [A-Za-z0-9._:-]")
    return value


def _channel(doc: Mapping[str, Any]) -> str:
    value = doc.get("channel")
    if value is None:
        return "other"
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"channel must be a string, not {_kind(value)}")
    normalised = value.strip().lower()
    return normalised if normalised in CHANNELS else "other"


def _money(doc: Mapping[str, Any], limits: Limits) -> int:
    value = _required(doc, "amount")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadEvent(Reason.WRONG_TYPE, f"amount must be a number, not {_kind(value)}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if isinstance(value, str) and not _NUMBER.fullmatch(text):  # not "1_000", "٣", "Infinity"
        raise BadEvent(Reason.INVALID_AMOUNT, f"amount {value[:32]!r} is not a number")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadEvent(
            Reason.INVALID_AMOUNT, f"amount {str(value)[:32]!r} is not a number"
        ) from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise BadEvent(Reason.INVALID_AMOUNT, f"amount {str(value)[:32]} is not in 0..1e12")
    currency = _required(doc, "currency")
    if not isinstance(currency, str):
        raise BadEvent(Reason.WRONG_TYPE, f"currency must be a string, not {_kind(currency)}")
    rate = limits.fx_rates.get(currency.strip().upper())
    if rate is None:
        raise BadEvent(Reason.UNKNOWN_CURRENCY, f"no exchange rate for {currency[:16]!r}")
    return to_micros(amount * rate)


def _count(doc: Mapping[str, Any]) -> int:
    value = doc.get("count", 1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(Reason.WRONG_TYPE, f"count must be an integer, not {_kind(value)}")
    if not 1 <= value <= 1_000_000:
        raise BadEvent(Reason.INVALID_VALUE, f"count {value} is not in 1..1000000")
    return value


def _stage(doc: Mapping[str, Any]) -> str:
    value = _required(doc, "stage")
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"stage must be a string, not {_kind(value)}")
    if value not in STAGES:
        raise BadEvent(Reason.INVALID_VALUE, f"stage {value[:32]!r} is not one of {STAGES}")
    return value


Parser = Callable[[Mapping[str, Any], EventType, str, float, Limits], Event]


def _touch(doc: Mapping[str, Any], kind: EventType, event_id: str, ts: float, _: Limits) -> Event:
    count = _count(doc) if kind is EventType.IMPRESSION else 1
    return Event(
        kind,
        event_id,
        ts,
        _campaign(doc, True),
        _channel(doc),
        count=count,
        user_id=_string(doc, "user_id"),
    )


def _signup(doc: Mapping[str, Any], kind: EventType, event_id: str, ts: float, _: Limits) -> Event:
    return Event(
        kind,
        event_id,
        ts,
        _campaign(doc, True),
        _channel(doc),
        lead_id=_string(doc, "lead_id", required=True, min_len=1),
        user_id=_string(doc, "user_id"),
    )


def _lead_stage(
    doc: Mapping[str, Any], kind: EventType, event_id: str, ts: float, _: Limits
) -> Event:
    return Event(
        kind,
        event_id,
        ts,
        _campaign(doc, False),
        _channel(doc),
        lead_id=_string(doc, "lead_id", required=True, min_len=1),
        stage=_stage(doc),
        user_id=_string(doc, "user_id"),
    )


def _purchase(
    doc: Mapping[str, Any], kind: EventType, event_id: str, ts: float, limits: Limits
) -> Event:
    _string(doc, "order_id")
    return Event(
        kind,
        event_id,
        ts,
        _campaign(doc, False),
        _channel(doc),
        lead_id=_string(doc, "lead_id"),
        amount_micros=_money(doc, limits),
        customer_id=_string(doc, "customer_id"),
        user_id=_string(doc, "user_id"),
    )


def _spend(
    doc: Mapping[str, Any], kind: EventType, event_id: str, ts: float, limits: Limits
) -> Event:
    return Event(
        kind, event_id, ts, _campaign(doc, True), _channel(doc), amount_micros=_money(doc, limits)
    )


_PARSERS: Mapping[EventType, Parser] = {
    EventType.IMPRESSION: _touch,
    EventType.CLICK: _touch,
    EventType.OPEN: _touch,
    EventType.SIGNUP: _signup,
    EventType.LEAD_STAGE: _lead_stage,
    EventType.PURCHASE: _purchase,
    EventType.SPEND: _spend,
}


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
