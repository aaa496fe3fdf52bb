"""OpenAPI 3.1 document of the worker's HTTP API, generated from the code it describes.

The request bodies of ``POST /events/<type>`` are the events' JSON Schema
(``streams/schema.py``, itself generated from the validator's declaration); the KPI
snapshot lists every KPI of ``metrics/kpis.py`` and every count of ``metrics/counts.py``;
the windows are the configured ones. ``docs/openapi.json`` is generated with the default
settings (``make schema``), a worker serves its own at ``GET /openapi.json``.

The trap: the collector's route is one (``/events/{event_type}``), but each type takes
another body, and OpenAPI cannot tie a body to a path parameter's value; so the document
lists the seven paths one by one (code generators then get one typed call per type). A
new view in ``streams/web.py`` must appear here too: a test compares the worker's routes
with ``PATHS``.

``python -m streams.openapi [--output docs/openapi.json]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from funnelpulse.settings import Settings
from metrics.counts import COUNT_FIELDS, MONEY_FIELDS
from metrics.kpis import KPIS, Unit

from . import schema
from .events import MAX_BATCH_EVENTS, TOPIC_SUFFIX, EventType
from .utm import URL_FIELDS

Json = dict[str, Any]
VERSION = "1.0.0"  # of this API: the contract of SPEC §3; bump on an incompatible change
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
URL_TYPES = (EventType.CLICK, EventType.SIGNUP)  # the collector reads url / referrer
SOURCE_DOC = "where the answer came from: local, owner:<host:port> (asked), redis"
JSON = "application/json"


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def component_name(kind: EventType) -> str:
    """``lead_stage`` → ``LeadStage``: a component name."""
    return "".join(part.title() for part in kind.value.split("_"))


def _content(body: Json, media: str = JSON) -> Json:
    return {media: {"schema": body}}


def _response(description: str, body: Json | None = None, media: str = JSON) -> Json:
    out: Json = {"description": description}
    if body is not None:
        out["content"] = _content(body, media)
    return out


def _error(description: str) -> Json:
    return _response(description, ref("Error"))


# -- components ----------------------------------------------------------------------
def component_schemas(options: schema.SchemaOptions) -> Json:
    schemas: Json = {}
    for kind in EventType:
        name = component_name(kind)
        schemas[f"{name}Event"] = schema.event_schema(kind, options)
        event = f"{name}Event"
        if kind in URL_TYPES:
            schemas[f"{name}CollectorEvent"] = collector_event(kind, options)
            event = f"{name}CollectorEvent"
        schemas[f"{name}Message"] = _message(kind, event)
    schemas.update(Snapshot=snapshot(), Collected=collected(), Health=health(), Error=error())
    return schemas


def collector_event(kind: EventType, options: schema.SchemaOptions) -> Json:
    """A click or sign-up as the collector takes it: ``url`` / ``referrer`` may stand in
    for ``campaign_id`` and ``channel`` (``streams/utm.py``)."""
    event = schema.event_schema(kind, options)
    url_doc = {
        "url": "the landing page's URL: utm_campaign → campaign_id; utm_medium, click ids "
        "(gclid, msclkid, fbclid, ...) or utm_source → channel",
        "referrer": "the page the visitor came from (without UTM parameters or click ids: "
        "a search engine → organic, another site → referral)",
    }
    properties = {**event["properties"]}
    properties.update(
        {name: {"type": "string", "description": url_doc[name]} for name in URL_FIELDS}
    )
    return {
        **event,
        "description": f"{event['description']} Fields the event carries win over what "
        "its url and referrer say.",
        "properties": properties,
        "required": [name for name in event["required"] if name != "campaign_id"],
        "anyOf": [{"required": ["campaign_id"]}, {"required": ["url"]}],
    }


def _message(kind: EventType, event: str) -> Json:
    return {
        "description": f"One {kind.value} event, or a JSON array of them (each validated "
        "on its own).",
        "oneOf": [
            ref(event),
            {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_EVENTS,
             "items": ref(event)},
        ],
    }  # fmt: skip


def snapshot() -> Json:
    """One (window, scope): every defined KPI, the raw counts, the window's edges."""
    properties: Json = {
        "window": {"type": "string"},
        "scope": {"type": "string", "description": "all, channel:<channel>, campaign:<id>"},
    }
    for kpi in KPIS:
        unit = "a fraction" if kpi.unit is Unit.RATIO else "reporting currency"
        properties[kpi.name] = {
            "type": "number",
            "description": f"{kpi.description}: {kpi.formula} ({unit}); absent when the "
            "denominator is 0",
        }
    for name in COUNT_FIELDS:
        money = name in MONEY_FIELDS
        properties[name] = {
            "type": "number" if money else "integer",
            "description": "reporting currency" if money else "count in the window",
        }
    for name in ("window_start", "window_end", "updated_at"):
        properties[name] = {"type": "number", "description": "epoch seconds"}
    properties["source"] = {"type": "string", "description": SOURCE_DOC}
    required = ["window", "scope", *COUNT_FIELDS, "window_start", "window_end", "updated_at"]
    return {"type": "object", "properties": properties, "required": required}


