"""kill -9 at random moments while the seeded scenario streams in; every KPI exact at the end.

Each kill lands while the feed is still sending (the feed may never run more than
(kills + 1) / (planned kills + 1) of the scenario ahead), about one in four of them while
the restarted worker is still starting or recovering its tables. Per kill the test records
the events in flight, the replay window (counted but uncommitted messages) and the time
the restarted worker took to answer ``ok`` and to process input again.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Figures, Stack
from tests.integration.recount import check_everything, windows_to_check
from tests.integration.scenario import build

from .conftest import Scale
from .feed import Feed, counted_barrier
from .harness import start_worker
from .probes import ChangelogMarks, committed_offsets, in_flight, kill9, stats, wait_recovered

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(60)]
SEED = 20261124


@dataclass(frozen=True)
class Kill:
    at: float  # seconds since the worker started
    in_recovery: bool
    events_in_flight: int
    messages_in_flight: int
    replay_window: int
    produced: int


async def test_kill9_at_random_moments_loses_and_doubles_nothing(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis, scale: Scale, figures: Figures
) -> None:
    rng = random.Random(SEED)
    sc = build(seed=SEED, now=time.time(), target_events=scale.events)
    feed = Feed(stack.bootstrap, namespace, sc, rate=150)
    planned = scale.kills
    feed.ceiling = math.ceil(feed.total / (planned + 1))
    marks = ChangelogMarks(stack.bootstrap, namespace)
    worker, started = start_worker(stack, namespace, tmp_path)
    await wait_recovered(worker, started)
    sending = asyncio.create_task(feed.run(counted_barrier(redis, namespace, sc, patience=1800)))
    kills: list[Kill] = []
    ready: list[float] = []
    progress: list[float] = []
    try:
        while len(kills) < planned:
            early = rng.random() < 0.25
            if early:
                await asyncio.sleep(rng.uniform(0.5, 6.0))
            else:
                recovery = await wait_recovered(worker, started)
                ready.append(recovery.ready)
                progress.append(recovery.progress)
                await asyncio.sleep(rng.uniform(0.2, 4.0))
            assert not feed.done, f"the feed ended before kill {len(kills) + 1}"
            produced, at = feed.events_sent, time.monotonic() - started
            kill9(worker)
            committed = await committed_offsets(stack.bootstrap, namespace)
            await marks.refresh()
            messages, events = in_flight(feed.landed, committed)
            window = marks.replay_window(committed)
            kills.append(Kill(at, early, events, messages, window, produced))
            feed.ceiling = math.ceil(feed.total * (len(kills) + 1) / (planned + 1))
            worker, started = start_worker(stack, namespace, tmp_path)
        recovery = await wait_recovered(worker, started)
        ready.append(recovery.ready)
        progress.append(recovery.progress)
        await sending
        await check_everything(redis, namespace, worker, sc, patience=900)
        checked = " and ".join(windows_to_check(sc))
        if "1h" not in checked:
            checked += "; 1h not checked: the run outlasted the scenario's 1h window"
    finally:
        await marks.close()
        sending.cancel()
        code = worker.stop()
    assert code == 0, worker.tail()

    assert feed.events_sent >= scale.events
    flights = [k.events_in_flight for k in kills]
    windows = [k.replay_window for k in kills]
    figures.append(
        f"kill -9: {len(kills)} kills survived ({sum(k.in_recovery for k in kills)} during "
        f"start/recovery) while {feed.events_sent:,} events ({feed.sent:,} messages) streamed "
        f"in; events in flight per kill {stats([float(f) for f in flights])} "
        f"(total {sum(flights):,}); replay window per kill (messages counted, not committed) "
        f"{stats([float(w) for w in windows])}; restart -> /healthz ok {stats(ready)} s, "
        f"-> processing {stats(progress)} s; recount: exact (every count and KPI, every scope, "
        f"{checked})"
    )
    assert sum(windows) > 0, "no kill ever left a replay window: the test proved nothing"
