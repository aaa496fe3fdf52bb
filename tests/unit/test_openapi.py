"""The OpenAPI document: committed as generated, one entry per route of the worker, every
reference resolvable, and its schemas true to what the worker sends and takes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from funnelpulse.settings import Settings
from metrics.counts import WIDTH
from metrics.snapshots import build_snapshot
from metrics.windows import window_specs
from streams import openapi, schema
from streams.app import create_app
from streams.events import EventType

from .test_events import BASE, NOW

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
DOCUMENT = orjson.loads(COMMITTED.read_bytes())
REGISTRY = Registry().with_resource(
    "urn:funnelpulse:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)


def component(name: str) -> jsonschema.Draft202012Validator:
    ref = {"$ref": f"urn:funnelpulse:openapi#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(ref, registry=REGISTRY)


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = schema.dumps(openapi.document(Settings()))
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/openapi.json is stale: run make schema"
    )


def test_every_route_of_the_worker_is_documented() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        routes = set(create_app(Settings()).app.web.views)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert routes == set(openapi.PATHS)
    assert sorted(DOCUMENT["paths"]) == sorted(p for ps in openapi.PATHS.values() for p in ps)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_resolves_and_every_schema_is_valid() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for ref in set(_refs(DOCUMENT)):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for body in schemas.values():
        jsonschema.Draft202012Validator.check_schema(body)
    assert DOCUMENT["openapi"].startswith("3.1.")


@pytest.mark.parametrize("kind", list(BASE))
def test_each_collector_path_takes_its_types_messages(kind: str) -> None:
    name = openapi.component_name(EventType(kind))
    message = component(f"{name}Message")
    assert message.is_valid(BASE[kind])
    assert message.is_valid([BASE[kind], BASE[kind]])
    body = DOCUMENT["paths"][f"/events/{kind}"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith(f"/{name}Message")


def test_a_click_may_name_its_campaign_by_url() -> None:
    click = {k: v for k, v in BASE["click"].items() if k not in ("campaign_id", "channel")}
    with_url = {**click, "url": "https://shop.example/?utm_campaign=spring-sale&gclid=x"}
    assert component("ClickMessage").is_valid(with_url)
    assert not component("ClickMessage").is_valid(click)  # neither campaign_id nor url
    assert not component("ClickEvent").is_valid(with_url)  # on Kafka, campaign_id it is
    assert not component("SpendMessage").is_valid({**BASE["spend"], "campaign_id": None})


def test_a_snapshot_as_the_worker_builds_it_is_a_snapshot() -> None:
    spec = window_specs(("5m",))[0]
    counts = [3] * WIDTH
    snapshot = build_snapshot(spec, "campaign:spring-sale", counts, NOW)
    assert component("Snapshot").is_valid({**snapshot, "source": "local"})
    empty = build_snapshot(spec, "all", [0] * WIDTH, NOW)  # no KPI defined: all absent
    assert component("Snapshot").is_valid(empty)
