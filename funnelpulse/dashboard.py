"""The Grafana dashboard, generated from the KPI registry (``metrics.kpis.KPIS``).

Why: a dashboard edited by hand drifts from the code. Here every KPI of the registry gets
a stat, a by-channel and a by-campaign panel with no other edit; units follow the KPI
(fractions in percent, money in the reporting currency's unit, revenue/spend multiples
as plain numbers: a ROAS of 3.2 is not 320 %); every panel and target reads the
``${datasource}`` variable, so the file imports into any Grafana; ``$window`` lists the
configured windows. ``make dashboard`` rewrites the committed file and a unit test fails
when the two differ.

Traps:

- The KPI gauges of a campaign carry one channel, the one most of its events carried
  (``streams/campaign_channels.py``), while a campaign may run on several. Campaign
  panels are filtered by channel through ``$campaign``: its values come from the
  counters, which carry every (channel, campaign) pair, and its "All" is the list of those
  values (no ``allValue``): ``.*`` would bring back every campaign of every channel.
  ``$channel``'s "All" is ``.*`` on purpose: it must also match the empty channel of
  ``scope="all"`` and of ``campaign="(other)"``.
- ``marketing_events_total{type="impression"}`` counts impression *events* (a batch with
  ``count`` adds 1): the funnel reads impressions from ``marketing_impressions_total``
  and lead stages from ``marketing_stage_transitions_total``, never rebuilt from ratios.
- Pure: nothing here reads or writes files but ``main``, and nothing imports ``streams``
  (the worker), so the dashboard can be generated without a broker or the worker's code.
  The flags default to the worker's defaults (``funnelpulse.settings``): the committed
  file is the dashboard of a worker left unconfigured; other settings need their flags.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count, pairwise
from pathlib import Path
from typing import Any, NamedTuple

from metrics.alerts import CplSpikeRule
from metrics.counts import MONEY_FIELDS
from metrics.kpis import BY_NAME, KPIS, Kpi, Unit

from .settings import Settings, SettingsError, parse_windows

Json = dict[str, Any]
Fmt = tuple[str, int | None]  # (Grafana unit, decimals)

# Currency units Grafana has had since 10.3 (the compose file runs 11.2); any other ISO
# code falls back to a plain suffix ("12.50 HUF").
GRAFANA_CURRENCIES = frozenset(
    {"USD", "GBP", "EUR", "JPY", "RUB", "UAH", "BRL", "DKK", "ISK", "NOK", "SEK", "CZK",
     "CHF", "PLN", "ZAR", "INR", "KRW", "IDR", "PHP", "VND", "TRY", "BGN"}
)  # fmt: skip
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
WINDOW, ALL = 'window="$window"', 'scope="all"'
CHANNEL, CAMPAIGN = 'channel=~"$channel"', 'campaign=~"$campaign"'
BY_CHANNEL, BY_CAMPAIGN = 'scope="channel"', 'scope="campaign"'
SIGNUP = 'type="signup"'
SELECTED = (CHANNEL, CAMPAIGN)
EVENTS, STAGES = "marketing_events_total", "marketing_stage_transitions_total"
SPEND, REVENUE = "marketing_spend_total", "marketing_revenue_total"
COUNT: Fmt = ("short", 0)
WIDTH = 24
ACRONYMS = frozenset(
    {"ctr", "ctor", "mql", "sql", "cpl", "cpc", "cpm", "cac", "aov", "roas", "romi"}
)
ALERTS = 'ALERTS{alertname=~"MarketingCPLSpike|MarketingSpendWithoutLeads",alertstate="firing"}'


@dataclass(frozen=True)
class Options:
    """What the dashboard depends on in the worker's settings."""

    currency: str
    windows: tuple[str, ...]
    cpl: CplSpikeRule = field(default_factory=CplSpikeRule)

    @property
    def money(self) -> Fmt:
        return currency_unit(self.currency), 2

    def command(self) -> str:
        """The command line that generates this dashboard."""
        rule = self.cpl
        return (
            f"python -m funnelpulse.dashboard --currency {self.currency} "
            f"--windows {','.join(self.windows)} "
            f"--cpl-windows {rule.short_window},{rule.long_window} --cpl-factor {rule.factor:g}"
        )


