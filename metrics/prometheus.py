"""Prometheus series (SPEC §3): event counters, one gauge family per KPI, pipeline health.

Everything is created against an injected ``CollectorRegistry`` (tests build their own).
The ``campaign`` label is attacker-controlled, so campaign series are capped: only the
``max_campaigns`` most active campaigns get their own labels; the rest roll into
``campaign="(other)"``, and a gauge reports how many were folded. Counters fold the same
way, so the series count stays bounded however many ids arrive. A campaign's KPI gauges
carry the channel most of its events carried, which the publisher passes in
(``label_campaigns``): this module never asks the worker's state itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .counts import MICROS, Counts, add_into, zero
from .kpis import KPIS, compute
from .scopes import kind_of

OTHER = "(other)"
# Distinct unknown channel names with their own series (the name is producer input): a
# new name past this many counts as "(other)"; the first ones say what to alias.
UNKNOWN_CHANNEL_SERIES = 50
LABELS = ("window", "scope", "channel", "campaign")
CHILD_CACHE = 50_000  # children cached per family (series: campaigns capped)


class Metrics:
    def __init__(self, registry: CollectorRegistry, max_campaigns: int) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise
        self.registry = registry
        self.max_campaigns = max_campaigns
        self._known_campaigns: set[str] = set()
        self._children: dict[int, dict[tuple[str, ...], Any]] = {}  # id(family) → labels → child
        self._alerting: dict[tuple[str, str, str], set[str]] = {}  # labels → firing scopes
        r = registry
        self.events = Counter(
            "marketing_events",
            "Events counted (after dedup)",
            ["type", "channel", "campaign"],
            registry=r,
        )
        self.impressions = Counter("marketing_impressions", "Impressions (an event's count)",
                                   ["channel", "campaign"], registry=r)  # fmt: skip
        self.transitions = Counter("marketing_stage_transitions",
                                   "Leads entering a stage (once per lead), and new customers",
                                   ["stage", "channel", "campaign"], registry=r)  # fmt: skip
        self.spend = Counter(
            "marketing_spend", "Spend, reporting currency", ["channel", "campaign"], registry=r
        )
        self.revenue = Counter(
            "marketing_revenue", "Revenue, reporting currency", ["channel", "campaign"], registry=r
        )
        self.rejected = Counter(
            "marketing_events_rejected",
            "Events sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "marketing_events_duplicate", "Repeated event_ids not counted", ["type"], registry=r
        )
        self.unknown_channels = Counter(
            "marketing_unknown_channel",
            "Events received with a channel neither known nor aliased, counted as other "
            f"(the first {UNKNOWN_CHANNEL_SERIES} names; then (other))",
            ["channel"],
            registry=r,
        )
        self._unknown_channel_names: set[str] = set()
        self.kpi_rows: dict[str, Mapping[str, Sequence[int]]] = {}  # window → scope → counts
        self.campaign_channels: Mapping[str, str] = {}  # campaign → its gauges' channel
        r.register(_KpiCollector(self))
        self.processed = Counter(
            "funnelpulse_messages_processed", "Kafka messages processed", ["stage"], registry=r
        )
        self.processing_lag = Gauge(
            "funnelpulse_processing_lag_seconds",
            "now - event time of the newest event processed",
            registry=r,
        )
        self.newest_event = Gauge(
            "funnelpulse_newest_event_timestamp_seconds",
            "Event time of the newest event seen, per input topic",
            ["topic"],
            registry=r,
        )
        self.late_events = Counter(
            "funnelpulse_late_events",
            "Events older than the newest pane of their scope when counted",
            registry=r,
        )
        self.publish_seconds = Histogram(
            "funnelpulse_publish_seconds", "Duration of one publish tick", registry=r
        )
        self.publish_failures = Counter(
            "funnelpulse_publish_failures", "Failed publishes", ["target"], registry=r
        )
        self.consumer_lag = Gauge(
            "funnelpulse_consumer_lag_messages",
            "Messages not yet consumed, per input topic",
            ["topic"],
            registry=r,
        )
        self.state_keys = Gauge(
            "funnelpulse_state_keys", "Keys held in each state table", ["table"], registry=r
        )
        self.alert_active = Gauge("marketing_alert_active", "1 while an in-stream alert fires",
                                  ["alert", "scope", "campaign"], registry=r)  # fmt: skip
        self.dedup_early = Counter("funnelpulse_dedup_evicted_early",
                                   "event_ids forgotten before the dedup horizon (size cap)",
                                   registry=r)  # fmt: skip
        self.redis_up = Gauge(
            "funnelpulse_redis_up", "1 when the last Redis publish worked", registry=r
        )
        self.pending_scopes = Gauge(
            "funnelpulse_publish_pending_scopes",
            "Scopes whose new counts are not yet in Redis: due (changed, waiting for a tick), "
            "backfill (of partitions gained), redis_backlog (missed while Redis was down)",
            ["queue"],
            registry=r,
        )

    def campaign_label(self, campaign: str) -> str:
        """The campaign's own label while under the cap, else ``(other)``."""
        if campaign in self._known_campaigns:
            return campaign
        if len(self._known_campaigns) < self.max_campaigns:
            self._known_campaigns.add(campaign)
            return campaign
        return OTHER

    def count_unknown_channel(self, name: str) -> None:
        """One event whose channel ``name`` became ``other``: the label is capped, in
        number and length, like every label a producer controls."""
        label = name[:64]
        names = self._unknown_channel_names
        if label not in names:
            if len(names) >= UNKNOWN_CHANNEL_SERIES:
                label = OTHER
            else:
                names.add(label)
        self.unknown_channels.labels(label).inc()

    def _child(self, family: Any, *labels: str) -> Any:
        """A labelled child, cached: ``labels()`` validates and hashes every call, and a
        batch touches the same few thousand series again and again. The last label is
        the campaign id, folded by the cap *before* the lookup, so the cache holds one
        entry per series, not one per campaign. Keyed by the raw id, it reached
        ``CHILD_CACHE`` (types × channels × campaigns: 50,000 at 10,000 campaigns) again and
        again in a drain and was dropped and refilled each time: tuples of label strings
        made and freed among long-lived objects, whose pages then stayed part-used (the
        steady size after the 10,000-campaign drain went from 161 to 147-153 MB,
        docs/RELIABILITY.md). The guard stays for the labels not capped here."""
        by_labels = self._children.get(id(family))
        if by_labels is None:
            by_labels = self._children[id(family)] = {}
        key = (*labels[:-1], self.campaign_label(labels[-1]))
        child = by_labels.get(key)
        if child is None:
            if len(by_labels) >= CHILD_CACHE:
                by_labels.clear()
            child = by_labels[key] = family.labels(*key)
        return child

    def count_events(self, counted: Mapping[tuple[str, str, str], int]) -> None:
        for (kind, channel, campaign), n in counted.items():
            self._child(self.events, kind, channel, campaign).inc(n)

    def count_funnel(
        self,
        impressions: Mapping[tuple[str, str], int],
        stages: Mapping[tuple[str, str, str], int],
    ) -> None:
        for (channel, campaign), n in impressions.items():
            self._child(self.impressions, channel, campaign).inc(n)
        for (stage, channel, campaign), n in stages.items():
            self._child(self.transitions, stage, channel, campaign).inc(n)

    def count_money(self, money: Mapping[tuple[str, str, str], int]) -> None:
        for (kind, channel, campaign), micros in money.items():
            family = self.revenue if kind == "revenue" else self.spend
            self._child(family, channel, campaign).inc(micros / MICROS)

    def set_kpis(self, window: str, rows: Mapping[str, Sequence[int]]) -> None:
        """Scope → counts of ``window``, kept as given (the publisher passes the mapping it
        keeps current, and scrapes run on its event loop); gauges are computed from it at
        scrape time, so a tick costs nothing however many scopes there are, and a scope
        that is gone from it is gone from the next scrape. (A copy per tick was 16 % of a
        busy 10,000-campaign worker's samples: py-spy, 50,000 tuples a second.)"""
        self.kpi_rows[window] = rows

    def label_campaigns(self, channels: Mapping[str, str]) -> None:
        """Campaign id → the channel its KPI gauges carry (read at scrape time; a campaign
        missing from it, and ``(other)``, carry ``channel=""``). The publisher passes the
        mapping it keeps current (``streams/campaign_channels.py``)."""
        self.campaign_channels = channels

    def shown_rows(self, window: str) -> tuple[list[tuple[str, Sequence[int]]], int]:
        """The rows with their own series (campaigns capped, most active first, the rest
        summed into ``campaign:(other)``), and how many campaigns were folded."""
        rows = list(self.kpi_rows.get(window, {}).items())
        campaigns = sorted(
            ((scope, counts) for scope, counts in rows if kind_of(scope) == "campaign"),
            key=lambda row: -sum(row[1][:6]),
        )
        shown = [row for row in rows if kind_of(row[0]) != "campaign"]
        shown += campaigns[: self.max_campaigns]
        folded = campaigns[self.max_campaigns :]
        if folded:
            other: Counts = zero()
            for _scope, counts in folded:
                add_into(other, counts)
            shown.append((f"campaign:{OTHER}", other))
        return shown, len(folded)

    def set_alert(self, alert: str, scope: str, active: bool) -> None:
        """1 while any scope behind these labels fires (folded campaigns share a label)."""
        kind, _, name = scope.partition(":")
        labels = (alert, kind, self.campaign_label(name) if kind == "campaign" else "")
        firing = self._alerting.setdefault(labels, set())
        if active:
            firing.add(scope)
            self.alert_active.labels(*labels).set(1)
            return
        firing.discard(scope)
        if not firing:
            del self._alerting[labels]
            _remove(self.alert_active, labels)


