"""Prometheus series from the KPI snapshots: labels, absent KPIs, the campaign cap."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from metrics.counts import INDEX, zero
from metrics.prometheus import UNKNOWN_CHANNEL_SERIES, Metrics


def counts(impressions: int, clicks: int, spend_micros: int = 0, signups: int = 0) -> list[int]:
    vector = zero()
    vector[INDEX["impressions"]] = impressions
    vector[INDEX["clicks"]] = clicks
    vector[INDEX["spend"]] = spend_micros
    vector[INDEX["signups"]] = signups
    return vector


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() for s in m.samples if s.name == name]


def test_labels_per_scope_kind_and_absent_kpis() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=10)
    metrics.set_kpis("5m", dict([("all", counts(100, 5)), ("channel:email", counts(50, 0)),
                            ("campaign:spring", counts(10, 1, 2_000_000))]))  # fmt: skip
    get = registry.get_sample_value
    assert (
        get("marketing_ctr_ratio", {"window": "5m", "scope": "all", "channel": "", "campaign": ""})
        == 0.05
    )
    assert (
        get(
            "marketing_ctr_ratio",
            {"window": "5m", "scope": "channel", "channel": "email", "campaign": ""},
        )
        == 0.0
    )
    assert (
        get(
            "marketing_cpc",
            {"window": "5m", "scope": "campaign", "channel": "", "campaign": "spring"},
        )
        == 2.0
    )
    # no sign-ups: CPL is absent, not 0 or +Inf
    assert (
        get(
            "marketing_cpl",
            {"window": "5m", "scope": "campaign", "channel": "", "campaign": "spring"},
        )
        is None
    )


def test_campaign_series_are_capped_and_folded() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    rows = [(f"campaign:c{i:03d}", counts(1000 - i, 10)) for i in range(40)]
    metrics.set_kpis("1h", dict(rows))
    campaigns = {s["campaign"] for s in series(registry, "marketing_ctr_ratio")}
    assert campaigns == {"c000", "c001", "c002", "c003", "c004", "(other)"}
    assert registry.get_sample_value("marketing_campaigns_folded") == 35
    other = {"window": "1h", "scope": "campaign", "channel": "", "campaign": "(other)"}
    expected = 35 * 10 / sum(1000 - i for i in range(5, 40))
    assert abs(registry.get_sample_value("marketing_ctr_ratio", other) - expected) < 1e-12


def test_campaign_gauges_carry_the_channel_the_publisher_gives() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=1)
    channels = {"spring": "email"}
    metrics.label_campaigns(channels)
    metrics.set_kpis(
        "1h", dict([("campaign:spring", counts(100, 4)), ("campaign:b", counts(1, 1))])
    )
    labels = {(s["campaign"], s["channel"]) for s in series(registry, "marketing_ctr_ratio")}
    assert labels == {("spring", "email"), ("(other)", "")}  # folded: many channels, none
    channels["spring"] = "paid_social"  # read at scrape time: the publisher's current label
    metrics.set_kpis(
        "1h", dict([("campaign:spring", counts(100, 4)), ("campaign:new", counts(9, 1))])
    )
    labels = {(s["campaign"], s["channel"]) for s in series(registry, "marketing_ctr_ratio")}
    assert ("spring", "paid_social") in labels and ("spring", "email") not in labels


def test_a_campaign_leaving_the_top_loses_its_series() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=1)
    metrics.set_kpis("1h", dict([("campaign:a", counts(100, 1)), ("campaign:b", counts(10, 1))]))
    metrics.set_kpis("1h", dict([("campaign:a", counts(100, 1)), ("campaign:b", counts(1000, 1))]))
    campaigns = {s["campaign"] for s in series(registry, "marketing_ctr_ratio")}
    assert campaigns == {"b", "(other)"}


def test_event_counters_fold_beyond_the_cap() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=2)
    metrics.count_events({("click", "email", f"c{i}"): 1 for i in range(100)})
    labels = {s["campaign"] for s in series(registry, "marketing_events_total")}
    assert labels == {"c0", "c1", "(other)"}
    total = registry.get_sample_value(
        "marketing_events_total", {"type": "click", "channel": "email", "campaign": "(other)"}
    )
    assert total == 98


def test_the_children_cache_holds_series_not_campaigns() -> None:
    """Keyed by the raw campaign id, the cache held an entry (a tuple of label strings)
    per type × channel × campaign, 50,000 at 10,000 campaigns, long after the batches."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=5)
    kinds = ("click", "open", "signup")
    for _ in range(2):
        metrics.count_events({(k, "email", f"c{i}"): 1 for k in kinds for i in range(10_000)})
        metrics.count_money({("spend", "email", f"c{i}"): 1_000_000 for i in range(10_000)})
    cached = sum(len(children) for children in metrics._children.values())
    assert cached == (len(kinds) + 1) * 6  # 5 campaigns with their own series + (other)
    other = {"type": "open", "channel": "email", "campaign": "(other)"}
    assert registry.get_sample_value("marketing_events_total", other) == 2 * 9_995
    assert registry.get_sample_value("marketing_spend_total",
                                     {"channel": "email", "campaign": "c3"}) == 2.0  # fmt: skip


def test_impressions_and_stage_transitions_counters() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=10)
    metrics.count_funnel({("email", "a"): 40}, {("mql", "email", "a"): 2})
    get = registry.get_sample_value
    assert get("marketing_impressions_total", {"channel": "email", "campaign": "a"}) == 40
    assert (
        get(
            "marketing_stage_transitions_total",
            {"stage": "mql", "channel": "email", "campaign": "a"},
        )
        == 2
    )


def test_alert_gauge_of_folded_campaigns_stays_while_any_fires() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=0)  # every campaign folds into (other)
    labels = {"alert": "cpl_spike", "scope": "campaign", "campaign": "(other)"}
    metrics.set_alert("cpl_spike", "campaign:x", True)
    metrics.set_alert("cpl_spike", "campaign:y", True)
    metrics.set_alert("cpl_spike", "campaign:x", False)
    assert registry.get_sample_value("marketing_alert_active", labels) == 1
    metrics.set_alert("cpl_spike", "campaign:y", False)
    assert registry.get_sample_value("marketing_alert_active", labels) is None


def test_unknown_channels_are_counted_by_name_up_to_a_cap() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_campaigns=10)
    for i in range(UNKNOWN_CHANNEL_SERIES + 20):
        metrics.count_unknown_channel(f"name-{i}")
    metrics.count_unknown_channel("name-0")
    metrics.count_unknown_channel("x" * 1000)
    get = registry.get_sample_value
    assert get("marketing_unknown_channel_total", {"channel": "name-0"}) == 2
    assert get("marketing_unknown_channel_total", {"channel": "(other)"}) == 21
    labels = series(registry, "marketing_unknown_channel_total")
    assert len(labels) == UNKNOWN_CHANNEL_SERIES + 1
