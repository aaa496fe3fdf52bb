"""Systems under test: how to start each, and one drain measured end to end.

A drain runs from the system's first record to the moment the admin API reads its consumer
group's lag as 0 (``bench.lag``); when that never comes (a time budget stopped the
system first, or no commit arrived within ``COMMIT_GRACE``) the drain ends at the last
record the system reports itself, and ``Result.end_by`` says which end was used.
"""

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.generator import GroundTruth, topic_names
from bench.kafka_admin import end_offsets_sum, list_topics
from bench.lag import LagWatch
from bench.measure import ROOT, proc_cpu, proc_peak_rss_mb
from bench.spy import ProcessProfile

SYSTEMS = ("raw", "quix", "quix-campaign", "faust-naive", "faust-bare", "funnelpulse",
           "funnelpulse-base", "funnelpulse-memory", "funnelpulse-rocksdb")  # fmt: skip
# the product, it at --base REV, and it with each table store pinned (FUNNELPULSE_STORE)
FUNNELPULSE = ("funnelpulse", "funnelpulse-base", "funnelpulse-memory", "funnelpulse-rocksdb")
STORES = ("memory", "rocksdb")
PINNED_STORE = {"funnelpulse-memory": "memory", "funnelpulse-rocksdb": "rocksdb"}
STARTUP_ALLOWANCE = 90.0  # seconds for a child to join its group and see a first record
COMMIT_GRACE = 20.0  # seconds after the last record for the group's lag to read 0
EXACT_PATIENCE = 60.0  # seconds for funnelpulse's Redis hashes to show every count
HTTP_TIMEOUT = 60.0  # seconds a /metrics or /healthz poll may wait for the worker
STALL_S = 60.0  # a funnelpulse drain that processes nothing this long has stalled
END_LAG = "lag 0 (admin API)"
END_SELF = "last record (self-reported)"
END_BUDGET = "time budget"
MONEY_FIELDS = ("revenue", "spend")
COUNTER_NAMES = ("marketing_events_total", "marketing_events_duplicate_total",
                 "marketing_events_rejected_total")  # fmt: skip


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
    span_s: float = 3600.0
    workers: int = 1  # funnelpulse worker processes sharing the group
    profile_dir: Path | None = None  # py-spy each drain into this directory (bench/spy.py)
    profile_s: float = 30.0
    base_dir: Path | None = None  # funnelpulse-base: a checkout of the --base commit

    @property
    def tag(self) -> str:
        suffix = f"-x{self.workers}" if self.workers > 1 else ""
        return f"{self.ns}-{self.system}-{self.form}-r{self.rep}{suffix}"

    @property
    def inputs(self) -> list[str]:
        return list(topic_names(f"{self.ns}.", self.form).values())


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
    end_by: str = ""
    workers: int = 1
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
        out = dict(self.__dict__)
        out["rate"] = self.rate
        return out

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM (graceful: commit and leave the group), SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
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
    if run.system.startswith("quix"):  # changelog__<group>--<topic>--<store>
        return asyncio.run(list_topics(run.bootstrap, lambda t: t.startswith("changelog__")
                                       and run.tag in t))  # fmt: skip
    return asyncio.run(
        list_topics(run.bootstrap, lambda t: t.startswith(prefix) and t.endswith("-changelog"))
    )


def _changelog_count(run: Run) -> int:
    return asyncio.run(end_offsets_sum(run.bootstrap, _changelogs(run, f"{run.tag}-")))


def _end(result: Result, watch: LagWatch, fallback: float, start: float) -> None:
    """The drain's end: lag 0 if the admin API saw it, else the fallback time."""
    if not result.partial and watch.zero_at is not None:
        result.seconds, result.end_by = watch.zero_at - start, END_LAG
    else:
        result.seconds = fallback - start
        result.end_by = END_BUDGET if result.partial else END_SELF
        if not result.partial:
            why = watch.error or f"lag still {watch.lag} after {COMMIT_GRACE:.0f} s"
            result.add_note(f"end: last record ({why})")
    result.extra["lag_polls"] = watch.polls
    result.extra["self_reported_seconds"] = fallback - start
    result.extra["lag_by_topic"] = {t: n for t, n in watch.by_topic.items() if n}


