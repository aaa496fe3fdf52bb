"""The phases after the side-by-side drains, each with its own funnelpulse worker, topics
and Redis prefix: latency at fixed rates (``bench.latency``) and memory with many
campaigns and 24 h of panes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.generator import GroundTruth, MemorySpec, preload_memory
from bench.lag import LagWatch
from bench.latency import phase_stats, produce_at_rate, summarise, wait_visible
from bench.measure import proc_cpu, proc_peak_rss_mb, proc_rss_mb
from bench.results import LatencyResult, MemoryResult
from bench.systems import (
    COMMIT_GRACE,
    END_BUDGET,
    END_LAG,
    END_SELF,
    EXACT_PATIENCE,
    STARTUP_ALLOWANCE,
    FunnelpulseWorker,
    check_redis,
    funnelpulse_env,
    parse_gauge,
)

log = logging.getLogger("bench")


@dataclass
class Env:
    """What every phase needs from the run."""

    ns: str
    bootstrap: str
    redis_url: str
    workdir: Path
    web_port: int


def _prepare(env: Env, name: str, **extra: str) -> tuple[dict[str, str], Any, Path]:
    """The worker's environment (``extra``: more variables), its topics (made now) and its
    data dir."""
    from funnelpulse.settings import Settings
    from streams.topics import TopicNames, ensure_topics

    data_dir = Path(tempfile.mkdtemp(prefix=f"{env.ns}-{name}-", dir=env.workdir))
    worker_env = funnelpulse_env(app_id=f"{env.ns}-{name}", topic_prefix=f"{env.ns}.{name}.",
                                 redis_prefix=f"{env.ns}:{name}:", web_port=env.web_port,
                                 data_dir=data_dir, bootstrap=env.bootstrap,
                                 redis_url=env.redis_url, **extra)  # fmt: skip
    settings = Settings.from_env(worker_env)
    asyncio.run(ensure_topics(settings))
    return worker_env, TopicNames.from_settings(settings), data_dir


def _worker(env: Env, name: str, worker_env: dict[str, str]) -> FunnelpulseWorker:
    return FunnelpulseWorker(worker_env, env.workdir / f"{env.ns}-{name}.log")


def _wait_metrics(worker: FunnelpulseWorker) -> None:
    deadline = time.monotonic() + STARTUP_ALLOWANCE
    while time.monotonic() < deadline and worker.alive():
        try:
            worker.counts()
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"worker did not serve /metrics (see {worker.log_path.name})")


# -- latency -----------------------------------------------------------------------------------
def run_latency(
    env: Env, rates: list[tuple[str, float]], seconds: float, *, warmup: float = 5.0,
    slots: int = 8, tick: float = 0.05, patience: float = 60.0,
) -> list[LatencyResult]:  # fmt: skip
    """One live worker; a warm-up until events show in Redis, then each rate in turn."""
    results = [LatencyResult(name, rate) for name, rate in rates]
    worker_env, names, data_dir = _prepare(env, "lat")
    worker = _worker(env, "lat", worker_env)
    client = redis.Redis.from_url(env.redis_url, socket_timeout=10)
    stream = f"{env.ns}:lat:kpi-stream"
    try:
        _wait_metrics(worker)
        warm = asyncio.run(produce_at_rate(env.bootstrap, names.inputs, 200, warmup, "w",
                                           slots, tick))  # fmt: skip
        seen, _ = wait_visible(client, stream, warm, "w", STARTUP_ALLOWANCE)
        if phase_stats(warm, seen).invisible:
            raise RuntimeError("warm-up events never became visible in Redis")
        for i, result in enumerate(results):
            if result.target_rate <= 0:
                result.error = "no rate"
                continue
            log.info("latency: %s (%.0f ev/s) for %.0f s ...", result.name, result.target_rate,
                     seconds)  # fmt: skip
            cpu = proc_cpu(worker.pid)
            produced = asyncio.run(produce_at_rate(env.bootstrap, names.inputs,
                                                   result.target_rate, seconds, str(i), slots,
                                                   tick, seed=i))  # fmt: skip
            cpu_after = proc_cpu(worker.pid)
            if cpu is not None and cpu_after is not None:
                result.worker_cpu = (cpu_after - cpu) / max(produced.ended - produced.started, 1e-9)
            seen, result.waited = wait_visible(client, stream, produced, str(i), patience)
            summarise(result, produced, phase_stats(produced, seen))
            log.info("  -> %s", result.to_json())
            if not worker.alive():
                raise RuntimeError(f"worker exited (see {worker.log_path.name})")
    except Exception as exc:
        log.warning("latency phase failed: %r", exc)
        for result in results:
            if result.p99 is None and result.error is None:
                result.error = str(exc)
    finally:
        worker.stop()
        client.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


# -- memory ------------------------------------------------------------------------------------
# Redis may trail the counters by minutes after 100,000 new campaigns (_memory_exact)
CONVERGE_LIMIT = 1200.0
MEMORY_CHECK_WINDOW = "7d"  # holds the whole preloaded 24 h for days (_memory_exact)
# the product's default windows and the one the check reads: one more sum per scope and
# tick (the hourly panes it reads are kept whatever the windows), so memory is not flattered
MEMORY_WINDOWS = "1m,5m,15m,1h,24h," + MEMORY_CHECK_WINDOW


def run_memory(
    env: Env, spec: MemorySpec, settle: float, budget: float, store: str = "memory"
) -> MemoryResult:
    """Preloads every campaign's 24 h, drains it with a fresh worker (tables in ``store``),
    then lets it idle ``settle`` seconds; RSS from /proc, table sizes from
    ``funnelpulse_state_keys``.

    The data is written campaign by campaign, so a drain stopped by ``budget`` has loaded
    the whole 24 h of the first campaigns: the result then says how many, and projects
    the peak RSS linearly to all of them (labelled as a projection, never as a measure).
    """
    result = MemoryResult(spec.campaigns, store)
    name = f"mem-{store}-{spec.campaigns}"
    worker_env, names, data_dir = _prepare(
        env, name, FUNNELPULSE_STORE=store, FUNNELPULSE_WINDOWS=MEMORY_WINDOWS
    )
    started = time.monotonic()
    truth = asyncio.run(preload_memory(env.bootstrap, names.inputs, spec))
    result.preload_s = time.monotonic() - started
    result.events, result.messages = truth.events, truth.messages["batch"]
    result.events_per_campaign = truth.events // max(spec.campaigns, 1)
    log.info("memory: preloaded %d events in %.1f s", truth.events, result.preload_s)
    worker = _worker(env, name, worker_env)
    try:
        _wait_metrics(worker)
        result.baseline_rss_mb = proc_rss_mb(worker.pid)
        rss_max, done, now = 0.0, 0.0, time.time()
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + STARTUP_ALLOWANCE + budget
        watch = LagWatch(env.bootstrap, f"{env.ns}-{name}", list(names.inputs.values()))
        with watch:
            while done < result.messages and time.monotonic() < deadline:
                time.sleep(0.5)
                if not worker.alive():
                    raise RuntimeError(f"worker exited (see {worker.log_path.name})")
                rss_max = max(rss_max, proc_rss_mb(worker.pid) or 0.0)
                done, now = worker.processed(), time.time()
                if done and first is None:
                    first = (now, done)
                    deadline = time.monotonic() + budget
            result.partial = done < result.messages
            if not result.partial:  # the merge stage may still be behind the intake
                watch.wait_zero(max(COMMIT_GRACE, deadline - time.monotonic()))
        result.campaigns_loaded = round(spec.campaigns * done / max(result.messages, 1))
        end = now if result.partial or watch.zero_at is None else watch.zero_at
        result.end_by = (
            END_BUDGET if result.partial else END_LAG if end is watch.zero_at else END_SELF
        )
        if first is not None and end > first[0]:
            per_message = result.events / max(result.messages, 1)
            result.drain_rate = (done - first[1]) * per_message / (end - first[0])
        if result.partial:
            result.note = (
                f"time budget: {done:,.0f} of {result.messages:,} messages "
                f"(~{result.campaigns_loaded:,} campaigns) in {budget:.0f} s"
            )
        else:
            _memory_exact(result, f"{env.ns}:{name}:", env, worker, truth)
            settled_from = time.monotonic()
            while time.monotonic() < settled_from + settle:
                time.sleep(1.0)
                rss_max = max(rss_max, proc_rss_mb(worker.pid) or 0.0)
            result.settle_s = time.monotonic() - settled_from
            result.steady_rss_mb = proc_rss_mb(worker.pid)
            result.disk_mb = tree_bytes(data_dir) / 1e6
            _memtrace_dump(name)
        result.peak_rss_mb = proc_peak_rss_mb(worker.pid)
        result.drain_rss_max_mb = rss_max
        result.state_keys = parse_gauge(
            worker.metrics(("funnelpulse_state_keys",)), "funnelpulse_state_keys", "table"
        )
        result.projected_peak_mb = projected_peak(result)
    except Exception as exc:
        log.warning("memory phase failed: %r", exc)
        result.error = str(exc)
    finally:
        worker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (their sizes, as ``du --apparent-size``); a file
    RocksDB deletes meanwhile (a compaction's inputs) counts nothing."""
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total