class _KpiCollector(Collector):
    """One gauge family per KPI (SPEC §3), rendered from the latest rows at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # families are unknown until collected: nothing for duplicate checks

    def collect(self) -> Iterable[Metric]:
        families = {
            kpi.name: GaugeMetricFamily(
                kpi.gauge_name, f"{kpi.description}: {kpi.formula}", labels=LABELS
            )
            for kpi in KPIS
        }
        folded_total = 0
        for window in list(self.metrics.kpi_rows):
            shown, folded = self.metrics.shown_rows(window)
            folded_total = max(folded_total, folded)
            for scope, counts in shown:
                labels = list(_labels(window, scope, self.metrics.campaign_channels))
                for kpi in KPIS:
                    value = compute(kpi, counts)
                    if value is not None:
                        families[kpi.name].add_metric(labels, value)
        yield from families.values()
        yield GaugeMetricFamily(
            "marketing_campaigns_folded",
            "Campaigns whose series are folded into campaign=(other)",
            value=folded_total,
        )


def _labels(
    window: str, scope: str, campaign_channels: Mapping[str, str]
) -> tuple[str, str, str, str]:
    kind, _, name = scope.partition(":")
    if kind == "channel":
        return (window, kind, name, "")
    if kind == "campaign":
        return (window, kind, campaign_channels.get(name, ""), name)
    return (window, kind, "", "")


def _remove(gauge: Any, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