def collected() -> Json:
    rejected = {
        "type": "object",
        "properties": {
            "index": {"type": ["integer", "null"], "description": "position in the batch"},
            "reason": {"type": "string", "description": "the dead-letter reason code"},
            "detail": {"type": "string"},
        },
        "required": ["index", "reason", "detail"],
    }
    return {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer", "description": "events produced to the topic"},
            "rejected": {"type": "array", "items": rejected},
        },
        "required": ["accepted", "rejected"],
    }


def health() -> Json:
    return {
        "type": "object",
        "properties": {
            "status": {"enum": ["ok", "degraded", "recovering", "stalled"]},
            "redis": {"enum": ["up", "down"]},
            "redis_error": {"type": ["string", "null"]},
            "seconds_since_publish": {"type": ["number", "null"]},
            "seconds_since_progress": {"type": "number"},
            "consumer_lag": {"type": "integer"},
            "recovering": {"type": "boolean"},
            "scopes": {"type": "integer"},
            "republishing": {
                "type": "integer",
                "minimum": 0,
                "description": "scopes of partitions this worker gained (a "
                "start, a restart, a rebalance) not republished yet: they go "
                "behind the scopes with new events, all within about 10 s",
            },
            "resending": {
                "type": "integer",
                "minimum": 0,
                "description": "groups of partial panes of recovered partitions not sent "
                "to the merge stage again yet (a crash may have lost their last snapshot: "
                "those changed after the partition's sent mark): behind the new changes, "
                "500 at a time, the next share once the merge stage has taken the last",
            },
            "reading_stored": {
                "type": "integer",
                "minimum": 0,
                "description": "recovered partitions (of both counting stages) whose stored "
                "partial groups are still being read, 15 ms of each snapshot tick, behind "
                "the new events: they hold the high waters and the groups to send again "
                "(`resending` may still grow). Until then a partition's messages are counted "
                "one by one against each pane's mark (exact, slower)",
            },
            "partitions": {"type": "object"},
            "restore": restore(),
            "assignment_missing": {
                "type": "array",
                "items": {"type": "string"},
                "description": "table partitions (changelog[partition]) the group's "
                "assignment left out although this worker reads their input (the metadata "
                "lacked the topic when the group assigned, e.g. right after a broker "
                "restart): batches wait until a whole assignment, which the worker asks for "
                "once the topic is known; empty normally",
            },
        },
        "required": ["status", "redis"],
    }


