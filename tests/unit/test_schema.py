"""The published JSON Schema: generated from the validator's declaration, committed as it
is generated, and true: whatever it accepts the validator accepts (but for the clock and
the currency table), and the simulator's traffic follows it."""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.protocols import Validator

from funnelpulse.settings import Settings
from funnelpulse.simulator import FunnelModel
from streams import schema
from streams.events import FIELDS, SHAPES, Event, EventType, Reason, decode_message

from .test_events import BASE, LIMITS, NOW, NOW_RFC, doc, field_values

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "schema"
RUNTIME = {Reason.TS_IN_FUTURE, Reason.TS_TOO_OLD, Reason.UNKNOWN_CURRENCY}


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Any:
    """``pattern`` with ECMA-262's ``$`` (end of input): Python's also matches before a
    final newline, so "cmp\\n" would pass a pattern the validator's fullmatch refuses."""
    if validator.is_type(instance, "string"):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(python, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Ecma = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


@cache
def published(name: str) -> Validator:
    document = orjson.loads((PUBLISHED / name).read_bytes())
    jsonschema.Draft202012Validator.check_schema(document)
    return Ecma(document)  # type: ignore[no-any-return]


def test_the_committed_files_are_what_the_code_generates() -> None:
    generated = schema.documents(schema.SchemaOptions.from_settings(Settings()))
    committed = {path.name: path.read_text(encoding="utf-8") for path in PUBLISHED.glob("*")}
    assert set(committed) == set(generated)
    for name, document in generated.items():
        assert committed[name] == schema.dumps(document), (
            f"docs/schema/{name} is stale: run make schema"
        )


@pytest.mark.parametrize("kind", list(EventType))
def test_every_type_has_its_declared_fields_and_required_ones(kind: EventType) -> None:
    event = orjson.loads((PUBLISHED / f"{kind.value}.json").read_bytes())["$defs"]["event"]
    assert list(event["properties"]) == ["type", *(slot.name for slot in SHAPES[kind])]
    assert event["required"] == [slot.name for slot in SHAPES[kind] if slot.required]
    assert event["additionalProperties"] is True  # the validator ignores unknown fields


@pytest.mark.parametrize("kind", list(EventType))
def test_a_valid_event_and_a_batch_of_them_are_valid_messages(kind: EventType) -> None:
    message = published(f"{kind.value}.json")
    assert message.is_valid(BASE[kind])
    assert message.is_valid([BASE[kind], doc(kind, event_id="second")])
    assert not message.is_valid([])
    assert not message.is_valid("event")
    typed = {**BASE[kind], "type": kind.value}
    assert published("events.json").is_valid(typed)
    assert not published("events.json").is_valid(BASE[kind])  # names no type


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (EventType.CLICK, "campaign_id", "spring sale"),
        (EventType.CLICK, "campaign_id", "cmp\n"),
        (EventType.CLICK, "event_id", ""),
        (EventType.CLICK, "event_id", "e" * 129),
        (EventType.CLICK, "ts", "2027-01-15T08:00:00"),  # no offset
        (EventType.CLICK, "ts", True),
        (EventType.CLICK, "channel", 3),
        (EventType.IMPRESSION, "count", 0),
        (EventType.IMPRESSION, "count", 2.5),
        (EventType.LEAD_STAGE, "stage", "MQL"),
        (EventType.SPEND, "amount", -1),
        (EventType.SPEND, "amount", "1_000"),
        (EventType.SPEND, "amount", 1e13),
        (EventType.SPEND, "currency", None),
        (EventType.SIGNUP, "lead_id", None),
        (EventType.CLICK, "type", "open"),
    ],
)
def test_what_the_validator_refuses_the_schema_refuses(
    kind: EventType, field: str, value: Any
) -> None:
    event = {**BASE[kind], field: value}
    assert not published(f"{kind.value}.json").is_valid(event)
    [item] = decode_message(orjson.dumps(event), kind, LIMITS)
    assert not isinstance(item, Event)


def test_optional_fields_may_be_null_as_the_validator_reads_null_as_absent() -> None:
    for kind, shape in SHAPES.items():
        for name, required in shape:
            event = {**BASE[kind], name: None}
            assert published(f"{kind.value}.json").is_valid(event) is not required, name


# Valid values of every field, and the hostile ones of the validator's own tests
good_values = st.sampled_from(
    [NOW_RFC, "2027-01-15t08:00:00.5+01:00", NOW, NOW * 1000, "cmp-1", "lead-1", "mql",
     "EUR", "GBP", "12.50", 12.5, 0, 3, 3.0, "", "e" * 128, "email", "CPC", "spend"]
)  # fmt: skip
mutations = st.dictionaries(
    st.sampled_from(["type", *FIELDS]), good_values | field_values, max_size=3
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(EventType)), mutations)
def test_what_the_schema_accepts_the_validator_accepts(
    kind: EventType, changes: dict[str, Any]
) -> None:
    """But for the clock (ts within the horizon, not ahead) and the currency table."""
    event = {**BASE[kind], **changes}
    if not published(f"{kind.value}.json").is_valid(event):
        return
    [item] = decode_message(orjson.dumps(event), kind, LIMITS)
    assert isinstance(item, Event) or item.reason in RUNTIME, (event, item)


def test_the_simulators_traffic_follows_the_published_schema() -> None:
    """Messages as ``funnelpulse simulate`` sends them: batches per (type, key)."""
    model = FunnelModel(seed=7, campaigns_count=12)
    batches: dict[tuple[EventType, str], list[dict[str, Any]]] = defaultdict(list)

    def emit(kind: EventType, event: dict[str, Any]) -> None:
        batches[(kind, str(event.get("campaign_id", event.get("lead_id", ""))))].append(event)

    now = NOW
    for step in range(3000):
        model.step(now + step / 100, emit)
        if step % 200 == 0:
            model.spend_reports(now + step / 100, emit)
    assert {kind for kind, _ in batches} == set(EventType)
    for (kind, _), events in batches.items():
        message = published(f"{kind.value}.json")
        errors = [e.message for e in message.iter_errors(events)]
        assert not errors, (kind, errors[:3])
        for single in events:
            assert message.is_valid(single)
