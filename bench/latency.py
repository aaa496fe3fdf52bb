"""The latency phase: produce → visible in Redis, with a live funnelpulse worker.

A producer sends ordinary, valid events at a fixed rate through the real input topics.
Every ``tick`` it sends the events due so far (rate × elapsed), as a collector would: one
batch message per event type, all for the tick's campaign, each event's ``ts`` = the
wall-clock time taken just before the tick's messages are built and handed to the
producer: the event carries its produce time. The campaigns are markers:
``lat<phase>-<second>-<slot>``, the slot turning every tick (``slots`` per second, spread
over the partitions), so each one's counts only grow during the phase.

The worker publishes each tick's snapshots in one Redis MULTI/EXEC that writes the hashes
and appends the same JSON to the ``kpi-stream`` stream; the stream entry's id is Redis's
own clock (ms) when that transaction ran, i.e. when the new counts became visible. For
each (marker campaign, count field) the events are numbered in produce order (one
partition, one topic: processed in that order), and event *i* is visible at the first
entry whose count for that campaign and field is ≥ *i* (the largest over the published
windows). Latency = visible time - produce time; p50/p95/p99 are nearest-rank
percentiles over all events. Producer and Redis run on the same host (one clock).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaProducer

from bench.generator import CHANNELS, TYPE_MIX
from bench.results import LatencyResult
from streams.events import EventType

# Count field each produced type raises by exactly one per event (spend: 1.00 USD each).
FIELD_OF: dict[EventType, str] = {
    EventType.IMPRESSION: "impressions",
    EventType.CLICK: "clicks",
    EventType.OPEN: "opens",
    EventType.SIGNUP: "signups",
    EventType.SPEND: "spend",
}
WEIGHTS = {kind: TYPE_MIX[kind] for kind in FIELD_OF}
Key = tuple[str, str]  # (campaign, count field)
Sample = tuple[float, int]  # (latency seconds, events)


@dataclass
class Produced:
    """What one phase sent: per (campaign, field), (produce time, events) in order."""

    sends: dict[Key, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    started: float = 0.0
    ended: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / (self.ended - self.started) if self.ended > self.started else 0.0

    def totals(self) -> dict[Key, int]:
        return {key: sum(n for _, n in sends) for key, sends in self.sends.items()}


def percentile(samples: Sequence[Sample], q: float) -> float | None:
    """Nearest-rank percentile of weighted samples: the smallest latency L such that at
    least ``q`` % of all events have a latency ≤ L."""
    total = sum(n for _, n in samples)
    if total <= 0:
        return None
    rank = max(1, -(-total * q // 100))  # ceil(total × q / 100), at least the first event
    seen = 0
    for latency, n in sorted(samples):
        seen += n
        if seen >= rank:
            return latency
    return None  # pragma: no cover - rank ≤ total


def match_visibility(
    sends: Sequence[tuple[float, int]], seen: Sequence[tuple[float, float]]
) -> tuple[list[Sample], int]:
    """Latencies of in-order sends against (visible time, count) observations in time order;
    returns the samples and the number of events never seen."""
    samples: list[Sample] = []
    j, best = 0, 0.0
    done = 0  # events (numbered from 1) already matched
    for ts, n in sends:
        last = done + n
        while done < last:
            while j < len(seen) and max(best, seen[j][1]) <= done:
                best = max(best, seen[j][1])
                j += 1
            if j == len(seen):
                return samples, sum(n for _, n in sends) - done
            best = max(best, seen[j][1])
            upto = min(last, int(best))
            samples.append((seen[j][0] - ts, upto - done))
            done = upto
    return samples, 0


def observations(
    entries: Iterable[tuple[float, Mapping[str, Any]]], prefix: str
) -> dict[Key, list[tuple[float, float]]]:
    """(visible time, count) per (campaign, field) from kpi-stream entries, for the
    campaigns starting with ``prefix``; the count is the largest over the windows."""
    out: dict[Key, list[tuple[float, float]]] = defaultdict(list)
    scope_prefix = f"campaign:{prefix}"
    for at, message in entries:
        best: dict[Key, float] = {}
        for snap in message.get("snapshots", ()):
            scope = snap.get("scope", "")
            if not scope.startswith(scope_prefix):
                continue
            campaign = scope.removeprefix("campaign:")
            for name in FIELD_OF.values():
                value = float(snap.get(name, 0) or 0)
                key = (campaign, name)
                if value > best.get(key, -1.0):
                    best[key] = value
        for key, value in best.items():
            out[key].append((at, value))
    return out


@dataclass
class PhaseStats:
    samples: list[Sample]
    invisible: int
    over: list[str]  # keys whose count went beyond what was sent (double counting)
    by_field: dict[str, list[Sample]]


def phase_stats(
    produced: Produced, seen: Mapping[Key, Sequence[tuple[float, float]]]
) -> PhaseStats:
    samples: list[Sample] = []
    by_field: dict[str, list[Sample]] = defaultdict(list)
    invisible = 0
    over = []
    for key, sends in produced.sends.items():
        obs = seen.get(key, [])
        got, missing = match_visibility(sends, obs)
        samples += got
        by_field[key[1]] += got
        invisible += missing
        if obs and max(v for _, v in obs) > sum(n for _, n in sends):
            over.append(f"{key[0]} {key[1]}")
    return PhaseStats(samples, invisible, over, dict(by_field))


# -- the impure half: producing, and reading the stream back ----------------------------------
def _events(
    kinds: list[EventType], ts: float, second: int, slot: int, label: str, seq: Iterator[int]
) -> dict[tuple[str, EventType], list[dict[str, Any]]]:
    """One tick's events, all for the tick's campaign: one batch message per type."""
    messages: dict[tuple[str, EventType], list[dict[str, Any]]] = defaultdict(list)
    campaign = f"lat{label}-{second:04d}-{slot}"
    for kind in kinds:
        n = next(seq)
        doc: dict[str, Any] = {"event_id": f"lat{label}-{n}", "ts": ts, "campaign_id": campaign,
                               "channel": CHANNELS[slot % len(CHANNELS)]}  # fmt: skip
        if kind is EventType.CLICK:
            doc["user_id"] = f"u{n}"
        elif kind is EventType.SIGNUP:
            doc["lead_id"] = f"lat{label}-lead-{n}"
        elif kind is EventType.SPEND:
            doc.update(amount=1.0, currency="USD")
        messages[(campaign, kind)].append(doc)
    return messages


async def produce_at_rate(
    bootstrap: str, topics: Mapping[EventType, str], rate: float, seconds: float, label: str,
    slots: int = 8, tick: float = 0.05, seed: int = 7,
) -> Produced:  # fmt: skip
    rng = random.Random(seed)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    produced = Produced()
    seq = iter(range(1, 1 << 62))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        produced.started = start = time.time()
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, start + k * tick - time.time()))
            now = time.time()
            elapsed = min(now - start, seconds)
            due = int(rate * elapsed) - produced.events
            if due > 0:
                ts = round(time.time(), 3)
                batch = rng.choices(kinds, weights, k=due)
                messages = _events(batch, ts, int(elapsed), k % slots, label, seq)
                for (campaign, kind), docs in messages.items():
                    await producer.send(topics[kind], orjson.dumps(docs), key=campaign.encode())
                    produced.sends[(campaign, FIELD_OF[kind])].append((ts, len(docs)))
                produced.events += due
            if elapsed >= seconds:
                break
        produced.ended = time.time()
        await producer.flush()
    finally:
        await producer.stop()
    return produced


def read_stream(client: redis.Redis, key: str, since: float) -> list[tuple[float, Any]]:
    """Every kpi-stream entry from ``since`` on, as (Redis time of the entry, message)."""
    out: list[tuple[float, Any]] = []
    start = f"{int(since * 1000)}-0"
    while True:
        page: Any = client.xrange(key, min=start, max="+", count=200)
        for entry_id, data in page:
            ms, _, _seq = entry_id.decode().partition("-")
            out.append((int(ms) / 1000, orjson.loads(data[b"data"])))
        if len(page) < 200:
            return out
        ms, _, seq = page[-1][0].decode().partition("-")
        start = f"{ms}-{int(seq) + 1}"


def wait_visible(
    client: redis.Redis, stream: str, produced: Produced, label: str, patience: float
) -> tuple[dict[Key, list[tuple[float, float]]], float]:
    """Reads the stream until every sent event is counted or patience runs out; returns
    the observations and the seconds waited after the producer stopped."""
    want = produced.totals()
    deadline = time.monotonic() + patience
    waited_from = time.monotonic()
    while True:
        seen = observations(read_stream(client, stream, produced.started - 1), f"lat{label}-")
        reached = all(
            seen.get(key) and max(v for _, v in seen[key]) >= n for key, n in want.items()
        )
        if reached or time.monotonic() > deadline:
            return seen, time.monotonic() - waited_from
        time.sleep(1.0)


def summarise(result: LatencyResult, produced: Produced, stats: PhaseStats) -> None:
    result.events, result.sent_rate = produced.events, produced.rate
    result.seconds = produced.ended - produced.started
    result.p50, result.p95, result.p99, result.max = (
        percentile(stats.samples, q) for q in (50, 95, 99, 100)
    )
    result.signup_p99 = percentile(stats.by_field.get("signups", []), 99)
    result.invisible, result.over = stats.invisible, len(stats.over)
