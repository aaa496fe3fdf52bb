"""The exact-recount check shared by the pipeline acceptance test and the fault tests:
every count and KPI, for every scope and the 1 h, 24 h, 7 d and 30 d windows, in Redis, on
/kpis and on /metrics, against the scenario's independent ground truth. Completion is
judged on the longest window (30 d), which holds every sign-up and purchase: events days
old are interleaved with fresh ones, so a complete 24 h says nothing about them."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from .expected import RATIOS, expected_kpis, tolerance
from .scenario import FIELDS, LONGEST, WINDOWS, Message, Scenario
from .worker import Worker

MONEY_FIELDS = {"revenue", "spend"}
# The scenario's recent events are 2-45 minutes old when it is built: its 1 h counts hold
# for 14 minutes (a window is rounded out to whole minutes), less a publish tick or two.
ONE_HOUR_HOLDS_FOR = 12 * 60


def windows_to_check(sc: Scenario) -> tuple[str, ...]:
    """The windows whose recount still holds: a full-size fault run outlasts the 1 h one
    (24 h holds for an hour, 7 d for six hours), and its check is then left out, never
    bent."""
    if time.time() < sc.now + ONE_HOUR_HOLDS_FOR:
        return WINDOWS
    return tuple(w for w in WINDOWS if w != "1h")


async def produce(bootstrap: str, namespace: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for m in messages:
            key = m.key.encode() if m.key else None
            await producer.send(f"{namespace}.{m.topic_suffix}", m.value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_phases(bootstrap: str, namespace: str, redis: Redis, sc: Scenario) -> None:
    """The scenario in its three phases: anonymous funnel events only once their sign-ups
    are counted, a customer's later purchases once the first one is."""
    key = f"{namespace}:kpi:{LONGEST}:all"
    await produce(bootstrap, namespace, [m for m in sc.messages if m.phase == 1])
    await wait_for_counts(redis, key, {"signups": sc.truth[("all", LONGEST)]["signups"]}, 120)
    await produce(bootstrap, namespace, [m for m in sc.messages if m.phase == 2])
    purchases = {"purchases": sc.purchases_by_phase[1] + sc.purchases_by_phase[2]}
    await wait_for_counts(redis, key, purchases, 120)
    await produce(bootstrap, namespace, [m for m in sc.messages if m.phase == 3])


async def wait_for_counts(redis: Redis, key: str, want: Mapping[str, int], patience: float) -> None:
    deadline = time.monotonic() + patience
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        raw = await redis.hgetall(key)
        got = {k.decode(): float(v) for k, v in raw.items() if k.decode() in want}
        if all(abs(got.get(f, 0) - _unit(f, v)) < 5e-7 for f, v in want.items()):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{key} never reached {dict(want)}; last seen {got}")


def _unit(field: str, value: int) -> float:
    return value / 1e6 if field in MONEY_FIELDS else float(value)


def assert_snapshot(doc: Mapping[str, Any], counts: Mapping[str, int], where: str) -> None:
    for f in FIELDS:
        got = float(doc.get(f, 0))
        assert abs(got - _unit(f, counts[f])) < 5e-7, (
            f"{where}: {f} is {got}, want {_unit(f, counts[f])}"
        )
    for name, want in expected_kpis(counts).items():
        got = doc.get(name)
        if want is None:
            assert got is None, f"{where}: {name} is {got}, want absent (zero denominator)"
        else:
            assert got is not None, f"{where}: {name} missing, want {want}"
            assert abs(float(got) - want) <= tolerance(name) * max(1.0, abs(want)), (
                f"{where}: {name} is {got}, want {want}"
            )


def scopes_and_counts(sc: Scenario) -> list[tuple[str, str, dict[str, int]]]:
    scopes = {scope for scope, _w in sc.truth}
    zero = dict.fromkeys(FIELDS, 0)
    windows = windows_to_check(sc)
    return [(w, s, sc.truth.get((s, w), zero)) for s in sorted(scopes) for w in windows]


async def check_redis(redis: Redis, ns: str, sc: Scenario) -> int:
    checked = 0
    for window, scope, counts in scopes_and_counts(sc):
        raw = await redis.hgetall(f"{ns}:kpi:{window}:{scope}")
        doc = {k.decode(): v.decode() for k, v in raw.items()}
        if not doc and not any(counts.values()):
            continue  # a scope with no events in this window need not be published
        assert doc, f"redis has no hash for {window} {scope}"
        assert_snapshot(doc, counts, f"redis {window} {scope}")
        assert await redis.ttl(f"{ns}:kpi:{window}:{scope}") > 0
        assert await redis.zscore(f"{ns}:scopes:{window}", scope) is not None
        checked += 1
    return checked


