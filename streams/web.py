"""HTTP endpoints on the Faust web server (SPEC §3): /kpis, /alerts, /healthz, /metrics, /events;
and the producer contract: /schema, /schema/<type>, /openapi.json."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from funnelpulse.credentials import Secret

from . import openapi, schema
from .events import Event, EventType, Rejected, decode_message
from .peers import ROUTED, SOURCE
from .queries import Queries, WorkerCluster
from .utm import with_campaign_fields
from .worker_view import WorkerView

STALL_AFTER = 30.0  # no publish tick for this long: the event loop is stuck
NO_PROGRESS_AFTER = 120.0  # input waiting but nothing processed for this long: stuck consumer
URL_TYPES = frozenset({EventType.CLICK, EventType.SIGNUP})  # may carry url / referrer


def register_views(fp: WorkerView) -> None:
    app = fp.app
    queries = Queries(WorkerCluster(fp))

    @app.page("/kpis")
    class Kpis(View):
        async def get(self, request: Request) -> Response:
            window = request.query.get("window", fp.specs[0].name)
            if window not in fp.publisher.latest and window not in fp.settings.windows:
                return self.json(
                    {"error": f"unknown window {window!r}", "windows": list(fp.settings.windows)},
                    status=400,
                )
            routed = ROUTED in request.headers  # another worker asks: never routed again
            scope = request.query.get("scope")
            if scope is not None:  # this worker's, its owner's, or Redis's (streams/queries.py)
                answer = await queries.scope_kpis(window, scope, routed)
                return self.json(answer.body, status=answer.status, headers={SOURCE: answer.source})
            return self.json(await queries.window_kpis(window, routed))

    @app.page("/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            return self.json(await queries.alerts(ROUTED in request.headers))

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            report = health(fp)
            return self.json(report, status=200 if report["status"] != "stalled" else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # ?name[]=... restricts the families, as prometheus_client's own handler does:
            # pollers that want one counter need not pay for every KPI gauge
            query: Any = request.query  # aiohttp's MultiDict: a name may repeat
            names = query.getall("name[]", [])
            body = generate_latest(fp.registry.restricted_registry(names) if names else fp.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/events/{event_type}")
    class Collector(View):
        async def post(self, request: Request, event_type: str) -> Response:
            if not authorized(fp.settings.collector_token, request.headers.get("Authorization")):
                return self.json(
                    {"error": "POST /events needs Authorization: Bearer <token>"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="funnelpulse"'},
                )
            try:
                kind = EventType(event_type)
            except ValueError:
                return self.json({"error": f"unknown event type {event_type!r}"}, status=404)
            body = await request.read()
            return await collect(self, fp, kind, body)

    register_contract_views(fp)


def register_contract_views(fp: WorkerView) -> None:
    """The producer contract, as this worker's settings make it (channels, currencies,
    windows): ``GET /schema`` (every event type), ``GET /schema/<type>`` (one topic's
    messages), ``GET /openapi.json`` (this HTTP API, ``streams/openapi.py``)."""
    schemas = schema.documents(schema.SchemaOptions.from_settings(fp.settings))
    api = schema.dumps(openapi.document(fp.settings)).encode()

    @fp.app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(api, content_type="application/json")

    def schema_response(view: View, name: str) -> Response:
        body = schema.dumps(schemas[name]).encode()
        return view.bytes(body, content_type=schema.MEDIA_TYPE)

    @fp.app.page("/schema")
    class AllSchemas(View):
        async def get(self, request: Request) -> Response:
            return schema_response(self, "events.json")

    @fp.app.page("/schema/{event_type}")
    class TypeSchema(View):
        async def get(self, request: Request, event_type: str) -> Response:
            name = f"{event_type.removesuffix('.json')}.json"
            if name == "events.json" or name not in schemas:
                types = [kind.value for kind in EventType]
                return self.json({"error": f"unknown event type {event_type!r}", "types": types},
                                 status=404)  # fmt: skip
            return schema_response(self, name)


def authorized(token: Secret, header: str | None) -> bool:
    """Open when no token is configured; else ``Bearer <token>``, compared in constant time
    (the collector writes to the input topics: an open one on a reachable address lets
    anyone forge KPIs)."""
    if not token:
        return True
    scheme, _, offered = (header or "").partition(" ")
    return scheme.lower() == "bearer" and token.matches(offered.strip())


async def collect(view: View, fp: WorkerView, kind: EventType, body: bytes) -> Response:
    """Validates like the worker does; produces the good events, reports the bad ones.
    A click's or sign-up's missing campaign and channel come from its ``url`` and
    ``referrer`` first (UTM parameters, click ids: ``streams/utm.py``)."""
    limits = fp.limits(fp.clock())
    if kind in URL_TYPES:
        body = with_campaign_fields(body, limits.channels)
    items = decode_message(body, kind, limits)
    errors = [
        {"index": item.index, "reason": item.reason.value, "detail": item.detail}
        for item in items
        if isinstance(item, Rejected)
    ]
    good = _good_raw(body, items)
    topic = fp.app.topic(fp.names.inputs[kind], key_serializer="raw", value_serializer="raw")
    for campaign, docs in good.items():
        await topic.send(
            key=campaign.encode() if campaign else None, value=b"[" + b",".join(docs) + b"]"
        )
    accepted = sum(len(docs) for docs in good.values())
    return view.json({"accepted": accepted, "rejected": errors}, status=400 if errors else 202)


def _good_raw(body: bytes, items: list[Event | Rejected]) -> dict[str, list[bytes]]:
    """The accepted events' original JSON, grouped by campaign (the topics' key)."""
    if any(isinstance(item, Event) for item in items):
        doc = orjson.loads(body)
        docs = doc if isinstance(doc, list) else [doc]
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for i, item in enumerate(items):
        if isinstance(item, Event):
            grouped[item.campaign_id or ""].append(orjson.dumps(docs[i]))
    return grouped


def health(fp: WorkerView) -> dict[str, Any]:
    """Liveness an orchestrator can trust: is the loop turning, is the consumer moving?

    Faust recovery and rebalances are known to hang; a worker whose input is waiting
    while nothing gets processed, or whose restore has applied nothing for as long (it
    would otherwise say ``recovering`` for ever), reports ``stalled`` (HTTP 503) so it
    can be restarted.
    Redis being down is ``degraded``: consumption goes on and nothing is lost. While
    tables are restored, ``restore`` says how far (and whether from the local store or
    from the changelog's start: a lost disk).
    """
    since_tick = time.time() - fp.publisher.last_tick if fp.publisher.last_tick else None
    lag = sum(v for v in fp.publisher.lag.values() if v > 0)
    idle = time.monotonic() - fp.last_progress
    recovering = fp.recovering
    restore = fp.restore.report()  # streams/restore.py
    stalled = (
        (since_tick is not None and since_tick > STALL_AFTER)
        or (lag > 0 and idle > NO_PROGRESS_AFTER and not recovering)
        or (recovering and restore["seconds_without_progress"] > NO_PROGRESS_AFTER)
    )
    status = "stalled" if stalled else ("ok" if fp.publisher.redis_ok else "degraded")
    if recovering and not stalled:
        status = "recovering"  # restoring tables from changelogs: alive, not ready
    return {
        "status": status,
        "redis": "up" if fp.publisher.redis_ok else "down",
        "redis_error": None if fp.publisher.redis_ok else fp.publisher.redis_error,
        "seconds_since_publish": since_tick,
        "seconds_since_progress": round(idle, 3),
        "consumer_lag": lag,
        "recovering": recovering,
        "scopes": len(fp.publisher.index),
        # scopes of partitions gained by a (re)start or rebalance, not republished yet:
        # they go behind the ones with new events (streams/publisher.py)
        "republishing": len(fp.publisher.backfill),
        "resending": fp.resending,  # recovered partial groups, behind the new changes too
        "reading_stored": fp.reading_stored,  # ... and the partitions still searched for them
        "partitions": _partitions(fp),
        "restore": restore,
        # table partitions the group's assignment left out (streams/assignment.py): while
        # any is, batches wait for a whole assignment
        "assignment_missing": fp.assignment.describe(),
    }


def _partitions(fp: WorkerView) -> dict[str, Any]:
    """Changelog partitions this worker keeps active and as warm standby copies
    (``table_standby_replicas``): a standby makes a take-over read only the tail."""
    assignor = fp.app.assignor
    changelogs = set(fp.app.tables.changelog_topics)
    active = sum(1 for tp in assignor.assigned_actives() if tp.topic in changelogs)
    standby = sum(1 for tp in assignor.assigned_standbys() if tp.topic in changelogs)
    return {"active": active, "standby": standby, "publishing": sorted(fp.publisher.owned)}


__all__ = ["register_views"]
