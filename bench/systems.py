"""Systems under test: how to start each, and one drain measured end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.generator import GroundTruth, topic_names
from bench.kafka_admin import end_offsets_sum, list_topics
from bench.measure import ROOT, proc_cpu, proc_peak_rss_mb

SYSTEMS = ("raw", "quix", "faust-naive", "faust-bare", "funnelpulse")
STARTUP_ALLOWANCE = 90.0  # seconds for a child to join its group and see a first record


@dataclass
class Run:
    """Everything one drain needs; ``ns`` prefixes every name the run creates."""

    system: str
    form: str
    rep: int
    ns: str
    bootstrap: str
    truth: GroundTruth
    budget_s: float
    workdir: Path
    broker_pid: int | None
    quix_python: Path | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"

    @property
    def tag(self) -> str:
        return f"{self.ns}-{self.system}-{self.form}-r{self.rep}"


@dataclass
class Result:
    system: str
    form: str
    rep: int
    events: int = 0  # events drained in the measured interval
    seconds: float = 0.0
    cpu_sut: float | None = None
    cpu_broker: float | None = None
    peak_rss_mb: float | None = None
    changelog_msgs: int | None = None
    changelog_events: int = 0  # events processed when the changelog was read
    exact: str = "n/a"
    partial: bool = False
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        if self.error or self.seconds <= 0:
            return None
        return self.events / self.seconds

    @property
    def changelog_per_event(self) -> float | None:
        if self.changelog_msgs is None or not self.changelog_events:
            return None
        return self.changelog_msgs / self.changelog_events

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out["rate"] = self.rate
        return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _changelogs(run: Run, prefix: str) -> list[str]:
    if run.system == "quix":  # changelog__<group>--<topic>--<store>
        return asyncio.run(list_topics(run.bootstrap, lambda t: t.startswith("changelog__")
                                       and run.tag in t))  # fmt: skip
    return asyncio.run(
        list_topics(run.bootstrap, lambda t: t.startswith(prefix) and t.endswith("-changelog"))
    )


def _changelog_count(run: Run) -> int:
    return asyncio.run(end_offsets_sum(run.bootstrap, _changelogs(run, f"{run.tag}-")))


def run_child(run: Run) -> Result:
    """raw, quix, faust-naive, faust-bare: a child that reports through ``bench.child``."""
    result = Result(run.system, run.form, run.rep)
    result_file = run.workdir / f"{run.tag}.jsonl"
    state_dir = Path(tempfile.mkdtemp(prefix=f"{run.tag}-", dir=run.workdir))
    config = {
        "bootstrap": run.bootstrap,
        "topics": {k.value: v for k, v in topic_names(f"{run.ns}.", run.form).items()},
        "group": run.tag,
        "app_id": run.tag,
        "form": run.form,
        "partitions": 4,
        "expected_messages": run.truth.messages[run.form],
        "expected_events": run.truth.events,
        "budget_s": run.budget_s,
        "result_file": str(result_file),
        "state_dir": str(state_dir),
        "variant": run.system.removeprefix("faust-"),
    }
    python, module = (
        sys.executable,
        {"raw": "bench.sut_raw", "quix": "bench.sut_quix"}.get(run.system, "bench.sut_faust"),
    )
    if run.system == "quix":
        if run.quix_python is None:
            result.error = "quixstreams environment not available"
            return result
        python = str(run.quix_python)
    env = {**os.environ, "BENCH_CONFIG": json.dumps(config), "PYTHONPATH": str(ROOT)}
    log = (run.workdir / f"{run.tag}.log").open("wb")
    proc = subprocess.Popen([python, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=log)
    broker_first = broker_done = None
    first = done = None
    deadline = time.monotonic() + STARTUP_ALLOWANCE
    try:
        while done is None:
            time.sleep(0.02)
            lines = _read_lines(result_file)
            if first is None and lines:
                first, broker_first = lines[0], proc_cpu(run.broker_pid)
                deadline = time.monotonic() + run.budget_s + 60
            done = next((line for line in lines if line["kind"] == "done"), None)
            if done is not None:
                broker_done = proc_cpu(run.broker_pid)
                result.peak_rss_mb = proc_peak_rss_mb(proc.pid)
            elif proc.poll() is not None:
                result.error = f"exited with {proc.returncode} before finishing (see {log.name})"
                return result
            elif time.monotonic() > deadline:
                result.error = "no first record in time" if first is None else "did not finish"
                return result
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    assert first is not None and done is not None
    events = done["events"]
    if events < 0:  # counts messages only (bare Faust): scale to the events they hold
        events = round(run.truth.events * done["messages"] / run.truth.messages[run.form])
    result.events, result.partial = events, bool(done["partial"])
    result.seconds = done["t"] - first["t"]
    result.cpu_sut = done["cpu"] - first["cpu"]
    if broker_first is not None and broker_done is not None:
        result.cpu_broker = broker_done - broker_first
    if result.peak_rss_mb is None:
        result.peak_rss_mb = done.get("maxrss_mb")
    if "by_type" in done:
        result.exact = "yes" if done["by_type"] == dict(run.truth.by_type) else "NO"
    if result.partial:
        result.note = (f"time budget: {events:,} of {run.truth.events:,} events "
                       f"in {result.seconds:.0f} s")  # fmt: skip
    if run.system in ("faust-naive", "faust-bare", "quix"):
        result.changelog_msgs = _changelog_count(run)
        result.changelog_events = events
    return result


SCRAPES: list[tuple[float, int]] = []  # (seconds, bytes) of every /metrics scrape


def _scrape(url: str) -> tuple[Counter[str], float]:
    """marketing_events_total by type, and duplicates + rejected."""
    started = time.monotonic()
    text = httpx.get(f"{url}/metrics", timeout=5).text
    SCRAPES.append((time.monotonic() - started, len(text)))
    by_type: Counter[str] = Counter()
    other = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "marketing_events_total":
                by_type[s.labels["type"]] += int(s.value)
            elif s.name in ("marketing_events_duplicate_total", "marketing_events_rejected_total"):
                other += s.value
    return by_type, other


def run_funnelpulse(run: Run, web_port: int) -> Result:
    """The worker itself, Redis and Prometheus on; done when every event is counted."""
    from funnelpulse.settings import Settings
    from streams.topics import ensure_topics

    result = Result(run.system, run.form, run.rep)
    data_dir = Path(tempfile.mkdtemp(prefix=f"{run.tag}-", dir=run.workdir))
    env = {**os.environ, "FUNNELPULSE_APP_ID": run.tag,
           "FUNNELPULSE_TOPIC_PREFIX": f"{run.ns}.{run.form}.",
           "FUNNELPULSE_REDIS_PREFIX": f"{run.ns}:{run.form}-r{run.rep}:",
           "FUNNELPULSE_PARTITIONS": "4", "FUNNELPULSE_WEB_PORT": str(web_port),
           "FUNNELPULSE_LOG_LEVEL": "warn", "FUNNELPULSE_DATA_DIR": str(data_dir),
           "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap, "REDIS_URL": run.redis_url}  # fmt: skip
    asyncio.run(ensure_topics(Settings.from_env(env)))
    log = (run.workdir / f"{run.tag}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "funnelpulse.cli", "worker"], cwd=ROOT,
                            env=env, stdout=log, stderr=log)  # fmt: skip
    url, total = f"http://127.0.0.1:{web_port}", run.truth.events
    first: tuple[float, int, float | None, float | None] | None = None
    by_type: Counter[str] = Counter()
    deadline = time.monotonic() + STARTUP_ALLOWANCE
    try:
        while True:
            time.sleep(0.25)
            if proc.poll() is not None:
                result.error = f"worker exited with {proc.returncode} (see {log.name})"
                return result
            try:
                by_type, other = _scrape(url)
            except httpx.HTTPError:
                continue
            n, now = sum(by_type.values()) + int(other), time.time()
            if n > 0 and first is None:
                first = (now, n, proc_cpu(proc.pid), proc_cpu(run.broker_pid))
                deadline = time.monotonic() + run.budget_s + 30
            if n >= total or time.monotonic() > deadline:
                cpu_sut, cpu_broker = proc_cpu(proc.pid), proc_cpu(run.broker_pid)
                result.peak_rss_mb = proc_peak_rss_mb(proc.pid)
                break
        if first is None:
            result.error = "nothing counted in time"
            return result
        result.events, result.seconds = n - first[1], now - first[0]
        result.partial = n < total
        if first[2] is not None and cpu_sut is not None:
            result.cpu_sut = cpu_sut - first[2]
        if first[3] is not None and cpu_broker is not None:
            result.cpu_broker = cpu_broker - first[3]
        result.exact = "yes" if dict(by_type) == dict(run.truth.by_type) and not other else "NO"
        result.extra["by_type"] = dict(by_type)
        if SCRAPES:
            secs, size = max(SCRAPES[-5:])
            result.extra["last_scrape"] = f"{secs * 1000:.0f} ms, {size / 1e6:.1f} MB"
            result.note = f"slowest of last 5 /metrics scrapes: {result.extra['last_scrape']}"
        SCRAPES.clear()
        if result.exact == "NO":
            result.note += f"; counted {dict(by_type)} (+{other:.0f} duplicate/rejected)"
        if result.partial:
            result.note += f"; time budget: {n:,} of {total:,} events counted"
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    result.changelog_msgs = _changelog_count(run)
    result.changelog_events = n
    return result


def run_system(run: Run, web_port: int = 6097) -> Result:
    if run.system == "funnelpulse":
        return run_funnelpulse(run, web_port)
    return run_child(run)