def check_http(url: str, sc: Scenario) -> int:
    checked = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        for window in windows_to_check(sc):
            listing = client.get("/kpis", params={"window": window}).json()["scopes"]
            for w, scope, counts in scopes_and_counts(sc):
                if w != window or (scope not in listing and not any(counts.values())):
                    continue
                one = client.get("/kpis", params={"window": window, "scope": scope})
                assert one.status_code == 200, (window, scope, one.text)
                assert_snapshot(one.json(), counts, f"/kpis {window} {scope}")
                assert_snapshot(listing[scope], counts, f"/kpis listing {window} {scope}")
                checked += 1
    return checked


def gauge_name(kpi: str) -> str:
    return f"marketing_{kpi}_ratio" if kpi in RATIOS else f"marketing_{kpi}"


def check_metrics(url: str, sc: Scenario) -> int:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[tuple[str, str, str, str, str], float] = {}
    campaign_channels: dict[str, set[str]] = defaultdict(set)  # campaign gauges' channel
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if "window" in labels:
                channel = labels["channel"]
                if labels["scope"] == "campaign":
                    campaign_channels[labels["campaign"]].add(channel)
                    channel = ""  # checked below, against the campaign's own
                key = (s.name, labels["window"], labels["scope"], channel, labels["campaign"])
                samples[key] = s.value
    check_campaign_channels(campaign_channels, sc)
    checked = 0
    for window, scope, counts in scopes_and_counts(sc):
        kind, _, name = scope.partition(":")
        channel = name if kind == "channel" else ""
        campaign = name if kind == "campaign" else ""
        for kpi, want in expected_kpis(counts).items():
            got = samples.get((gauge_name(kpi), window, kind, channel, campaign))
            if want is None:
                assert got is None, (
                    f"/metrics {gauge_name(kpi)} {window} {scope} = {got}, want absent"
                )
            else:
                assert got is not None, f"/metrics {gauge_name(kpi)} {window} {scope} missing"
                assert abs(got - want) <= tolerance(kpi) * max(1.0, abs(want)), (
                    kpi,
                    window,
                    scope,
                    got,
                    want,
                )
                checked += 1
    return checked


def check_campaign_channels(seen: Mapping[str, set[str]], sc: Scenario) -> None:
    """A campaign's gauges carry the channel its events carried, one per campaign (the
    unattributed ``(none)`` campaign: the channel most of its events carried); the series
    folded into ``(other)`` have none."""
    for campaign, channels in seen.items():
        want = {""} if campaign == "(other)" else {sc.channels.get(campaign, min(channels))}
        assert channels == want and (campaign == "(other)" or "" not in channels), (
            f"/metrics: campaign {campaign} carries channel {channels}, want {want}"
        )


def counter_total(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


async def dead_letters(
    bootstrap: str, topic: str, expected: int, patience: float = 30.0
) -> list[Any]:
    """Every record of the dead-letter topic: ``expected`` of them within ``patience`` s,
    then one more poll, since anything beyond the expected count is a failure too."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + patience
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=1500)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def wait_republished(urls: list[str], patience: float = 60) -> None:
    """Every worker has sent its recovered partials to the merge stage again and
    republished the scopes of the partitions it gained (a start, a restart, a rebalance):
    both go behind the new changes, a share per tick, so the tick that brought ``all`` up
    to date need not have brought every scope."""
    deadline = time.monotonic() + patience
    waiting: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            for url in urls:
                try:
                    health = (await http.get(f"{url}/healthz")).json()
                    waiting[url] = (
                        health["republishing"] + health["resending"] + health["reading_stored"]
                    )
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    waiting[url] = repr(exc)
            if all(n == 0 for n in waiting.values()):
                return
            await asyncio.sleep(0.25)
    raise AssertionError(f"scopes never all republished: {waiting}")


async def check_everything(
    redis: Redis, ns: str, worker: Worker, sc: Scenario, patience: float = 120
) -> None:
    await wait_for_counts(redis, f"{ns}:kpi:{LONGEST}:all", sc.truth[("all", LONGEST)], patience)
    await wait_republished([worker.url], patience)
    await asyncio.sleep(1.5)  # let every scope's snapshot of that tick land
    with_data = sum(1 for _w, _s, counts in scopes_and_counts(sc) if any(counts.values()))
    assert with_data >= 30 * len(windows_to_check(sc))
    assert await check_redis(redis, ns, sc) >= with_data
    assert check_http(worker.url, sc) >= with_data
    assert check_metrics(worker.url, sc) >= 8 * with_data
