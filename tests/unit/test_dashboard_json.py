"""The Grafana dashboard: generated from the KPI registry, committed as generated, portable.

The committed file must be the generator's output (a hand edit or a registry change without
`make dashboard` fails here), every KPI of the registry gets its panels, no panel names a
datasource uid, units follow the reporting currency and the kind of ratio. Whether the
queries return data is tests/integration/test_dashboard.py's job.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from funnelpulse import dashboard as generator
from metrics.alerts import CplSpikeRule
from metrics.kpis import KPIS, Kpi, Unit
from streams.events import STAGES, EventType

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "funnelpulse.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
WINDOWS = ("1m", "5m", "15m", "1h", "24h")
Json = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> Json:
    doc: Json = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def build(currency: str = "USD", windows: tuple[str, ...] = WINDOWS, **kw: Any) -> Json:
    return generator.dashboard(generator.Options(currency, windows), **kw)


def walk(panels: list[Json]) -> Iterator[Json]:
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def panels(doc: Json) -> list[Json]:
    """Every panel that is not a row, inside collapsed rows too."""
    return [p for p in walk(doc["panels"]) if p.get("type") != "row"]


def exprs(doc: Json) -> list[str]:
    return [t["expr"] for p in panels(doc) for t in p["targets"]]


def variables(doc: Json) -> dict[str, Json]:
    return {v["name"]: v for v in doc["templating"]["list"]}


def kpi_panels(doc: Json, kpi: Kpi) -> list[Json]:
    """Panels that read the KPI's own gauge (word-bounded: marketing_cpl ≠ marketing_cplx)."""
    gauge = re.compile(rf"\b{re.escape(kpi.gauge_name)}\{{")
    return [p for p in panels(doc) if any(gauge.search(t["expr"]) for t in p["targets"])]


def datasources(node: Any) -> Iterator[Json]:
    """Every ``datasource`` object anywhere in the document."""
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


# -- committed as generated ---------------------------------------------------------------


def test_committed_file_is_the_generators_output() -> None:
    expected = generator.render(generator.dashboard(generator.default_options()))
    assert DASHBOARD.read_text(encoding="utf-8") == expected, (
        "deploy/grafana/dashboards/funnelpulse.json differs from funnelpulse/dashboard.py's "
        "output: run `make dashboard` (never edit the JSON by hand)"
    )