def restore_figures() -> Json:
    count = {"type": "integer", "minimum": 0}
    return {
        "applied": {**count, "description": "changelog offsets applied since the restore began "
                    "(compaction gaps count: an upper bound on records read)"},
        "to_apply": {"type": ["integer", "null"], "minimum": 0,
                     "description": "changelog offsets between each partition's start (the "
                     "local store's offset, or the changelog's start) and its end; null until "
                     "Faust has read the ends"},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                     "description": "applied / to_apply (1 when nothing was to apply)"},
        "partitions": {**count, "description": "active changelog partitions restored"},
        "rebuilding": {**count, "description": "of which with no local state, read from the "
                       "changelog's start: first start, a partition new to this worker, a lost "
                       "disk, or the memory store after a restart"},
    }  # fmt: skip


def restore() -> Json:
    """``/healthz`` ``restore`` (streams/restore.py)."""
    figures = restore_figures()
    return {
        "type": "object",
        "description": "the restore of this worker's tables at its last assignment, from "
        "Faust's recovery state",
        "properties": {
            "state": {"enum": ["waiting", "restoring", "done"],
                      "description": "waiting: no assignment yet; restoring: rebalancing or "
                      "reading changelogs; done: the figures of the last restore"},
            "store": {"enum": ["memory", "rocksdb"], "description": "FUNNELPULSE_STORE"},
            **figures,
            "seconds": {"type": ["number", "null"],
                        "description": "since the restore began, or how long it took"},
            "seconds_without_progress": {
                "type": "number",
                "description": "while restoring: since the offsets applied last moved (over "
                "120 s while Faust is still recovering makes /healthz say stalled); else 0"},
            "tables": {"type": "object", "description": "the same figures per table",
                       "additionalProperties": {"type": "object", "properties": figures}},
        },
        "required": ["state", "store", "applied", "to_apply", "progress", "partitions",
                     "rebuilding", "seconds_without_progress"],
    }  # fmt: skip


