"""The Grafana dashboard file: well-formed, wired to the provisioned datasource, complete.

Whether its queries return data is tests/integration/test_dashboard.py's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "funnelpulse.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
WINDOWS = ["1m", "5m", "15m", "1h", "24h"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, inside collapsed rows too."""
    return [p for p in walk(dashboard["panels"]) if p.get("type") != "row"]


def titles(dashboard: dict[str, Any]) -> list[str]:
    return [p.get("title", "") for p in walk(dashboard["panels"])]


def test_identity_and_schema(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "funnelpulse"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36  # Grafana 9.x+ (the stack runs Grafana 11)
    assert "id" not in dashboard or dashboard["id"] is None  # provisioned: no fixed db id


def test_datasource_is_the_provisioned_one() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uids = {ds["uid"] for ds in provisioned["datasources"] if ds["type"] == "prometheus"}
    assert "prometheus" in uids
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "funnelpulse.yml").read_text())
    paths = {p["options"]["path"] for p in provider["providers"]}
    assert "/var/lib/grafana/dashboards" in paths  # where compose mounts deploy/grafana/dashboards


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"window", "channel", "campaign"} <= set(variables)

    window = variables["window"]
    assert window["type"] == "custom"
    assert [w.strip() for w in window["query"].split(",")] == WINDOWS
    assert [o["value"] for o in window["options"]] == WINDOWS
    assert window["current"]["value"] == "1h"
    assert [o["value"] for o in window["options"] if o["selected"]] == ["1h"]

    for name, scope in (("channel", "channel"), ("campaign", "campaign")):
        var = variables[name]
        query = f'label_values(marketing_ctr_ratio{{scope="{scope}"}}, {name})'
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == "prometheus"
        assert var["definition"] == query
        assert var["query"]["query"] == query
        assert var["multi"] is True
        assert var["includeAll"] is True
        assert var["allValue"] == ".*"  # All must match the empty label of other scopes too


def test_every_panel_queries_prometheus(dashboard: dict[str, Any]) -> None:
    problems = []
    for panel in panels(dashboard):
        title = panel.get("title", f"panel {panel.get('id')}")
        if panel.get("datasource", {}).get("uid") != "prometheus":
            problems.append(f"{title}: panel datasource {panel.get('datasource')}")
        targets = panel.get("targets", [])
        if not any(str(t.get("expr", "")).strip() for t in targets):
            problems.append(f"{title}: no target with an expr")
        for target in targets:
            if target.get("datasource", {}).get("uid", "prometheus") != "prometheus":
                problems.append(f"{title}/{target.get('refId')}: datasource {target['datasource']}")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)) or None in ref_ids:
            problems.append(f"{title}: refIds {ref_ids}")
    assert not problems, "\n".join(problems)


def test_panel_ids_unique_and_layout_sane(dashboard: dict[str, Any]) -> None:
    everything = list(walk(dashboard["panels"]))
    ids = [p.get("id") for p in everything]
    assert None not in ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    for row in (p for p in dashboard["panels"] if p.get("type") == "row"):
        # Grafana keeps the panels of a collapsed row inside it, of an open row after it.
        assert bool(row.get("panels")) == bool(row.get("collapsed")), row["title"]


def test_only_known_variables_are_used(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    builtins = {"__rate_interval", "__interval", "__range"}
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
    used = {m for e in exprs for m in re.findall(r"\$\{?(\w+)", e)}
    assert used <= defined | builtins, used - defined - builtins


def test_required_panels_exist(dashboard: dict[str, Any]) -> None:
    names = titles(dashboard)

    def find(*words: str) -> list[dict[str, Any]]:
        return [
            p
            for p in walk(dashboard["panels"])
            if all(w.lower() in p.get("title", "").lower() for w in words)
        ]

    funnel = find("funnel", "impressions", "won")
    assert funnel, names
    exprs = " ".join(t["expr"] for t in funnel[0]["targets"])
    assert "marketing_events_total" in exprs
    assert [t["legendFormat"] for t in funnel[0]["targets"]] == [
        "Impressions",
        "Clicks",
        "Sign-ups (leads)",
        "MQL",
        "SQL",
        "Won",
    ]

    spend_vs_leads = find("spend vs leads")
    assert [p for p in spend_vs_leads if p["type"] != "row"], names
    exprs = " ".join(t["expr"] for p in spend_vs_leads for t in p.get("targets", []))
    assert "increase(marketing_spend_total" in exprs and 'type="signup"' in exprs

    baseline = find("cpl", "24h baseline")
    assert [p for p in baseline if p["type"] != "row"], names
    exprs = " ".join(t["expr"] for p in baseline for t in p.get("targets", []))
    assert 'window="24h"' in exprs and "marketing_cpl" in exprs

    health_rows = find("pipeline health")
    assert health_rows and health_rows[0]["type"] == "row", names
    health = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for series in (
        "funnelpulse_messages_processed_total",
        "funnelpulse_processing_lag_seconds",
        "funnelpulse_consumer_lag_messages",
        "marketing_events_rejected_total",
        "funnelpulse_publish_seconds_bucket",
        "funnelpulse_redis_up",
        "funnelpulse_state_keys",
    ):
        assert series in health, series
    assert "histogram_quantile(0.95" in health


def test_kpis_over_time_by_channel_and_campaign(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for gauge in (
        "marketing_ctr_ratio",
        "marketing_open_rate_ratio",
        "marketing_conversion_rate_ratio",
        "marketing_mql_to_sql_ratio",
        "marketing_cpl",
        "marketing_cpc",
        "marketing_cac",
        "marketing_roas_ratio",
    ):
        by_channel = f'{gauge}{{window="$window",scope="channel",channel=~"$channel"}}'
        by_campaign = f'{gauge}{{window="$window",scope="campaign",campaign=~"$campaign"}}'
        assert by_channel in exprs, by_channel
        assert by_campaign in exprs, by_campaign


def test_alert_annotations(dashboard: dict[str, Any]) -> None:
    annotations = [a for a in dashboard["annotations"]["list"] if a.get("expr")]
    exprs = " ".join(a["expr"] for a in annotations)
    assert 'ALERTS{alertname=~"MarketingCPLSpike|MarketingSpendWithoutLeads"' in exprs
    assert "marketing_alert_active == 1" in exprs
    assert all(a["datasource"]["uid"] == "prometheus" and a["enable"] for a in annotations)
    # A panel built on the worker's alert gauge must not go blank while that gauge is absent.
    for panel in panels(dashboard):
        for target in panel["targets"]:
            if "marketing_alert_active" in target["expr"]:
                assert "or on () vector(0)" in target["expr"], panel["title"]