def _memtrace_dump(name: str, patience: float = 180.0) -> None:
    """A diagnostic run (``BENCH_WORKER_MEMTRACE``, bench/memtrace.py): the settled
    worker's heap composition, appended to that file under ``name``."""
    path = os.environ.get("BENCH_WORKER_MEMTRACE")
    if not path:
        return
    done = Path(path + ".done")
    done.unlink(missing_ok=True)
    with open(path, "a") as out:
        out.write(f"### {name}\n")
    Path(path + ".now").touch()
    deadline = time.monotonic() + patience
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(1.0)


def _memory_exact(
    result: MemoryResult, prefix: str, env: Env, worker: FunnelpulseWorker, truth: GroundTruth
) -> None:
    """Counters by type and every scope's 7 d Redis hash against the recount.

    Redis gets ``EXACT_PATIENCE`` s, and longer (up to ``CONVERGE_LIMIT``) while the
    worker still has scopes waiting to be published (``funnelpulse_publish_pending_scopes``)
    or the number of scopes that differ is still falling: a tick publishes at most 2,000
    scopes, so 100,000 new campaigns reach Redis over minutes, and a fixed patience cannot
    tell that backlog from a lost count. The note says how long Redis took, or what was
    pending when the check gave up.

    The trap: the preload fills the *last* 24 h, and the drain and the check take minutes,
    so the 24 h window (exact to the minute) has already slid past the oldest events when
    it is read, and an exact pipeline reads as short against a fixed recount. Every event
    is still inside ``7d``, whose sum is the same recount whatever the clock."""
    by_type, other = worker.counts()
    problems = []
    if dict(by_type) != dict(truth.by_type) or other:
        problems.append(f"counted {dict(by_type)} (+{other:.0f} duplicate/rejected)")
    started = time.monotonic()
    fewest, improved = None, started
    while True:
        bad = check_redis(env.redis_url, prefix, truth, MEMORY_CHECK_WINDOW, patience=0)
        now = time.monotonic()
        if not bad:
            break
        if fewest is None or len(bad) < fewest:
            fewest, improved = len(bad), now
        pending = _pending_scopes(worker)
        converging = sum(pending.values()) > 0 or now - improved < EXACT_PATIENCE
        if now - started > CONVERGE_LIMIT or (now - started > EXACT_PATIENCE and not converging):
            break
        time.sleep(2.0)
    waited = time.monotonic() - started
    if bad:
        pending_text = ", ".join(f"{k} {v:.0f}" for k, v in sorted(pending.items()))
        problems.append(f"{len(bad)} Redis scopes differ after {waited:.0f} s (publisher "
                        f"pending: {pending_text}), e.g. {'; '.join(bad[:3])}")  # fmt: skip
    result.exact = "NO" if problems else "yes"
    result.note = "; ".join(problems) or f"Redis matched the recount {waited:.0f} s after the drain"


def _pending_scopes(worker: FunnelpulseWorker) -> dict[str, float]:
    """The publisher's queues by name (empty when the worker does not say: an older one)."""
    text = worker.metrics(("funnelpulse_publish_pending_scopes",))
    return parse_gauge(text, "funnelpulse_publish_pending_scopes", "queue")


def projected_peak(result: MemoryResult) -> float | None:
    """Peak RSS scaled linearly from the campaigns loaded to all (only when partial)."""
    loaded, base, peak = result.campaigns_loaded, result.baseline_rss_mb, result.peak_rss_mb
    if not result.partial or not loaded or base is None or peak is None:
        return None
    return base + (peak - base) * result.campaigns / loaded
