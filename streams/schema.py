"""JSON Schema (2020-12) of every event type, generated from what the validator checks.

``streams/events.py`` declares each field once (``FIELDS``: kind and limits) and each type's
fields (``SHAPES``: required or not); the validator reads its limits from there and this
module translates the same two tables, so the schema and the validator cannot drift. The
committed files (``docs/schema/``, ``make schema``) use the default settings; the worker
serves the schema of its own settings at ``GET /schema`` and ``GET /schema/<type>``.

The trap: a schema is static. What depends on the clock or the configuration (``ts``
within the horizon and at most ``FUNNELPULSE_MAX_FUTURE`` ahead, a currency with a rate) is
said in descriptions and checked at run time, so "valid against the schema" means
"accepted, unless too old, too new or in an unknown currency" (a property test holds the
validator to that). The schema is a little stricter than the validator where the
validator forgives (amount strings without exponent or spaces, upper-case currency): a
producer that follows it is always right.

``python -m streams.schema [--output-dir docs/schema]`` writes ``events.json`` (every
type, ``$defs`` per type; an event naming its ``type``, as ``funnelpulse replay`` reads)
and ``<type>.json`` (one topic's message: an event, or a batch of them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnelpulse.settings import Settings

from .events import (
    FIELDS,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    SHAPES,
    TOPIC_SUFFIX,
    TYPE_DOC,
    EventType,
    Field,
    Kind,
)

Json = dict[str, Any]
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MEDIA_TYPE = "application/schema+json"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "docs" / "schema"
TYPE_DOCS: Mapping[EventType, str] = {
    EventType.IMPRESSION: "an ad shown, or an e-mail delivered (`channel` email): the "
    "denominator of CTR and open rate",
    EventType.CLICK: "a click on an ad, an e-mail link or a landing page's call to action",
    EventType.OPEN: "an e-mail opened",
    EventType.SIGNUP: "a form fill, trial or newsletter sign-up: it creates a lead",
    EventType.LEAD_STAGE: "a lead moved to a funnel stage (each stage counts once per lead)",
    EventType.PURCHASE: "an order paid; the first of a `customer_id` is a new customer",
    EventType.SPEND: "marketing cost accrued (an ad platform's cost report, an invoice line)",
}
# RFC 3339 date-time, ECMA-262 and Python alike ([0-9], not \d: Python's \d is Unicode)
_DATE = r"(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
RFC3339 = rf"^{_DATE}[Tt ]{_TIME}([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
AMOUNT_TEXT = r"^[0-9]{1,12}(\.[0-9]+)?$"  # under 1e12, no exponent, no spaces


@dataclass(frozen=True)
class SchemaOptions:
    """The settings a schema shows: channel names and currencies (examples, docs)."""

    channels: tuple[str, ...]
    aliases: Mapping[str, str]
    currencies: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaOptions:
        return cls(settings.channels, settings.channel_aliases, tuple(sorted(settings.fx_rates)))


def event_schema(kind: EventType, options: SchemaOptions) -> Json:
    """One event of ``kind``: its fields, which are required; unknown fields are kept."""
    shape = SHAPES[kind]
    properties: Json = {"type": {"const": kind.value, "description": TYPE_DOC}}
    for name, required in shape:
        prop = field_schema(name, FIELDS[name], required, options)
        properties[name] = prop if required else _nullable(prop)
    return {
        "title": kind.value,
        "description": f"{TYPE_DOCS[kind]}. At most {MAX_EVENT_BYTES // 1024} KiB; fields "
        "not listed are allowed and ignored.",
        "type": "object",
        "properties": properties,
        "required": [name for name, required in shape if required],
        "additionalProperties": True,
    }


def field_schema(name: str, spec: Field, required: bool, options: SchemaOptions) -> Json:
    """The JSON Schema of one field, from the same declaration the validator checks."""
    return {"description": spec.doc, **_BY_KIND[spec.kind](spec, required, options)}


def _text(spec: Field, required: bool, _: SchemaOptions) -> Json:
    out: Json = {"type": "string"}
    low = max(spec.min_len, 1 if required else 0)
    if low:
        out["minLength"] = low
    out["maxLength"] = spec.max_len
    if spec.chars:
        out["pattern"] = f"^[{spec.chars}]+$"
    return out


def _ts(_spec: Field, _required: bool, _: SchemaOptions) -> Json:
    return {
        "anyOf": [
            {"type": "string", "format": "date-time", "pattern": RFC3339},
            {"type": "number", "minimum": 0},
        ]
    }


def _amount(spec: Field, _required: bool, _: SchemaOptions) -> Json:
    return {
        "anyOf": [
            {"type": "number", "minimum": spec.low, "maximum": spec.high},
            {"type": "string", "pattern": AMOUNT_TEXT},
        ]
    }


def _currency(_spec: Field, _required: bool, options: SchemaOptions) -> Json:
    return {"type": "string", "pattern": "^[A-Z]{3}$", "examples": list(options.currencies)}


def _count(spec: Field, _required: bool, _: SchemaOptions) -> Json:
    return {"type": "integer", "minimum": spec.low, "maximum": spec.high}


def _choice(spec: Field, _required: bool, _: SchemaOptions) -> Json:
    return {"type": "string", "enum": list(spec.choices)}


def _channel(_spec: Field, _required: bool, options: SchemaOptions) -> Json:
    aliases = ", ".join(f"{alias} → {name}" for alias, name in options.aliases.items())
    return {
        "type": "string",
        "examples": list(options.channels),
        "$comment": f"aliases: {aliases}" if aliases else "no aliases",
    }


_BY_KIND = {
    Kind.TEXT: _text,
    Kind.TS: _ts,
    Kind.AMOUNT: _amount,
    Kind.CURRENCY: _currency,
    Kind.COUNT: _count,
    Kind.CHOICE: _choice,
    Kind.CHANNEL: _channel,
}


def _nullable(prop: Json) -> Json:
    """An optional field may also be null: the validator reads null as absent."""
    if "type" in prop:
        return {**prop, "type": [prop["type"], "null"]}
    return {**prop, "anyOf": [*prop["anyOf"], {"type": "null"}]}


def message_schema(kind: EventType, options: SchemaOptions) -> Json:
    """A message of ``kind``'s topic: one event, or a JSON array of them."""
    batch = f"a JSON array of 1 to {MAX_BATCH_EVENTS:,} of them (much cheaper to process)"
    return {
        "$schema": DIALECT,
        "title": f"funnelpulse {kind.value} message",
        "description": f"A message of the {TOPIC_SUFFIX[kind]!r} topic (after the prefix), "
        f"or the body of POST /events/{kind.value}: one {kind.value} event, or {batch}. "
        "Each event is validated on its own; a message is at most 1 MiB.",
        "$defs": {"event": event_schema(kind, options)},
        "oneOf": [
            {"$ref": "#/$defs/event"},
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_EVENTS,
                "items": {"$ref": "#/$defs/event"},
            },
        ],
    }


def events_schema(options: SchemaOptions) -> Json:
    """Every type in ``$defs``; the document itself validates an event naming its type."""
    return {
        "$schema": DIALECT,
        "title": "funnelpulse events",
        "description": "Every event type in $defs (one topic each; GET /schema/<type> is "
        "the schema of a topic's messages). As a whole: one event that names its `type`, "
        "as a line of `funnelpulse replay` does.",
        "$defs": {kind.value: event_schema(kind, options) for kind in EventType},
        "oneOf": [{"$ref": f"#/$defs/{kind.value}", "required": ["type"]} for kind in EventType],
    }


def documents(options: SchemaOptions) -> dict[str, Json]:
    """File name → schema: ``events.json`` and one ``<type>.json`` per type."""
    files = {"events.json": events_schema(options)}
    files.update({f"{kind.value}.json": message_schema(kind, options) for kind in EventType})
    return files


def dumps(doc: Json) -> str:
    """The committed form: indented, stable key order, UTF-8, a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.schema",
        description="Write the events' JSON Schema (default settings) to a folder.",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, doc in documents(SchemaOptions.from_settings(Settings())).items():
        (args.output_dir / name).write_text(dumps(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