def test_the_command_in_the_description_regenerates_the_file(
    dashboard: Json, tmp_path: Path
) -> None:
    command = re.search(r"`(python -m funnelpulse\.dashboard [^`]*)`", dashboard["description"])
    assert command, dashboard["description"]
    out = tmp_path / "dashboard.json"
    assert generator.main([*shlex.split(command.group(1))[3:], "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == DASHBOARD.read_text(encoding="utf-8")


def test_generators_do_not_import_the_worker() -> None:
    code = (
        "import sys, funnelpulse.dashboard, funnelpulse.manifests; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'streams', 'faust'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["--currency", "EURO"],
        ["--windows", "5x"],
        ["--cpl-windows", "15m,7d"],
        ["--cpl-factor", "0"],
    ],
)
def test_cli_refuses_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        generator.main(argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


# -- the registry drives the panels -------------------------------------------------------


@pytest.mark.parametrize("kpi", KPIS, ids=lambda k: k.name)
def test_every_kpi_has_a_stat_a_channel_and_a_campaign_panel(dashboard: Json, kpi: Kpi) -> None:
    found = kpi_panels(dashboard, kpi)
    scopes = {
        scope
        for p in found
        for t in p["targets"]
        for scope in re.findall(r'scope="(\w+)"', t["expr"])
        if kpi.gauge_name in t["expr"]
    }
    assert {"all", "channel", "campaign"} <= scopes, [p["title"] for p in found]
    assert any(p["type"] == "stat" for p in found)


def test_a_new_kpi_gets_its_panels_with_no_other_edit() -> None:
    new = Kpi("email_ctr", ((1, "email_clicks"),), "email_impressions", Unit.RATIO, "e-mail CTR")
    doc = build(kpis=(*KPIS, new))
    found = kpi_panels(doc, new)
    assert {p["title"] for p in found} == {
        "Email CTR",
        "Email CTR by channel",
        "Email CTR by campaign",
    }
    assert {p["fieldConfig"]["defaults"]["unit"] for p in found} == {"percentunit"}
    assert len(panels(doc)) == len(panels(build())) + 3


# -- portable: datasource, currency, ratios, windows --------------------------------------


def test_no_datasource_uid_is_hard_coded(dashboard: Json) -> None:
    seen = list(datasources(dashboard))
    prometheus = [d for d in seen if d.get("type") == "prometheus"]
    assert len(prometheus) > 100  # every panel, target, variable and annotation
    assert all(d["uid"] == "${datasource}" for d in prometheus), {d["uid"] for d in prometheus}
    assert {d["type"] for d in seen} == {"prometheus", "grafana"}  # + the built-in annotations
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_datasource_variable(dashboard: Json) -> None:
    variable = variables(dashboard)["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"] == {}  # Grafana picks the default Prometheus datasource
    assert dashboard["templating"]["list"][0]["name"] == "datasource"  # resolved first


def units(doc: Json) -> dict[str, str]:
    """Panel title → unit (titles are unique)."""
    found = {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in panels(doc)}
    assert len(found) == len(panels(doc)), "two panels share a title"
    return found


def money_titles(doc: Json) -> set[str]:
    return {t for t, unit in units(doc).items() if unit == generator.currency_unit("USD")}


def test_money_panels_are_in_the_reporting_currency(dashboard: Json) -> None:
    money = money_titles(dashboard)
    for kpi in (k for k in KPIS if k.unit is Unit.MONEY):
        name = generator.title(kpi)
        assert {name, f"{name} by channel", f"{name} by campaign"} <= money
    assert {"Spend", "Revenue", "Spend vs leads", "Spend by channel", "Spend ($channel)",
            "CPL from counters by channel"} <= money  # fmt: skip


@pytest.mark.parametrize(
    ("currency", "unit"),
    [
        ("USD", "currencyUSD"),
        ("EUR", "currencyEUR"),
        ("GBP", "currencyGBP"),
        ("JPY", "currencyJPY"),
        ("CHF", "currencyCHF"),
        ("HUF", "suffix: HUF"),  # no Grafana unit: a plain suffix
        ("CAD", "suffix: CAD"),
    ],
)
def test_money_unit_follows_the_reporting_currency(currency: str, unit: str) -> None:
    usd, other = units(build("USD")), units(build(currency))
    money = money_titles(build("USD"))
    assert {t for t, u in other.items() if u == unit} == money
    assert {t: u for t, u in other.items() if t not in money} == {
        t: u for t, u in usd.items() if t not in money
    }
    doc = build(currency)
    others = set(re.findall(r'"(currency[A-Z]{3}|suffix: [A-Z]{3})"', json.dumps(doc))) - {unit}
    assert not others, f"{currency} dashboard also uses {others}"  # overrides included
    assert f"money in {currency}" in doc["description"]


@pytest.mark.parametrize("kpi", KPIS, ids=lambda k: k.name)
def test_kpi_units(dashboard: Json, kpi: Kpi) -> None:
    name = generator.title(kpi)
    own = {name, f"{name} by channel", f"{name} by campaign"}
    found = [p["fieldConfig"]["defaults"] for p in panels(dashboard) if p["title"] in own]
    assert len(found) == 3
    units = {(d["unit"], d.get("decimals")) for d in found}
    if kpi.unit is Unit.MONEY:
        assert units == {("currencyUSD", 2)}
    elif kpi.name in {"roas", "romi"}:  # revenue / spend: 3.2 is 3.2x, not 320 %
        assert units == {("none", 2)}
    else:  # a fraction in 0..1
        assert units == {("percentunit", 2)}


def test_window_variable_lists_every_configured_window() -> None:
    for windows, chosen in ((WINDOWS, "1h"), (("5m", "30m", "2h", "7d"), "7d")):
        window = variables(build(windows=windows))["window"]
        assert window["type"] == "custom"
        assert window["query"] == ",".join(windows)
        assert [o["value"] for o in window["options"]] == list(windows)
        assert window["current"]["value"] == chosen
        assert [o["value"] for o in window["options"] if o["selected"]] == [chosen]


def test_cpl_baseline_panels_follow_the_alert_windows() -> None:
    rule = CplSpikeRule(short_window="5m", long_window="2h", factor=3.0)
    doc = generator.dashboard(generator.Options("USD", ("5m", "2h"), rule))
    titles = [p["title"] for p in panels(doc)]
    assert "CPL (5m) vs 2h baseline" in titles
    joined = " ".join(exprs(doc))
    assert 'marketing_cpl{window="5m",scope="all"}' in joined
    assert '3 * max(marketing_cpl{window="2h",scope="all"})' in joined
    assert 'window="15m"' not in joined and 'window="24h"' not in joined


def test_channel_and_campaign_variables(dashboard: Json) -> None:
    found = variables(dashboard)
    channel, campaign = found["channel"], found["campaign"]
    assert channel["definition"] == "label_values(marketing_events_total, channel)"
    assert campaign["definition"] == (
        'label_values(marketing_events_total{channel=~"$channel"}, campaign)'
    )
    for var in (channel, campaign):
        assert var["type"] == "query"
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert var["query"]["query"] == var["definition"]
        assert var["multi"] is True and var["includeAll"] is True
        assert var["refresh"] == 2  # re-read on a time-range change
    assert channel["allValue"] == ".*"  # All also matches the empty channel of other scopes
    # All campaigns = the list of the selected channels' campaigns: a campaign's gauges
    # carry only its dominant channel, so $campaign is what filters them by channel.
    assert "allValue" not in campaign
    names = list(found)
    assert names.index("campaign") > names.index("channel")


def test_campaign_panels_are_filtered_through_the_campaign_variable(dashboard: Json) -> None:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            if 'scope="campaign"' in target["expr"]:
                assert 'campaign=~"$campaign"' in target["expr"], panel["title"]


# -- the funnel from counters -------------------------------------------------------------


def funnel(doc: Json) -> Json:
    return next(p for p in panels(doc) if p["title"].startswith("Funnel: "))


def test_funnel_is_built_from_counters(dashboard: Json) -> None:
    panel = funnel(dashboard)
    assert [t["legendFormat"] for t in panel["targets"]] == [
        "Impressions",
        "Clicks",
        "Sign-ups (leads)",
        "MQL",
        "SQL",
        "Opportunities",
        "Won",
    ]
    steps = [t["expr"] for t in panel["targets"]]
    assert steps[0] == (
        "sum(increase(marketing_impressions_total"
        '{channel=~"$channel",campaign=~"$campaign"}[$window]))'
    )
    assert 'marketing_events_total{type="click",' in steps[1]
    assert 'marketing_events_total{type="signup",' in steps[2]
    for expr in steps[3:]:
        assert expr.startswith("sum(increase(marketing_stage_transitions_total{stage=")
    for expr in steps:
        assert "_ratio" not in expr and "marketing_cp" not in expr  # no KPI gauge rebuilt


def test_funnel_labels_are_ones_the_worker_counts(dashboard: Json) -> None:
    used = " ".join(exprs(dashboard))
    stages = set(re.findall(r'stage="(\w+)"', used))
    types = set(re.findall(r'type="(\w+)"', used))
    assert stages and stages <= set(STAGES)
    assert types and types <= {t.value for t in EventType}


# -- well-formed ----------------------------------------------------------------------------


def test_identity_and_schema(dashboard: Json) -> None:
    assert dashboard["uid"] == "funnelpulse"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36  # Grafana 9.x+ (the stack runs Grafana 11)
    assert "id" not in dashboard or dashboard["id"] is None  # provisioned: no fixed db id


def test_provisioning_loads_the_committed_file() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "funnelpulse.yml").read_text())
    paths = {p["options"]["path"] for p in provider["providers"]}
    assert "/var/lib/grafana/dashboards" in paths  # where compose mounts deploy/grafana/dashboards
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert any(
        ds["type"] == "prometheus" and ds.get("isDefault") for ds in provisioned["datasources"]
    )