def run_child(run: Run) -> Result:
    """raw, quix*, faust-*: a child that reports through ``bench.child``."""
    result = Result(run.system, run.form, run.rep)
    result_file = run.workdir / f"{run.tag}.jsonl"
    state_dir = Path(tempfile.mkdtemp(prefix=f"{run.tag}-", dir=run.workdir))
    variants = {"quix": "scopes", "quix-campaign": "campaign"}
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
        "span_s": run.span_s,
        "variant": variants.get(run.system, run.system.removeprefix("faust-")),
    }
    python = sys.executable
    module = "bench.sut_raw" if run.system == "raw" else "bench.sut_faust"
    if run.system.startswith("quix"):
        if run.quix_python is None:
            result.error = "quixstreams environment not available"
            return result
        python, module = str(run.quix_python), "bench.sut_quix"
    env = {**os.environ, "BENCH_CONFIG": json.dumps(config), "PYTHONPATH": str(ROOT)}
    log = (run.workdir / f"{run.tag}.log").open("wb")
    watch = LagWatch(run.bootstrap, run.tag, run.inputs)
    proc = subprocess.Popen([python, "-m", module], cwd=state_dir, env=env, stdout=log,
                            stderr=log)  # fmt: skip
    broker_first = broker_done = None
    first = done = None
    deadline = time.monotonic() + STARTUP_ALLOWANCE
    profile = ProcessProfile(run.profile_dir, run.tag, min(run.profile_s, run.budget_s))
    try:
        with watch:
            while done is None:
                time.sleep(0.02)
                lines = _read_lines(result_file)
                if first is None and lines:
                    first, broker_first = lines[0], proc_cpu(run.broker_pid)
                    profile.start(proc.pid)
                    deadline = time.monotonic() + run.budget_s + 60
                done = next((line for line in lines if line["kind"] == "done"), None)
                if done is not None:
                    broker_done = proc_cpu(run.broker_pid)
                    result.peak_rss_mb = proc_peak_rss_mb(proc.pid)
                elif proc.poll() is not None:
                    result.error = (
                        f"exited with {proc.returncode} before finishing (see {log.name})"
                    )
                    return result
                elif time.monotonic() > deadline:
                    result.error = "no first record in time" if first is None else "did not finish"
                    return result
            if not done["partial"]:
                watch.wait_zero(COMMIT_GRACE)
    finally:
        result.extra["profile"] = profile.finish()
        stop_process(proc, 10.0 if done is None or done["partial"] else 30.0)
        log.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    assert first is not None and done is not None
    events = done["events"]
    if events < 0:  # counts messages only (bare Faust): scale to the events they hold
        events = round(run.truth.events * done["messages"] / run.truth.messages[run.form])
    result.events, result.partial = events, bool(done["partial"])
    _end(result, watch, done["t"], first["t"])
    result.cpu_sut = done["cpu"] - first["cpu"]
    if broker_first is not None and broker_done is not None:
        result.cpu_broker = broker_done - broker_first
    if result.peak_rss_mb is None:
        result.peak_rss_mb = done.get("maxrss_mb")
    if "by_type" in done:
        result.exact = "yes" if done["by_type"] == dict(run.truth.by_type) else "NO"
    if result.partial:
        result.add_note(f"time budget: {events:,} of {run.truth.events:,} events "
                        f"in {result.seconds:.0f} s")  # fmt: skip
    if run.system in ("faust-naive", "faust-bare") or run.system.startswith("quix"):
        result.changelog_msgs = _changelog_count(run)
        result.changelog_events = events
    return result