def error() -> Json:
    return {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


# -- paths ---------------------------------------------------------------------------
def kpis(windows: tuple[str, ...]) -> Json:
    window = {"type": "string", "enum": list(windows), "default": windows[0]}
    scope = {"type": "string", "pattern": "^(all|channel:.+|campaign:.+)$"}
    listing = {
        "type": "object",
        "properties": {
            "window": {"type": "string"},
            "scopes": {"type": "object", "additionalProperties": ref("Snapshot")},
            "sources": {"type": "object", "additionalProperties": {"type": "integer"}},
            "local_partitions": {"type": "array", "items": {"type": "integer"}},
            "unavailable_partitions": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["window", "scopes"],
    }
    return {"get": {
        "summary": "KPI snapshots of one scope, or of every scope, from any worker",
        "operationId": "getKpis",
        "parameters": [
            {"name": "window", "in": "query", "schema": window},
            {"name": "scope", "in": "query", "schema": scope,
             "description": "one scope; without it, every scope with data"},
        ],
        "responses": {
            "200": _response("with scope: its snapshot; without: every scope's", {
                "oneOf": [ref("Snapshot"), listing]}),
            "400": _error("unknown window"),
            "404": _error("no data for the scope in the window"),
            "503": _error("the scope's owner and Redis are unavailable"),
        },
    }}  # fmt: skip


def alerts() -> Json:
    listing = {
        "type": "object",
        "properties": {"active": {"type": "array", "items": {"type": "object"}}},
        "required": ["active"],
    }
    return {"get": {"summary": "active alerts of every scope (cpl_spike)",
                    "operationId": "getAlerts",
                    "responses": {"200": _response("the active alerts", listing)}}}  # fmt: skip


def healthz() -> Json:
    return {"get": {
        "summary": "liveness and readiness",
        "operationId": "getHealth",
        "responses": {
            "200": _response("ok, degraded (Redis down) or recovering", ref("Health")),
            "503": _response("stalled: input waits but nothing is processed", ref("Health")),
        },
    }}  # fmt: skip


def metrics() -> Json:
    names = {"type": "array", "items": {"type": "string"}}
    return {"get": {
        "summary": "Prometheus metrics (text exposition format)",
        "operationId": "getMetrics",
        "parameters": [{"name": "name[]", "in": "query", "schema": names,
                        "description": "only these metric families"}],
        "responses": {"200": _response("the metrics", {"type": "string"}, "text/plain")},
    }}  # fmt: skip


def collector(kind: EventType) -> Json:
    body = {"required": True, "content": _content(ref(f"{component_name(kind)}Message"))}
    return {"post": {
        "summary": f"validate {kind.value} events and produce them to the "
                   f"{TOPIC_SUFFIX[kind]} topic, keyed by campaign",
        "operationId": f"post{component_name(kind)}",
        "security": [{}, {"collectorToken": []}],
        "requestBody": body,
        "responses": {
            "202": _response("every event accepted", ref("Collected")),
            "400": _response("some events rejected (the others accepted)", ref("Collected")),
            "401": _error("FUNNELPULSE_COLLECTOR_TOKEN is set: Authorization: Bearer <token>"),
        },
    }}  # fmt: skip


def schemas() -> Json:
    body = {"type": "object", "description": "a JSON Schema (2020-12)"}
    return {"get": {
        "summary": "JSON Schema of every event type ($defs), as this worker validates",
        "operationId": "getSchemas",
        "responses": {"200": _response("the schema", body, schema.MEDIA_TYPE)},
    }}  # fmt: skip


def type_schema() -> Json:
    body = {"type": "object", "description": "a JSON Schema (2020-12)"}
    kind = {"type": "string", "enum": [kind.value for kind in EventType]}
    return {"get": {
        "summary": "JSON Schema of one topic's messages: an event or a batch of them",
        "operationId": "getTypeSchema",
        "parameters": [{"name": "event_type", "in": "path", "required": True, "schema": kind}],
        "responses": {"200": _response("the schema", body, schema.MEDIA_TYPE),
                      "404": _error("unknown event type")},
    }}  # fmt: skip


def openapi_path() -> Json:
    answer = _response("OpenAPI 3.1", {"type": "object"})
    return {"get": {"summary": "this document", "operationId": "getOpenApi",
                    "responses": {"200": answer}}}  # fmt: skip


# The worker's routes (streams/web.py) and the document's paths for them
PATHS = {
    "/kpis": ("/kpis",),
    "/alerts": ("/alerts",),
    "/healthz": ("/healthz",),
    "/metrics": ("/metrics",),
    "/events/{event_type}": tuple(f"/events/{kind.value}" for kind in EventType),
    "/schema": ("/schema",),
    "/schema/{event_type}": ("/schema/{event_type}",),
    "/openapi.json": ("/openapi.json",),
}


def document(settings: Settings) -> Json:
    options = schema.SchemaOptions.from_settings(settings)
    paths: Json = {
        "/kpis": kpis(settings.windows),
        "/alerts": alerts(),
        "/healthz": healthz(),
        "/metrics": metrics(),
        **{f"/events/{kind.value}": collector(kind) for kind in EventType},
        "/schema": schemas(),
        "/schema/{event_type}": type_schema(),
        "/openapi.json": openapi_path(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "funnelpulse worker",
            "version": VERSION,
            "description": "Real-time marketing KPIs: read them (/kpis, /alerts, /metrics), "
            "send events without Kafka (POST /events/<type>), and the events' JSON Schema.",
            "license": {"name": "Apache 2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:6066", "description": "a local worker"}],
        "paths": paths,
        "components": {
            "schemas": component_schemas(options),
            "securitySchemes": {"collectorToken": {
                "type": "http", "scheme": "bearer",
                "description": "required when FUNNELPULSE_COLLECTOR_TOKEN is set"}},
        },
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.openapi",
        description="Write the worker's OpenAPI document (default settings).",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.output.write_text(schema.dumps(document(Settings())), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
