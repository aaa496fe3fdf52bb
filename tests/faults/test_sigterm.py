"""SIGTERM mid-stream: the worker flushes, commits and exits 0 within a bound, and after a
restart nothing is lost or counted twice. A graceful stop leaves no replay window: every
message whose counts reached the changelog has its offset committed (after kill -9 the
test_kill9 figures show the window a crash leaves)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Figures, Stack
from tests.integration.scenario import build

from .conftest import Scale
from .harness import Streaming, wait_progress
from .probes import ChangelogMarks, committed_offsets, in_flight

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(32)]
SEED = 20261128
STOP_BOUND = 30.0  # seconds from SIGTERM to exit


async def test_sigterm_mid_stream_exits_cleanly_and_loses_nothing(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis, scale: Scale, figures: Figures
) -> None:
    sc = build(seed=SEED, now=time.time(), target_events=scale.events // 4)
    run = Streaming(stack, namespace, tmp_path, redis, sc, rate=100)
    marks = ChangelogMarks(stack.bootstrap, namespace)
    try:
        await run.start()
        await run.reach(0.4)
        assert run.worker is not None and run.worker.proc is not None
        assert await wait_progress(run.worker, 0, 60) is not None
        asked = time.monotonic()
        run.worker.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(run.worker.proc.wait, STOP_BOUND + 30)
        stopped_in = time.monotonic() - asked
        committed = await committed_offsets(stack.bootstrap, namespace)
        await marks.refresh()
        window = marks.replay_window(committed)
        _, events_in_flight = in_flight(run.feed.landed, committed)
        recovery = await run.start("restarted")
        await run.finish()
    finally:
        await marks.close()
        final = run.close()
    assert code == 0, f"SIGTERM exit code {code}"
    assert final == 0, run.worker.tail() if run.worker else ""
    assert stopped_in < STOP_BOUND, f"took {stopped_in:.1f} s to stop"
    figures.append(
        f"SIGTERM: exit 0 in {stopped_in:.1f} s mid-stream ({events_in_flight:,} events "
        f"produced and not yet committed at exit); replay window {window} messages "
        f"(counted, not committed); restart -> /healthz ok {recovery.ready:.1f} s; "
        f"recount exact ({run.feed.events_sent:,} events)"
    )
    assert window == 0, f"{window} messages counted but not committed by a graceful stop"