# -- funnelpulse --------------------------------------------------------------------------
def funnelpulse_env(
    *, app_id: str, topic_prefix: str, redis_prefix: str, web_port: int, data_dir: Path,
    bootstrap: str, redis_url: str, **extra: str,
) -> dict[str, str]:  # fmt: skip
    """The worker's environment: product defaults except names, ports and the data dir;
    ``BENCH_WORKER_ENV`` (a JSON object) adds variables for a diagnostic run, an allocator
    preloaded for example."""
    added = json.loads(os.environ.get("BENCH_WORKER_ENV", "{}"))
    return {**os.environ, **added, "FUNNELPULSE_APP_ID": app_id,
            "FUNNELPULSE_TOPIC_PREFIX": topic_prefix, "FUNNELPULSE_REDIS_PREFIX": redis_prefix,
            "FUNNELPULSE_PARTITIONS": "4",
            "FUNNELPULSE_WEB_PORT": str(web_port),
            "FUNNELPULSE_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "warn"),
            "FUNNELPULSE_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "REDIS_URL": redis_url, **extra}  # fmt: skip


class FunnelpulseWorker:
    """One ``funnelpulse worker`` process and its /metrics."""

    def __init__(self, env: dict[str, str], log_path: Path, code: Path | None = None) -> None:
        """``code``: another checkout to run instead of this one (same venv).

        The trap: the venv's editable install points at the checkout it was made in, so
        a worker started without a path entry ran *that* checkout's current files, not
        the benchmark's own (a run from a worktree measured whatever the main checkout
        held at each restart). The worker's modules come first from ``code``, or else
        from the checkout this benchmark runs from."""
        self.url = f"http://127.0.0.1:{env['FUNNELPULSE_WEB_PORT']}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        module = "funnelpulse.cli"
        if os.environ.get("BENCH_WORKER_MEMTRACE"):  # a diagnostic run (bench/memtrace.py)
            module = "bench.memtrace"
            env = {**env, "BENCH_WORKER_MEMTRACE": os.environ["BENCH_WORKER_MEMTRACE"]}
        # its modules before the editable install's (a path entry wins)
        env = {**env, "PYTHONPATH": str(ROOT if code is None else code)}
        self.proc = subprocess.Popen([sys.executable, "-m", module, "worker"],
                                     cwd=env["FUNNELPULSE_DATA_DIR"], env=env, stdout=self._log,
                                     stderr=self._log)  # fmt: skip
        # a worker's loop may block for tens of seconds (a publish tick over a slow store):
        # a poll waits for it rather than failing the run
        self.client = httpx.Client(timeout=HTTP_TIMEOUT)
        self.scrapes: list[tuple[float, int]] = []  # (seconds, bytes) of each scrape

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self, names: tuple[str, ...] = ()) -> str:
        """/metrics text; ``names`` restricts the families (cheap polling)."""
        params: list[tuple[str, str | int | float | bool | None]] = [("name[]", n) for n in names]
        started = time.monotonic()
        text = self.client.get(f"{self.url}/metrics", params=params).text
        if not names:
            self.scrapes.append((time.monotonic() - started, len(text)))
        return text

    def counts(self) -> tuple[Counter[str], float]:
        """marketing_events_total by type, and duplicates + rejected."""
        return parse_counts(self.metrics(COUNTER_NAMES))

    def processed(self, stage: str = "intake") -> float:
        """Kafka messages a stage has processed: three samples, cheap to poll often
        (``marketing_events_total`` has a series per type, channel and campaign)."""
        text = self.metrics(("funnelpulse_messages_processed_total",))
        return parse_gauge(text, "funnelpulse_messages_processed_total", "stage").get(stage, 0.0)

    def health(self) -> dict[str, Any]:
        """/healthz as JSON (it answers 503 with the same body when stalled)."""
        body: dict[str, Any] = self.client.get(f"{self.url}/healthz").json()
        return body

    def stop(self, grace: float = 30.0) -> None:
        try:
            stop_process(self.proc, grace)
        finally:
            self.client.close()
            self._log.close()

    def kill(self) -> None:
        """``kill -9``: no commit, no flush, no leaving the group."""
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        finally:
            self.client.close()
            self._log.close()


def parse_counts(text: str) -> tuple[Counter[str], float]:
    by_type: Counter[str] = Counter()
    other = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "marketing_events_total":
                by_type[s.labels["type"]] += int(s.value)
            elif s.name in ("marketing_events_duplicate_total", "marketing_events_rejected_total"):
                other += s.value
    return by_type, other