@dataclass(frozen=True)
class Step:
    """One funnel stage, counted by a counter (``matcher`` picks its label value)."""

    label: str
    metric: str
    matcher: str = ""


FUNNEL = (
    Step("Impressions", "marketing_impressions_total"),
    Step("Clicks", EVENTS, 'type="click"'),
    Step("Sign-ups (leads)", EVENTS, SIGNUP),
    Step("MQL", STAGES, 'stage="mql"'),
    Step("SQL", STAGES, 'stage="sql"'),
    Step("Opportunities", STAGES, 'stage="opportunity"'),
    Step("Won", STAGES, 'stage="won"'),
)


@dataclass
class Row:
    """A dashboard row and the panels under it (sized, not yet placed)."""

    title: str
    panels: list[Json]
    collapsed: bool = False


# -- units and names -----------------------------------------------------------------------


def currency_unit(code: str) -> str:
    return f"currency{code}" if code in GRAFANA_CURRENCIES else f"suffix: {code}"


def is_multiple(kpi: Kpi) -> bool:
    """Revenue over spend (ROAS, ROMI): a multiple that may pass 1, not a fraction."""
    return kpi.unit is Unit.RATIO and kpi.denominator in MONEY_FIELDS


def kpi_format(kpi: Kpi, options: Options) -> Fmt:
    if kpi.unit is Unit.MONEY:
        return options.money
    return ("none", 2) if is_multiple(kpi) else ("percentunit", 2)


def title(kpi: Kpi) -> str:
    """``cpl`` → CPL, ``mql_to_sql`` → MQL → SQL, ``cost_per_mql`` → Cost per MQL."""
    words = kpi.name.split("_")
    if len(words) == 1 and len(kpi.name) <= 4:
        return kpi.name.upper()
    text = " ".join(
        word.upper() if word in ACRONYMS else "→" if word == "to" else word for word in words
    )
    return text[0].upper() + text[1:]


# -- PromQL --------------------------------------------------------------------------------


def selector(metric: str, *matchers: str) -> str:
    chosen = ",".join(m for m in matchers if m)
    return f"{metric}{{{chosen}}}" if chosen else metric


def gauge(kpi: Kpi, *matchers: str) -> str:
    return selector(kpi.gauge_name, *matchers)


def increase(metric: str, *matchers: str, by: str = "") -> str:
    group = f" by ({by}) " if by else ""
    return f"sum{group}(increase({selector(metric, *matchers)}[$window]))"


def step_count(step: Step) -> str:
    return increase(step.metric, step.matcher, *SELECTED)


def ratio(top: str, bottom: str) -> str:
    """Absent while the denominator is 0, like the KPI gauges; never +Inf."""
    return f"{top} / ({bottom} > 0)"


# -- panels --------------------------------------------------------------------------------


def target(expr: str, legend: str = "") -> Json:
    return {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend}


