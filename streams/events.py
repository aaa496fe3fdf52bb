"""Input events: one JSON object or a JSON array of them per Kafka message (SPEC §1).

Every event is validated on its own, so one bad event never drops its neighbours. A bad
event is not an exception that escapes: it becomes a ``Rejected`` record (errors as data)
with a short reason code for the ``error.reason`` header and a specific detail.

What each type carries is declared once, in ``FIELDS`` (a field's kind and limits) and
``SHAPES`` (which fields a type has, required or not, in the order they are checked). The
checked path reads every limit from there, and the JSON Schema (``streams/schema.py``),
the README's field table and the producer client are generated from the same two tables.
The trap: a check written in a parser but not declared would make the published schema
lie to producers; so the parsers have no field names or limits of their own, and the
fast path for impressions, clicks and opens binds its limits from ``FIELDS`` too (a
property test holds it to the checked path).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from funnelpulse.names import CHANNELS as CHANNELS
from funnelpulse.names import DEFAULT_CHANNEL_ALIASES as DEFAULT_CHANNEL_ALIASES
from funnelpulse.names import TOPIC_SUFFIXES, channel_table
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

TOPIC_SUFFIX: Mapping[EventType, str] = {kind: TOPIC_SUFFIXES[kind] for kind in EventType}
DEFAULT_CHANNELS = channel_table(CHANNELS, DEFAULT_CHANNEL_ALIASES)
STAGES = ("lead", "mql", "sql", "opportunity", "won", "lost")
NO_CAMPAIGN = "(none)"
MAX_EVENT_BYTES = 64 * 1024
MAX_BATCH_EVENTS = 10_000  # one hostile 300 KB message must not become 100,000 dead letters
MAX_NESTING = 254  # orjson re-encodes no deeper: a deeper batch element has no bytes of its own


class Kind(StrEnum):
    """How a field is checked (and described in the JSON Schema)."""

    TEXT = "text"
    TS = "ts"
    AMOUNT = "amount"
    CURRENCY = "currency"
    COUNT = "count"
    CHOICE = "choice"
    CHANNEL = "channel"


@dataclass(frozen=True)
class Field:
    """One event field: what the validator checks, the schema and the README say."""

    kind: Kind
    doc: str
    min_len: int = 0  # text: required text is never empty, whatever this says
    max_len: int = 128
    chars: str = ""  # text: a regex character class the whole value must be made of
    choices: tuple[str, ...] = ()
    high: int = 0  # count and amount: the largest value accepted
    low: int = 0


FIELDS: Mapping[str, Field] = {
    "event_id": Field(Kind.TEXT, "idempotency key: repeated within the dedup horizon (same "
                      "type; and campaign, but for funnel events) it counts once"),
    "ts": Field(Kind.TS, "event time: RFC 3339 with an offset, or epoch seconds (numbers "
                "above 1e11: milliseconds); at most `FUNNELPULSE_HORIZON` old and "
                "`FUNNELPULSE_MAX_FUTURE` ahead"),
    "campaign_id": Field(Kind.TEXT, "the campaign, and the message key", min_len=1,
                         chars="A-Za-z0-9._:-"),
    "channel": Field(Kind.CHANNEL, "normalised (trimmed, lower case); a known channel or an "
                     "alias of one; anything else counts as `other`"),
    "count": Field(Kind.COUNT, "impressions this event stands for (bulk reports)", low=1,
                   high=1_000_000),
    "user_id": Field(Kind.TEXT, "the visitor"),
    "lead_id": Field(Kind.TEXT, "the lead: created by its sign-up; without `campaign_id` "
                     "an event takes its sign-up's campaign and channel"),
    "stage": Field(Kind.CHOICE, "the funnel stage the lead entered", choices=STAGES),
    "amount": Field(Kind.AMOUNT, "money: a JSON number or a numeric string, 0..1e12",
                    high=10**12),
    "currency": Field(Kind.CURRENCY, "ISO 4217 code with a rate in `FUNNELPULSE_FX_RATES`"),
    "customer_id": Field(Kind.TEXT, "the first purchase of a customer counts a new customer"),
    "order_id": Field(Kind.TEXT, "the order"),
}  # fmt: skip
TYPE_DOC = "optional; when present, it must be the type of the topic"


class Slot(NamedTuple):
    name: str
    required: bool


def _shape(*names: str) -> tuple[Slot, ...]:
    """``"name"`` is required, ``"name?"`` optional, in the order they are checked (the
    first problem found is the one reported); every type starts with event_id and ts."""
    return tuple(Slot(n.rstrip("?"), not n.endswith("?")) for n in ("event_id", "ts", *names))


_TOUCH = ("campaign_id", "channel?", "user_id?")
SHAPES: Mapping[EventType, tuple[Slot, ...]] = {
    EventType.IMPRESSION: _shape("count?", *_TOUCH),
    EventType.CLICK: _shape(*_TOUCH),
    EventType.OPEN: _shape(*_TOUCH),
    EventType.SIGNUP: _shape("campaign_id", "channel?", "lead_id", "user_id?"),
    EventType.LEAD_STAGE: _shape("campaign_id?", "channel?", "lead_id", "stage", "user_id?"),
    EventType.PURCHASE: _shape("order_id?", "campaign_id?", "channel?", "lead_id?", "amount",
                               "currency", "customer_id?", "user_id?"),
    EventType.SPEND: _shape("campaign_id", "channel?", "amount", "currency"),
}  # fmt: skip
MAX_AMOUNT = Decimal(FIELDS["amount"].high)
_CHARS = {name: re.compile(f"[{f.chars}]*", re.ASCII) for name, f in FIELDS.items() if f.chars}
_CAMPAIGN_FIELD = FIELDS["campaign_id"]
_CAMPAIGN = re.compile(
    f"[{_CAMPAIGN_FIELD.chars}]{{{_CAMPAIGN_FIELD.min_len},{_CAMPAIGN_FIELD.max_len}}}", re.ASCII
)
_ID_MAX, _USER_MAX = FIELDS["event_id"].max_len, FIELDS["user_id"].max_len
_COUNT_LOW, _COUNT_HIGH = FIELDS["count"].low, FIELDS["count"].high
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
    unknown_channel: str | None = None  # the name that became "other", for the metric


_make_event = Event._make


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
    horizon: float  # oldest event time accepted, seconds before now
    fx_rates: Mapping[str, Decimal]
    max_message_bytes: int = 1024 * 1024
    channels: Mapping[str, str] = field(default_factory=lambda: DEFAULT_CHANNELS)


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
    if not 0 < len(event_id) <= _ID_MAX:
        return None
    raw_ts: Any = get("ts")
    if type(raw_ts) in _NUMBER_TYPES and 0 <= raw_ts < 1e15:  # finite, not NaN
        ts = raw_ts / 1000.0 if raw_ts > 1e11 else float(raw_ts)
        if not limits.now - limits.horizon <= ts <= limits.now + limits.max_future:
            return None
    elif type(raw_ts) is str:
        ts = parse_ts(raw_ts, limits)  # raises what the checked path would raise here
    else:
        return None
    campaign = get("campaign_id")
    raw_channel = get("channel", "other")  # exact table names only: the rest is normalised
    channel = limits.channels.get(raw_channel) if type(raw_channel) is str else None
    user_id = get("user_id")
    count = get("count", 1) if kind is EventType.IMPRESSION else 1
    if (
        type(campaign) is not str
        or not _CAMPAIGN.fullmatch(campaign)
        or channel is None
        or (user_id is not None and (type(user_id) is not str or len(user_id) > _USER_MAX))
        or type(count) is not int
        or not _COUNT_LOW <= count <= _COUNT_HIGH
    ):
        return None
    return Event(kind, event_id, ts, campaign, channel, count=count, user_id=user_id)


def parse_checked(doc: Mapping[str, Any], topic_type: EventType, limits: Limits) -> Event:
    """Every declared field checked in order; BadEvent names the first problem found."""
    declared = doc.get("type")
    if declared is not None:
        if not isinstance(declared, str):
            raise BadEvent(Reason.WRONG_TYPE, f"type must be a string, not {_kind(declared)}")
        if declared != topic_type:
            raise BadEvent(Reason.TYPE_MISMATCH, f"type {declared!r} on the {topic_type} topic")
    values: dict[str, Any] = {}
    for name, required, check, spec in _PLANS[topic_type]:
        value = doc.get(name)
        if value is None:  # JSON null is an absent field
            if required:
                raise BadEvent(Reason.MISSING_FIELD, f"{name} is required")
            continue
        values[name] = check(name, value, spec, required, limits)
    return _event(topic_type, values, limits)


def _event(kind: EventType, values: Mapping[str, Any], limits: Limits) -> Event:
    """The checked values as an Event, built positionally (keywords cost ~0.4 µs)."""
    get = values.get
    channel = get("channel") or "other"
    known = limits.channels.get(channel)
    amount = get("amount")
    micros = 0 if amount is None else to_micros(amount * values["currency"])
    return _make_event((
        kind, values["event_id"], values["ts"], get("campaign_id"), known or "other",
        get("lead_id"), get("stage"), micros, get("count", 1), get("customer_id"),
        get("user_id"), None if known else channel,
    ))  # fmt: skip


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
    if ts < limits.now - limits.horizon:
        raise BadEvent(Reason.TS_TOO_OLD, f"ts is {limits.now - ts:.0f} s old, past the horizon")
    return ts


Check = Callable[[str, Any, Field, bool, Limits], Any]


def _text(name: str, value: Any, spec: Field, required: bool, _: Limits) -> str:
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be a string, not {_kind(value)}")
    low = max(spec.min_len, 1 if required else 0)
    if not low <= len(value) <= spec.max_len:
        raise BadEvent(Reason.INVALID_VALUE, f"{name} must be {low}-{spec.max_len} characters")
    if spec.chars and not _CHARS[name].fullmatch(value):
        raise BadEvent(Reason.INVALID_VALUE, f"{name} may only hold [{spec.chars}]")
    return value


def _ts(_name: str, value: Any, _spec: Field, _required: bool, limits: Limits) -> float:
    return parse_ts(value, limits)


def _channel(name: str, value: Any, _spec: Field, _required: bool, _: Limits) -> str:
    """The normalised name; ``_event`` looks it up (unknown: ``other``, and reported)."""
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be a string, not {_kind(value)}")
    return value.strip().lower()


def _amount(name: str, value: Any, spec: Field, _required: bool, _: Limits) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be a number, not {_kind(value)}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if isinstance(value, str) and not _NUMBER.fullmatch(text):  # not "1_000", "٣", "Infinity"
        raise BadEvent(Reason.INVALID_AMOUNT, f"{name} {value[:32]!r} is not a number")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadEvent(
            Reason.INVALID_AMOUNT, f"{name} {str(value)[:32]!r} is not a number"
        ) from None
    if not amount.is_finite() or amount < spec.low or amount > spec.high:
        bounds = f"{spec.low}..{spec.high:.0e}".replace("e+", "e")  # 0..1e12
        raise BadEvent(Reason.INVALID_AMOUNT, f"{name} {str(value)[:32]} is not in {bounds}")
    return amount


def _currency(name: str, value: Any, _spec: Field, _required: bool, limits: Limits) -> Decimal:
    """The currency's rate into the reporting currency."""
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be a string, not {_kind(value)}")
    rate = limits.fx_rates.get(value.strip().upper())
    if rate is None:
        raise BadEvent(Reason.UNKNOWN_CURRENCY, f"no exchange rate for {value[:16]!r}")
    return rate