def test_every_panel_queries_prometheus(dashboard: Json) -> None:
    problems = []
    for panel in panels(dashboard):
        targets = panel.get("targets", [])
        if not any(str(t.get("expr", "")).strip() for t in targets):
            problems.append(f"{panel['title']}: no target with an expr")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)) or None in ref_ids:
            problems.append(f"{panel['title']}: refIds {ref_ids}")
    assert not problems, "\n".join(problems)


def test_panel_ids_unique_and_layout_sane(dashboard: Json) -> None:
    everything = list(walk(dashboard["panels"]))
    ids = [int(p.get("id") or 0) for p in everything]
    assert 0 not in ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    for row in (p for p in dashboard["panels"] if p.get("type") == "row"):
        # Grafana keeps the panels of a collapsed row inside it, of an open row after it.
        assert bool(row.get("panels")) == bool(row.get("collapsed")), row["title"]


def test_open_panels_do_not_overlap(dashboard: Json) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:  # top level: open rows' panels and the row headers
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_only_known_variables_are_used(dashboard: Json) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    builtins = {"__rate_interval", "__interval", "__range", "__all"}
    texts = exprs(dashboard) + [p["title"] for p in walk(dashboard["panels"])]
    texts += [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
    texts += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {m for e in texts for m in re.findall(r"\$\{?(\w+)", e)}
    assert used <= defined | builtins, used - defined - builtins


def test_pipeline_health_series(dashboard: Json) -> None:
    health = " ".join(exprs(dashboard))
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


def test_spend_vs_leads_from_counters(dashboard: Json) -> None:
    joined = " ".join(exprs(dashboard))
    assert "increase(marketing_spend_total" in joined and 'type="signup"' in joined
    assert "/ (0" not in joined and "clamp_min" not in joined


def test_alert_annotations(dashboard: Json) -> None:
    annotations = [a for a in dashboard["annotations"]["list"] if a.get("expr")]
    joined = " ".join(a["expr"] for a in annotations)
    assert 'ALERTS{alertname=~"MarketingCPLSpike|MarketingSpendWithoutLeads"' in joined
    assert "marketing_alert_active == 1" in joined
    assert all(a["datasource"]["uid"] == "${datasource}" and a["enable"] for a in annotations)
    # A panel built on the worker's alert gauge must not go blank while that gauge is absent.
    for panel in panels(dashboard):
        for target in panel["targets"]:
            if "marketing_alert_active" in target["expr"]:
                assert "or on () vector(0)" in target["expr"], panel["title"]