def thresholds(*steps: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def panel(kind: str, name: str, doc: str, targets: Sequence[Json], defaults: Json) -> Json:
    instant = kind != "timeseries"
    return {
        "type": kind,
        "id": 0,  # numbered by layout()
        "title": name,
        "description": doc,
        "datasource": DATASOURCE,
        "targets": [
            {**t, "range": not instant, "instant": instant, "refId": chr(ord("A") + i)}
            for i, t in enumerate(targets)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
    }


def sized(body: Json, w: int, h: int) -> Json:
    return {**body, "gridPos": {"h": h, "w": w, "x": 0, "y": 0}}


def reduce_options() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def units(fmt: Fmt) -> Json:
    unit, decimals = fmt
    return {"unit": unit} if decimals is None else {"unit": unit, "decimals": decimals}


def stat(name: str, doc: str, expr: str, fmt: Fmt, w: int = 3, h: int = 4, **extra: Any) -> Json:
    defaults = {**units(fmt), "thresholds": thresholds(("blue", None))}
    body = panel("stat", name, doc, [target(expr)], {**defaults, **extra})
    body["options"] = {
        "reduceOptions": reduce_options(),
        "colorMode": "value",
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return sized(body, w, h)


def timeseries(name: str, doc: str, targets: Sequence[Json], fmt: Fmt, w: int = 6) -> Json:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "none", "group": "A"},
    }
    defaults = {
        **units(fmt),
        "custom": custom,
        "thresholds": thresholds(("green", None)),
    }
    body = panel("timeseries", name, doc, targets, defaults)
    body["options"] = {
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "calcs": ["lastNotNull"],
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return sized(body, w, 8)


def bargauge(name: str, doc: str, targets: Sequence[Json], w: int, h: int) -> Json:
    defaults = {
        "unit": "short",
        "decimals": 0,
        "min": 0,
        "color": {"mode": "continuous-BlPu"},
        "thresholds": thresholds(("blue", None)),
    }
    body = panel("bargauge", name, doc, targets, defaults)
    body["options"] = {
        "orientation": "horizontal",
        "displayMode": "gradient",
        "valueMode": "color",
        "showUnfilled": True,
        "namePlacement": "left",
        "sizing": "auto",
        "reduceOptions": reduce_options(),
    }
    return sized(body, w, h)


def override(body: Json, series: str, *properties: tuple[str, Any]) -> Json:
    """``body`` with ``properties`` set on the series named ``series``."""
    props = [{"id": key, "value": value} for key, value in properties]
    body["fieldConfig"]["overrides"].append(
        {"matcher": {"id": "byName", "options": series}, "properties": props}
    )
    return body


# -- sections ------------------------------------------------------------------------------


def kpi_doc(kpi: Kpi) -> str:
    multiple = " A multiple (3.2 = 3.2 × spend), not a percentage." if is_multiple(kpi) else ""
    return f"{kpi.description}: {kpi.formula}; gauge {kpi.gauge_name}.{multiple}"


def overview(kpis: Sequence[Kpi], options: Options) -> Row:
    stats = [
        stat(title(k), kpi_doc(k), f"max({gauge(k, WINDOW, ALL)})", kpi_format(k, options))
        for k in kpis
    ]
    for name, metric in (("Spend", SPEND), ("Revenue", REVENUE)):
        doc = f"increase({metric}) over $window, all channels ({options.currency})."
        stats.append(stat(name, doc, increase(metric), options.money))
    return Row("Overview (all channels, window $window)", stats)


def kpi_by_channel(kpi: Kpi, options: Options) -> Json:
    targets = [
        target(gauge(kpi, WINDOW, BY_CHANNEL, CHANNEL), "{{channel}}"),
        target(f"max({gauge(kpi, WINDOW, ALL)})", "all channels"),
    ]
    doc = f"{kpi_doc(kpi)} scope=channel, window $window; absent while its denominator is 0."
    body = timeseries(f"{title(kpi)} by channel", doc, targets, kpi_format(kpi, options))
    dashed = {"dash": [10, 10], "fill": "dash"}
    return override(body, "all channels", ("custom.lineStyle", dashed), ("custom.lineWidth", 2))


def kpi_by_campaign(kpi: Kpi, options: Options) -> Json:
    targets = [target(gauge(kpi, WINDOW, BY_CAMPAIGN, CAMPAIGN), "{{campaign}}")]
    doc = (
        f"{kpi_doc(kpi)} scope=campaign, window $window; the campaigns of the selected "
        "channels. Campaigns past the series cap are folded into campaign=(other)."
    )
    return timeseries(f"{title(kpi)} by campaign", doc, targets, kpi_format(kpi, options))


def funnel(options: Options) -> Row:
    doc = (
        "Increase of each counter over $window for the selected channels and campaigns: "
        "marketing_impressions_total (impressions, an event's count), marketing_events_total "
        "(clicks, sign-ups) and marketing_stage_transitions_total (a lead entering a stage, "
        "once per lead)."
    )
    steps = bargauge(
        "Funnel: " + " → ".join(s.label.split(" (")[0] for s in FUNNEL),
        doc,
        [target(step_count(step), step.label) for step in FUNNEL],
        w=12,
        h=9,
    )
    conversion = timeseries(
        "Funnel step conversion ($channel)",
        "Each funnel stage over the one before it, from the counters, window $window.",
        [
            target(ratio(step_count(step), step_count(before)), f"{before.label} → {step.label}")
            for before, step in pairwise(FUNNEL)
        ],
        ("percentunit", 2),
        w=12,
    )
    by_type = bargauge(
        "Counted events by type ($channel)",
        "Events counted (after dedup) over $window, by type; impression events count once "
        "whatever their count.",
        [target(increase(EVENTS, *SELECTED, by="type"), "{{type}}")],
        w=24,
        h=6,
    )
    return Row("Funnel ($channel, window $window)", [steps, conversion, by_type])


def spend_vs_leads(options: Options) -> Row:
    spend, leads = increase(SPEND, *SELECTED), increase(EVENTS, SIGNUP, *SELECTED)
    versus = timeseries(
        "Spend vs leads",
        f"Increase of {SPEND} (left axis, {options.currency}) against sign-ups (right axis) "
        "over $window. Spend rising while leads stay flat is the broken-form case.",
        [target(spend, "spend"), target(leads, "leads (sign-ups)")],
        options.money,
        w=12,
    )
    override(
        versus,
        "leads (sign-ups)",
        ("unit", "short"),
        ("decimals", 0),
        ("custom.axisPlacement", "right"),
        ("custom.axisLabel", "leads"),
    )
    by_channel = [
        increase(SPEND, *SELECTED, by="channel"),
        increase(EVENTS, SIGNUP, *SELECTED, by="channel"),
    ]
    unpaid = (
        f"count({increase(SPEND, *SELECTED, by='campaign')} > 0 unless on (campaign) "
        f"{increase(EVENTS, SIGNUP, *SELECTED, by='campaign')} > 0) or on () vector(0)"
    )
    return Row(
        "Spend vs leads ($channel, window $window)",
        [
            versus,
            timeseries(
                "Spend by channel",
                f"Increase of {SPEND} over $window.",
                [target(by_channel[0], "{{channel}}")],
                options.money,
            ),
            timeseries(
                "Leads by channel",
                "Sign-ups counted over $window.",
                [target(by_channel[1], "{{channel}}")],
                COUNT,
            ),
            timeseries(
                "CPL from counters by channel",
                "increase(spend) / increase(sign-ups) over $window, in PromQL from the "
                "counters (compare with the worker's marketing_cpl gauge).",
                [target(ratio(*by_channel), "{{channel}}")],
                options.money,
                w=12,
            ),
            stat(
                "Campaigns spending without leads",
                "Campaigns (selected channels) with spend but no sign-up over $window.",
                unpaid,
                COUNT,
                w=6,
                h=7,
                thresholds=thresholds(("green", None), ("red", 1)),
            ),
            stat(
                "Spend ($channel)",
                f"Spend over $window ({options.currency}).",
                spend,
                options.money,
                w=6,
                h=7,
            ),
        ],
    )


def cpl_baseline(cpl: Kpi, options: Options) -> Row:
    short, long, factor = options.cpl.short_window, options.cpl.long_window, options.cpl.factor
    now, base = f'window="{short}"', f'window="{long}"'
    spike = timeseries(
        f"CPL ({short}) vs {long} baseline",
        f"The in-stream cpl_spike alert fires above {factor:g} × the {long} baseline.",
        [
            target(f"max({gauge(cpl, now, ALL)})", f"CPL {short}"),
            target(f"max({gauge(cpl, base, ALL)})", f"baseline {long}"),
            target(f"{factor:g} * max({gauge(cpl, base, ALL)})", f"{factor:g} × baseline"),
        ],
        options.money,
        w=12,
    )
    relative = timeseries(
        f"CPL {short} / {long} baseline by campaign",
        f"Above {factor:g} (dashed) a campaign's CPL spikes against its own {long} baseline.",
        [
            target(
                f"{gauge(cpl, now, BY_CAMPAIGN, CAMPAIGN)} / ignoring (window) "
                f"{gauge(cpl, base, BY_CAMPAIGN, CAMPAIGN)}",
                "{{campaign}}",
            )
        ],
        ("none", 2),
        w=12,
    )
    relative["fieldConfig"]["defaults"]["thresholds"] = thresholds(("green", None), ("red", factor))
    relative["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "dashed"}
    active = stat(
        "Active CPL alerts",
        "Firing Prometheus alerts (MarketingCPLSpike, MarketingSpendWithoutLeads); falls back "
        "to the worker's marketing_alert_active gauge, then to 0.",
        f"count({ALERTS}) or on () count(marketing_alert_active == 1) or on () vector(0)",
        COUNT,
        w=6,
        h=8,
        thresholds=thresholds(("green", None), ("red", 1)),
    )
    per_campaign = [
        timeseries(
            f"{label} by campaign",
            f"marketing_cpl, scope=campaign, window {window}.",
            [target(gauge(cpl, f'window="{window}"', BY_CAMPAIGN, CAMPAIGN), "{{campaign}}")],
            options.money,
            w=9,
        )
        for label, window in ((f"CPL {short}", short), (f"Baseline CPL {long}", long))
    ]
    return Row(f"CPL vs {long} baseline (alerts)", [spike, relative, active, *per_campaign])


class Graph(NamedTuple):
    """A pipeline-health graph: its queries are (expr, legend) pairs."""

    name: str
    doc: str
    unit: str
    queries: tuple[tuple[str, str], ...]


RATE = "[$__rate_interval]"
NONE_YET = 'or on () label_replace(vector(0), "{0}", "(none)", "", "")'  # 0, not "No data"
QUANTILE = (
    f"histogram_quantile({{0}}, sum by (le) (rate(funnelpulse_publish_seconds_bucket{RATE})))"
)
HEALTH = (
    Graph("Messages processed /s by stage",
          "Kafka messages processed per second (intake, funnel, merge).", "mps",
          ((f"sum by (stage) (rate(funnelpulse_messages_processed_total{RATE}))", "{{stage}}"),)),
    Graph("Counted events /s by type", "Events counted (after dedup) per second.", "ops",
          ((f"sum by (type) (rate({EVENTS}{RATE}))", "{{type}}"),)),
    Graph("Processing lag",
          "now - event time of the newest event processed; and per input topic the age of the "
          "newest event seen (a stale spend feed makes CPL provisional).", "s",
          (("max(funnelpulse_processing_lag_seconds)", "processing lag"),
           ("max by (topic) (time() - funnelpulse_newest_event_timestamp_seconds)",
            "age of newest event: {{topic}}"))),
    Graph("Consumer lag", "Messages not yet consumed, per input topic.", "short",
          (("sum by (topic) (funnelpulse_consumer_lag_messages)", "{{topic}}"),)),
    Graph("Dead letters /s by reason",
          "Events sent to the dead-letter topic, per reason (0 when none yet).", "ops",
          ((f"sum by (reason) (rate(marketing_events_rejected_total{RATE})) "
            + NONE_YET.format("reason"), "{{reason}}"),)),
    Graph("Duplicates and late events /s",
          "Repeated event_ids not counted, by type; events older than the newest pane of "
          "their scope.", "ops",
          ((f"sum by (type) (rate(marketing_events_duplicate_total{RATE})) "
            + NONE_YET.format("type"), "duplicates: {{type}}"),
           (f"sum(rate(funnelpulse_late_events_total{RATE}))", "late"))),
    Graph("Publish latency", "Duration of one publish tick (Redis, Kafka kpis topic, pub/sub).",
          "s",
          ((QUANTILE.format(0.95), "p95"), (QUANTILE.format(0.5), "p50"),
           (f"sum(rate(funnelpulse_publish_seconds_sum{RATE})) / "
            f"sum(rate(funnelpulse_publish_seconds_count{RATE}))", "mean"))),
    Graph("Publish failures /s", "Failed publishes per target (0 when none yet).", "ops",
          ((f"sum by (target) (rate(funnelpulse_publish_failures_total{RATE})) "
            + NONE_YET.format("target"), "{{target}}"),)),
    Graph("State keys by table", "Keys held in each state table.", "short",
          (("sum by (table) (funnelpulse_state_keys)", "{{table}}"),)),
)  # fmt: skip
UP_DOWN = {"0": {"text": "DOWN", "color": "red", "index": 0},
           "1": {"text": "UP", "color": "green", "index": 1}}  # fmt: skip


def health() -> Row:
    up = thresholds(("red", None), ("green", 1))
    graphs = [
        timeseries(g.name, g.doc, [target(*q) for q in g.queries], (g.unit, None), w=8)
        for g in HEALTH
    ]
    stats = [
        stat("Redis up", "1 when the last Redis publish worked.", "min(funnelpulse_redis_up)",
             ("none", 0), w=6, thresholds=up,
             mappings=[{"type": "value", "options": UP_DOWN}]),
        stat("Workers scraped", "Worker /metrics endpoints Prometheus scraped successfully.",
             'sum(up{job="funnelpulse"})', ("none", 0), w=6, thresholds=up),
        stat("Campaigns folded into (other)", "Campaigns past the per-campaign series cap.",
             "max(marketing_campaigns_folded)", COUNT, w=6),
        stat("Max consumer lag", "Largest backlog of one input topic, in messages.",
             "max(funnelpulse_consumer_lag_messages)", COUNT, w=6),
    ]  # fmt: skip
    return Row("Pipeline health", [*graphs, *stats])


# -- the dashboard -------------------------------------------------------------------------


def layout(rows: Sequence[Row]) -> list[Json]:
    """Rows and their panels, numbered and placed left to right, 24 columns wide. Grafana
    keeps a collapsed row's panels inside it, placed as if it were open."""
    ids, y, placed = count(1), 0, []
    for row in rows:
        header = {
            "type": "row",
            "id": next(ids),
            "title": row.title,
            "collapsed": row.collapsed,
            "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
            "panels": [],
        }
        children = list(place(row.panels, y + 1, ids))
        bottom = max([y + 1, *(p["gridPos"]["y"] + p["gridPos"]["h"] for p in children)])
        if row.collapsed:
            header["panels"], y = children, y + 1
            placed.append(header)
        else:
            placed += [header, *children]
            y = bottom
    return placed


def place(panels: Sequence[Json], top: int, ids: Iterator[int]) -> Iterator[Json]:
    x, y, height = 0, top, 0
    for body in panels:
        w, h = body["gridPos"]["w"], body["gridPos"]["h"]
        if x + w > WIDTH:
            x, y, height = 0, y + height, 0
        yield {**body, "id": next(ids), "gridPos": {"h": h, "w": w, "x": x, "y": y}}
        x, height = x + w, max(height, h)


def window_variable(windows: Sequence[str]) -> Json:
    chosen = "1h" if "1h" in windows else windows[-1]
    options = [{"selected": w == chosen, "text": w, "value": w} for w in windows]
    return {
        "type": "custom",
        "name": "window",
        "label": "KPI window",
        "query": ",".join(windows),
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "options": options,
        "current": {"selected": True, "text": chosen, "value": chosen},
    }


def label_variable(name: str, label: str, definition: str, all_value: str | None) -> Json:
    variable = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": definition,
        "query": {
            "query": definition,
            "qryType": 1,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "regex": "",
        "hide": 0,
        "options": [],
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }
    return variable if all_value is None else {**variable, "allValue": all_value}


def templating(options: Options) -> Json:
    datasource = {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }
    channels = f"label_values({EVENTS}, channel)"
    campaigns = f"label_values({selector(EVENTS, CHANNEL)}, campaign)"
    return {
        "list": [
            datasource,
            window_variable(options.windows),
            label_variable("channel", "Channel", channels, ".*"),
            label_variable("campaign", "Campaign", campaigns, None),
        ]
    }


def annotation_list() -> Json:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }

    def alert(name: str, color: str, expr: str, label: str) -> Json:
        return {
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": color,
            "name": name,
            "expr": expr,
            "step": "30s",
            "titleFormat": f"{{{{{label}}}}}",
            "textFormat": f"{{{{{label}}}}} scope={{{{scope}}}} campaign={{{{campaign}}}}",
            "tagKeys": f"{label},campaign",
            "useValueForTime": False,
        }

    return {
        "list": [
            builtin,
            alert("CPL alerts (Prometheus)", "red", ALERTS, "alertname"),
            alert("CPL alerts (worker)", "orange", "marketing_alert_active == 1", "alert"),
        ]
    }


def dashboard(options: Options, kpis: Sequence[Kpi] = KPIS) -> Json:
    """The whole dashboard; ``kpis`` defaults to the registry."""
    cpl = BY_NAME["cpl"]  # the in-stream cpl_spike alert watches this one
    rows = [
        overview(kpis, options),
        funnel(options),
        Row("KPIs by channel (window $window)", [kpi_by_channel(k, options) for k in kpis]),
        Row(
            "KPIs by campaign ($channel, window $window)",
            [kpi_by_campaign(k, options) for k in kpis],
            collapsed=True,
        ),
        spend_vs_leads(options),
        cpl_baseline(cpl, options),
        health(),
    ]
    return {
        "uid": "funnelpulse",
        "title": "funnelpulse — marketing KPIs",
        "description": (
            "Real-time marketing KPIs, funnel, spend vs leads, CPL alerts and pipeline health "
            f"from the funnelpulse workers' /metrics; money in {options.currency}. Generated "
            f"from metrics/kpis.py by `{options.command()}` (make dashboard): do not edit."
        ),
        "tags": ["funnelpulse", "marketing"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "schemaVersion": 39,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "weekStart": "",
        "annotations": annotation_list(),
        "templating": templating(options),
        "panels": layout(rows),
    }


def render(doc: Json) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- command line --------------------------------------------------------------------------


def default_options() -> Options:
    """The dashboard of a worker left at its default settings (the committed one)."""
    settings = Settings()
    return Options(settings.reporting_currency, settings.windows, settings.cpl_rule)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dashboard's flags, defaulting to the worker's default settings."""
    d = default_options()
    parser.add_argument("--currency", default=d.currency, help="FUNNELPULSE_REPORTING_CURRENCY")
    parser.add_argument("--windows", default=",".join(d.windows), help="FUNNELPULSE_WINDOWS")
    parser.add_argument(
        "--cpl-windows",
        default=f"{d.cpl.short_window},{d.cpl.long_window}",
        help="FUNNELPULSE_CPL_SHORT_WINDOW,FUNNELPULSE_CPL_LONG_WINDOW",
    )
    parser.add_argument(
        "--cpl-factor", type=float, default=d.cpl.factor, help="FUNNELPULSE_CPL_FACTOR"
    )


def options_from(args: argparse.Namespace) -> Options:
    """Options from the parsed flags; a SettingsError names the bad one."""
    currency = str(args.currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise SettingsError(f"--currency {args.currency!r} is not an ISO 4217 code")
    try:
        windows = parse_windows(args.windows)
    except SettingsError as exc:
        raise SettingsError(f"--windows {args.windows!r}: {exc}") from None
    short, _, long = str(args.cpl_windows).partition(",")
    if short not in windows or long not in windows:
        raise SettingsError(f"--cpl-windows {args.cpl_windows}: both must be in --windows")
    if args.cpl_factor <= 0:
        raise SettingsError("--cpl-factor must be > 0")
    return Options(currency, windows, CplSpikeRule(short, long, args.cpl_factor))


def write(text: str, output: str | None) -> None:
    """To ``output`` through a temporary file (a failed run leaves the old file), or stdout."""
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m funnelpulse.dashboard",
        description="Print the Grafana dashboard for these settings (defaults: the worker's).",
    )
    add_arguments(parser)
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except SettingsError as exc:
        parser.error(str(exc))
    write(render(dashboard(options)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