def _count(name: str, value: Any, spec: Field, _required: bool, _: Limits) -> int:
    """A whole number; 2.0 is one too (JSON has one number type, and JSON Schema's
    ``integer`` accepts it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be an integer, not {_kind(value)}")
    if not spec.low <= value <= spec.high:
        raise BadEvent(Reason.INVALID_VALUE, f"{name} {value} is not in {spec.low}..{spec.high}")
    return value


def _choice(name: str, value: Any, spec: Field, _required: bool, _: Limits) -> str:
    if not isinstance(value, str):
        raise BadEvent(Reason.WRONG_TYPE, f"{name} must be a string, not {_kind(value)}")
    if value not in spec.choices:
        raise BadEvent(Reason.INVALID_VALUE, f"{name} {value[:32]!r} is not one of {spec.choices}")
    return value


_CHECKS: Mapping[Kind, Check] = {
    Kind.TEXT: _text,
    Kind.TS: _ts,
    Kind.CHANNEL: _channel,
    Kind.AMOUNT: _amount,
    Kind.CURRENCY: _currency,
    Kind.COUNT: _count,
    Kind.CHOICE: _choice,
}
# SHAPES with each field's check and declaration looked up once, not per event
_PLANS: Mapping[EventType, tuple[tuple[str, bool, Check, Field], ...]] = {
    kind: tuple((name, req, _CHECKS[FIELDS[name].kind], FIELDS[name]) for name, req in shape)
    for kind, shape in SHAPES.items()
}


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