def parse_gauge(text: str, name: str, label: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def redis_mismatches(
    hashes: Mapping[str, Mapping[str, str]], truth: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Scopes whose published counts differ from the recount (money: to the micro-unit),
    each as ``scope field=got (want n), ...``."""
    bad = []
    for scope, want in sorted(truth.items()):
        got = hashes.get(scope) or {}
        wrong = []
        for name, value in sorted(want.items()):
            expected = value / 1e6 if name in MONEY_FIELDS else float(value)
            if abs(float(got.get(name, 0)) - expected) >= 5e-7:
                wrong.append(f"{name}={got.get(name, 'absent')} (want {expected:g})")
        if wrong:
            bad.append(f"{scope} {', '.join(wrong)}")
    return bad


def check_redis(
    redis_url: str, prefix: str, truth: GroundTruth, window: str = "24h",
    patience: float = EXACT_PATIENCE,
) -> list[str]:  # fmt: skip
    """Waits until every scope's ``<prefix>kpi:<window>:<scope>`` hash equals the recount;
    returns the mismatches left when patience runs out (empty: exact)."""
    want = truth.scopes()
    scopes = sorted(want)
    client = redis.Redis.from_url(redis_url, socket_timeout=10, decode_responses=True)
    deadline = time.monotonic() + patience
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            for scope in scopes:
                pipe.hgetall(f"{prefix}kpi:{window}:{scope}")
            bad = redis_mismatches(dict(zip(scopes, pipe.execute(), strict=True)), want)
            if not bad or time.monotonic() > deadline:
                return bad
            time.sleep(1.0)
    finally:
        client.close()


def run_funnelpulse(run: Run, web_port: int) -> Result:
    """``run.workers`` worker processes (one app id and consumer group), Redis and
    Prometheus on. First record: the first poll (every 250 ms) at which the intake has
    processed messages; done when it has processed every input message and the group's
    lag is 0; gated on exact counts. Events are counted in input messages (their events
    known from the generator), so the cheap ``funnelpulse_messages_processed_total`` is
    polled during the drain, and the per-campaign counters only once at the end."""
    from funnelpulse.settings import Settings
    from streams.topics import ensure_topics

    result = Result(run.system, run.form, run.rep, workers=run.workers)
    # per system too: a run must never pass its gate on the hashes an earlier one wrote
    redis_prefix = f"{run.ns}:{run.system}-{run.form}-r{run.rep}-x{run.workers}:"
    workers: list[FunnelpulseWorker] = []
    watch = LagWatch(run.bootstrap, run.tag, run.inputs)
    total = run.truth.events
    first: tuple[float, float, float, float | None] | None = None
    messages, done, now = run.truth.messages[run.form], 0.0, time.time()
    progress = (0.0, time.monotonic())  # (messages processed, when that number last grew)
    profile = ProcessProfile(run.profile_dir, run.tag, min(run.profile_s, run.budget_s))
    try:
        for i in range(run.workers):
            data_dir = Path(tempfile.mkdtemp(prefix=f"{run.tag}-w{i}-", dir=run.workdir))
            pinned = PINNED_STORE.get(run.system)
            store = {"FUNNELPULSE_STORE": pinned} if pinned else {}
            env = funnelpulse_env(app_id=run.tag, topic_prefix=f"{run.ns}.{run.form}.",
                                  redis_prefix=redis_prefix, web_port=web_port + i,
                                  data_dir=data_dir, bootstrap=run.bootstrap,
                                  redis_url=run.redis_url, **store)  # fmt: skip
            if i == 0:
                asyncio.run(ensure_topics(Settings.from_env(env)))
            log_path = run.workdir / f"{run.tag}-w{i}.log"
            workers.append(FunnelpulseWorker(env, log_path, run.base_dir))
        deadline = time.monotonic() + STARTUP_ALLOWANCE
        with watch:
            while True:
                time.sleep(0.25)
                dead = [w for w in workers if not w.alive()]
                if dead:
                    result.error = (f"worker exited with {dead[0].proc.returncode} "
                                    f"(see {dead[0].log_path.name})")  # fmt: skip
                    return result
                try:
                    done, now = sum(w.processed() for w in workers), time.time()
                except httpx.HTTPError:
                    continue
                if done > 0 and first is None:
                    cpu = sum(proc_cpu(w.pid) or 0.0 for w in workers)
                    first = (now, done, cpu, proc_cpu(run.broker_pid))
                    deadline = time.monotonic() + run.budget_s
                    profile.start(workers[0].pid)
                if done > progress[0]:
                    progress = (done, time.monotonic())
                elif first is not None and time.monotonic() - progress[1] > STALL_S:
                    result.error = (f"stalled: no input message processed for {STALL_S:.0f} s "
                                    f"with the group's lag at {watch.lag} (see "
                                    f"{', '.join(w.log_path.name for w in workers)})")  # fmt: skip
                    return result
                # several workers may process a message twice after a rebalance, so their
                # sum says nothing: they are done at lag 0
                finished = done >= messages if run.workers == 1 else watch.zero_at is not None
                if finished or time.monotonic() > deadline:
                    break
            if done >= messages:  # routed events are counted after their input message
                processed_at = _all_counted(workers, total, deadline) or now
            else:
                processed_at = now
            cpu_sut = sum(proc_cpu(w.pid) or 0.0 for w in workers)
            cpu_broker = proc_cpu(run.broker_pid)
            rss = [proc_peak_rss_mb(w.pid) for w in workers]
            result.extra["profile"] = profile.finish()
            if first is None:
                result.error = "nothing processed in time"
                return result
            result.partial = done < messages or (run.workers > 1 and watch.zero_at is None)
            if not result.partial:
                watch.wait_zero(COMMIT_GRACE)
        by_type, other = _final_counts(workers, total, 0 if result.partial else EXACT_PATIENCE)
        n = sum(by_type.values()) + int(other)
        # events in the input messages processed before the first poll that saw any
        skipped = round(total * first[1] / messages)
        drained = round(total * min(done, messages) / messages) if result.partial else total
        result.events = drained - skipped
        _end(result, watch, processed_at, first[0])
        result.cpu_sut = cpu_sut - first[2]
        if first[3] is not None and cpu_broker is not None:
            result.cpu_broker = cpu_broker - first[3]
        result.peak_rss_mb = max((r for r in rss if r is not None), default=None)
        result.extra["peak_rss_per_worker"] = rss
        result.extra["by_type"] = dict(by_type)
        _gate(result, run, redis_prefix, by_type, other, workers)
        if run.workers == 1:
            full = workers[0].metrics()  # one full scrape: what Prometheus would pay
            secs, size = workers[0].scrapes[-1]
            result.add_note(f"full /metrics scrape: {secs * 1000:.0f} ms, {size / 1e6:.1f} MB")
            result.extra["state_keys"] = parse_gauge(full, "funnelpulse_state_keys", "table")
        if result.partial:
            result.add_note(f"time budget: {n:,} of {total:,} events counted")
    finally:
        profile.finish()  # when the drain failed: py-spy must not outlive it
        for w in workers:
            w.stop()
        for path in run.workdir.glob(f"{run.tag}-w*-*"):
            shutil.rmtree(path, ignore_errors=True)
    result.changelog_msgs = _changelog_count(run)
    result.changelog_events = n
    return result


def _all_counted(workers: list[FunnelpulseWorker], total: int, deadline: float) -> float | None:
    """When the counters first showed every event (None: not before the deadline). Events
    that went through the route topic are counted a hop after their input message."""
    while time.monotonic() < deadline:
        try:
            scraped = [w.counts() for w in workers]
        except httpx.HTTPError:
            continue
        if sum(sum(c.values()) + o for c, o in scraped) >= total:
            return time.time()
        time.sleep(0.1)
    return None


def _final_counts(
    workers: list[FunnelpulseWorker], total: int, patience: float
) -> tuple[Counter[str], float]:
    """Counters summed over the workers, once they reach ``total`` (or patience ends)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            scraped = [w.counts() for w in workers]
        except httpx.HTTPError:
            if time.monotonic() >= deadline:
                raise
            continue
        by_type = sum((c for c, _ in scraped), Counter[str]())
        other = sum(o for _, o in scraped)
        if sum(by_type.values()) + other >= total or time.monotonic() >= deadline:
            return by_type, other
        time.sleep(0.5)


def _http_kpis(workers: list[FunnelpulseWorker], scope: str) -> list[Any]:
    """What each worker's /kpis says about a scope Redis got wrong (for the diagnosis)."""
    out = []
    for w in workers:
        try:
            out.append(w.client.get(f"{w.url}/kpis", params={"window": "24h", "scope": scope}).text)
        except httpx.HTTPError as exc:
            out.append(repr(exc))
    return out


def _gate(
    result: Result, run: Run, prefix: str, by_type: Counter[str], other: float,
    workers: list[FunnelpulseWorker],
) -> None:  # fmt: skip
    """exact = every scope's 24 h Redis hash equals the recount and, with one worker,
    ``marketing_events_total`` by type equals the ground truth. (Several workers' counters
    may count a replayed message twice after a rebalance: Prometheus counters count work,
    the tables count events; there only the tables must be exact.)"""
    if result.partial:
        result.exact = "n/a"
        return
    problems = []
    if run.workers == 1 and (dict(by_type) != dict(run.truth.by_type) or other):
        problems.append(f"counted {dict(by_type)} (+{other:.0f} duplicate/rejected)")
    if sum(by_type.values()) < run.truth.events:
        problems.append(f"counted {sum(by_type.values()):,} < {run.truth.events:,}")
    bad = check_redis(run.redis_url, prefix, run.truth)
    if bad:
        problems.append(f"{len(bad)} Redis scopes differ, e.g. {'; '.join(bad[:3])}")
        result.extra["redis_mismatches"] = bad[:50]
        result.extra["http_kpis_of_first"] = _http_kpis(workers, bad[0].split(" ", 1)[0])
    result.exact = "NO" if problems else "yes"
    result.extra["redis_scopes_checked"] = len(run.truth.scopes())
    for problem in problems:
        result.add_note(problem)


def run_system(run: Run, web_port: int = 6097) -> Result:
    if run.system in FUNNELPULSE:
        return run_funnelpulse(run, web_port)
    return run_child(run)
