"""Issue 16's recovery phases: restart after ``kill -9`` at growing history, and takeover
by a warm standby after ``kill -9`` of the other worker; each store in the same run.

Restart: one worker per store on its own topics, data dir (kept across its restarts),
consumer group and Redis prefix. History grows in parts (1×, then up to 4×, then up to
16×): each part is preloaded into both stores' topics, drained by a (re)started worker,
and checked exact in Redis; then, per repetition, the worker is killed with SIGKILL,
probe events (one batch message of ``PROBE_EVENTS`` clicks for a fresh campaign on every
partition) are written, and a new process is started on the same data dir. Its clock
starts at that spawn; it stops at the first poll (every ``POLL_S``) at which Redis holds
every probe campaign's count: every partition has been recovered, consumed, counted and
published again. After that every scope's 24 h hash is recounted against the ground truth
(history plus every probe so far), and the new process's counters must hold exactly the
probes (nothing recounted).

Takeover: two workers (standby replicas on, the product's setting) drain the 1× history;
then, per repetition, the second is killed with SIGKILL and probes are written at once;
the clock starts at the kill and stops when Redis holds every probe (so it includes the
broker noticing the dead member: the session timeout). The victim is restarted, and the
pair is left to settle (both active with standbys, lag 0) before the next repetition.

The trap: a probe written before the kill would be counted by the dying process, and one
written to a partition no probe campaign maps to would leave that partition unmeasured;
so the probes are written after the kill, one campaign per partition (Kafka's default
partitioner, as the generator keys).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.generator import DataSpec, GroundTruth, preload
from bench.kafka_admin import end_offsets_sum, list_topics
from bench.lag import LagWatch
from bench.phases import Env
from bench.results import RestartRep, RestartResult
from bench.spy import ProcessProfile
from bench.systems import EXACT_PATIENCE, FunnelpulseWorker, check_redis, funnelpulse_env
from streams.events import EventType

log = logging.getLogger("bench")

PROBE_EVENTS = 10  # clicks per probe campaign (one batch message)
PROBE_CHANNEL = "paid_search"
POLL_S = 0.1
PATIENCE_S = 600.0  # longest wait for a restart or takeover to publish the probes
DRAIN_BUDGET_S = 3600.0  # longest warm-up drain of one history part
PARTITIONS = 4  # of every topic the harness makes (FUNNELPULSE_PARTITIONS)
SETTLE_S = 3.0  # after lag 0: one commit interval (2.8 s), so the kill finds nothing pending


PROFILE_S = 10.0  # py-spy of a restarted process, from web up (--profile)


@dataclass(frozen=True)
class RestartSpec:
    history: int = 500_000  # events at 1×
    levels: tuple[int, ...] = (1, 4, 16)
    campaigns: int = 2_000
    reps: int = 3
    seed: int = 20250516
    profile_dir: Path | None = None  # py-spy each restarted process here (bench/spy.py)
    # store → highest level it runs (the memory store's 16× restart replays 8 M events and
    # passes PATIENCE_S: its history stops growing there, and it sits the levels out)
    top_level: dict[str, int] = field(default_factory=dict)

    def runs_at(self, store: str, level: int) -> bool:
        return level <= self.top_level.get(store, level)


def probe_campaigns(tag: str, partitions: int) -> list[str]:
    """One campaign name per partition (Kafka's default partitioner, as the keys are)."""
    partitioner, found = DefaultPartitioner(), dict[int, str]()
    i = 0
    while len(found) < partitions:
        name = f"probe-{tag}-{i}"
        found.setdefault(partitioner(name.encode(), list(range(partitions)),
                                     list(range(partitions))), name)  # fmt: skip
        i += 1
    return [found[p] for p in range(partitions)]


async def write_probes(
    bootstrap: str, topic: str, campaigns: list[str], truth: GroundTruth
) -> int:  # fmt: skip
    """One batch message of ``PROBE_EVENTS`` clicks per campaign (event time: now); adds
    them to ``truth``; returns the events written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        now, sent = time.time(), []
        for campaign in campaigns:
            docs = [{"event_id": f"{campaign}-{i}", "ts": round(now, 3), "campaign_id": campaign,
                     "channel": PROBE_CHANNEL, "user_id": f"u-{campaign}-{i}"}
                    for i in range(PROBE_EVENTS)]  # fmt: skip
            for doc in docs:
                truth.add(EventType.CLICK, campaign, doc)
            sent.append(await producer.send(topic, orjson.dumps(docs), key=campaign.encode()))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return PROBE_EVENTS * len(campaigns)


def probes_visible(client: redis.Redis, prefix: str, campaigns: list[str]) -> bool:
    pipe = client.pipeline(transaction=False)
    for campaign in campaigns:
        pipe.hget(f"{prefix}kpi:24h:campaign:{campaign}", "clicks")
    return all(v is not None and float(v) >= PROBE_EVENTS for v in pipe.execute())


def _until(check: Callable[[], bool], patience: float) -> bool:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (httpx.HTTPError, ValueError, redis.RedisError):
            pass
        time.sleep(POLL_S)
    return False


class _StoreRun:
    """One store's worker(s), topics, data dirs and ground truth."""

    def __init__(self, env: Env, name: str, store: str, workers: int) -> None:
        from funnelpulse.settings import Settings
        from streams.topics import TopicNames, ensure_topics

        self.env, self.name, self.store = env, name, store
        self.app_id = f"{env.ns}-{name}"
        self.redis_prefix = f"{env.ns}:{name}:"
        self.truth = GroundTruth()
        self.envs: list[dict[str, str]] = []
        self.dirs: list[Path] = []
        for i in range(workers):
            data_dir = Path(tempfile.mkdtemp(prefix=f"{self.app_id}-w{i}-", dir=env.workdir))
            self.dirs.append(data_dir)
            self.envs.append(funnelpulse_env(
                app_id=self.app_id, topic_prefix=f"{env.ns}.{name}.",
                redis_prefix=self.redis_prefix, web_port=env.web_port + i, data_dir=data_dir,
                bootstrap=env.bootstrap, redis_url=env.redis_url, FUNNELPULSE_STORE=store,
            ))  # fmt: skip
        settings = Settings.from_env(self.envs[0])
        asyncio.run(ensure_topics(settings))
        self.names = TopicNames.from_settings(settings)
        self.workers: list[FunnelpulseWorker | None] = [None] * workers
        self.starts = [0] * workers
        self.redis = redis.Redis.from_url(env.redis_url, socket_timeout=10, decode_responses=True)

    @property
    def inputs(self) -> dict[EventType, str]:
        return dict(self.names.inputs)

    def start(self, i: int) -> FunnelpulseWorker:
        self.starts[i] += 1
        log_path = self.env.workdir / f"{self.app_id}-w{i}-{self.starts[i]}.log"
        worker = self.workers[i] = FunnelpulseWorker(self.envs[i], log_path)
        return worker

    def worker(self, i: int) -> FunnelpulseWorker:
        worker = self.workers[i]
        if worker is None:
            raise RuntimeError(f"{self.name}: worker {i} not started")
        return worker

    def check_alive(self) -> None:
        for w in self.workers:
            if w is not None and not w.alive():
                raise RuntimeError(f"worker exited with {w.proc.returncode} (see {w.log_path})")

    def wait_steady(self, budget: float) -> float:
        """Until the group's lag is 0 and every scope's Redis hash equals the recount;
        returns the seconds it took."""
        started = time.monotonic()
        watch = LagWatch(self.env.bootstrap, self.app_id, list(self.inputs.values()), 1.0)
        with watch:
            while watch.zero_at is None:
                if time.monotonic() - started > budget:
                    raise RuntimeError(f"no lag 0 within {budget:.0f} s (lag {watch.lag})")
                self.check_alive()
                time.sleep(1.0)
        bad = check_redis(self.env.redis_url, self.redis_prefix, self.truth, patience=120.0)
        if bad:
            raise RuntimeError(f"{len(bad)} Redis scopes differ, e.g. {'; '.join(bad[:2])}")
        time.sleep(SETTLE_S)
        return time.monotonic() - started

    def exact(self, rep: RestartRep, worker: FunnelpulseWorker | None = None) -> None:
        """Every scope's 24 h hash against the recount; with ``worker``: its counters hold
        exactly the probes (a restarted process counts only what it consumed)."""
        problems = []
        bad = check_redis(self.env.redis_url, self.redis_prefix, self.truth, patience=60.0)
        if bad:
            problems.append(f"{len(bad)} Redis scopes differ, e.g. {'; '.join(bad[:2])}")
        if worker is not None:
            by_type, other = worker.counts()
            if dict(by_type) != {"click": rep.probes} or other:
                problems.append(f"the new process counted {dict(by_type)} (+{other:.0f} "
                                f"duplicate/rejected), want {rep.probes} clicks")  # fmt: skip
        rep.exact = "NO" if problems else "yes"
        rep.note = "; ".join(problems)

    def changelog_records(self) -> int:
        topics = asyncio.run(list_topics(self.env.bootstrap, lambda t: t.startswith(
            f"{self.app_id}-") and t.endswith("-changelog")))  # fmt: skip
        return asyncio.run(end_offsets_sum(self.env.bootstrap, topics))

    def close(self, keep: bool = False) -> None:
        for w in self.workers:
            if w is not None:
                w.stop()
        self.redis.close()
        if not keep:
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)


def _grow(env: Env, runs: list[_StoreRun], spec: RestartSpec, part: int, events: int) -> None:
    """Writes ``events`` more history events into every run's topics (one generation)."""
    data = DataSpec(events=events, campaigns=spec.campaigns, seed=spec.seed + part,
                    partitions=PARTITIONS)  # fmt: skip
    copies = [r.inputs for r in runs]
    truth = asyncio.run(preload(env.bootstrap, f"{env.ns}.unused.", ["batch"], data,
                                batch_copies=copies))  # fmt: skip
    for r in runs:
        r.truth.update(truth)


def _restart_once(run: _StoreRun, tag: str, profile_dir: Path | None = None) -> RestartRep:
    """``profile_dir``: py-spy the new process from web up (the worker re-executes itself
    under jemalloc first, so not from its spawn) until the probes are published, at most
    ``PROFILE_S``."""
    rep = RestartRep()
    campaigns = probe_campaigns(tag, PARTITIONS)
    run.worker(0).kill()
    topic = run.inputs[EventType.CLICK]
    rep.probes = asyncio.run(write_probes(run.env.bootstrap, topic, campaigns, run.truth))
    started = time.monotonic()
    worker = run.start(0)
    profile = ProcessProfile(profile_dir, f"restart-{run.store}-{tag}", PROFILE_S)
    deadline = started + PATIENCE_S
    while time.monotonic() < deadline and rep.published is None:
        time.sleep(POLL_S)
        run.check_alive()
        now = time.monotonic() - started
        if rep.counted is None:
            try:
                by_type, other = worker.counts()
            except httpx.HTTPError:
                continue
            if rep.web is None:
                rep.web = now
                profile.start(worker.pid)
            if sum(by_type.values()) + other >= rep.probes:
                rep.counted = now
        try:
            if probes_visible(run.redis, run.redis_prefix, campaigns):
                rep.published = now
        except redis.RedisError:
            pass
    rep.profile = profile.finish()  # cut at the probes' arrival: the path to it
    if rep.published is None:
        rep.note = f"probes not published within {PATIENCE_S:.0f} s"
        rep.exact = "n/a"
        return rep
    run.exact(rep, worker)
    return rep


def run_restart(env: Env, spec: RestartSpec, stores: list[str]) -> list[RestartResult]:
    """Every store at every history level, ``spec.reps`` kills each (module docstring)."""
    runs = [_StoreRun(env, f"rst-{store}", store, 1) for store in stores]
    results: list[RestartResult] = []
    loaded = 0
    try:
        for part, level in enumerate(spec.levels):
            target = level * spec.history
            log.info("restart: growing the history to %d events ...", target)
            level_runs = [run for run in runs if spec.runs_at(run.store, level)]
            _grow(env, level_runs, spec, part, target - loaded)
            loaded = target
            order = level_runs if part % 2 == 0 else list(reversed(level_runs))
            for run in order:
                result = RestartResult(run.store, level, history_events=run.truth.events)
                results.append(result)
                try:
                    run.start(0)
                    result.drain_s = run.wait_steady(DRAIN_BUDGET_S)
                    result.changelog_records = run.changelog_records()
                    for i in range(spec.reps):
                        rep = _restart_once(run, f"{run.store}-{level}x-{i}", spec.profile_dir)
                        result.reps.append(rep)
                        log.info("restart %s %dx rep %d: %s", run.store, level, i + 1,
                                 rep.__dict__)  # fmt: skip
                        if rep.published is None:
                            raise RuntimeError(rep.note)
                        run.wait_steady(EXACT_PATIENCE)
                except Exception as exc:
                    log.warning("restart %s %dx failed: %r", run.store, level, exc)
                    result.error = str(exc)
                finally:
                    worker = run.workers[0]
                    if worker is not None:
                        worker.stop()
                        run.workers[0] = None
    finally:
        for run in runs:
            run.close()
    return results


# -- takeover ----------------------------------------------------------------------------------
def _pair_ready(run: _StoreRun) -> bool:
    """Both workers active and warm (a standby each), every partition published by one."""
    healths = [run.worker(i).health() for i in range(2)]
    parts = [h.get("partitions", {}) for h in healths]
    owned = sorted(p for part in parts for p in part.get("publishing", []))
    return all(p.get("active", 0) > 0 and p.get("standby", 0) > 0 for p in parts) and owned == list(
        range(PARTITIONS)
    )


def _takeover_once(run: _StoreRun, tag: str, result: RestartResult) -> RestartRep:
    rep = RestartRep()
    if not _until(lambda: _pair_ready(run), PATIENCE_S):
        rep.note = "the pair never settled (both active, with standbys)"
        return rep
    run.wait_steady(EXACT_PATIENCE)
    victim_parts = sorted(run.worker(1).health()["partitions"]["publishing"])
    result.victim_partitions.append(victim_parts)
    campaigns = probe_campaigns(tag, PARTITIONS)
    survivor = run.worker(0)
    by_type, other = survivor.counts()
    before = sum(by_type.values()) + other  # the survivor's own counters before the kill
    run.worker(1).kill()
    run.workers[1] = None
    started = time.monotonic()
    rep.probes = asyncio.run(write_probes(run.env.bootstrap, run.inputs[EventType.CLICK],
                                          campaigns, run.truth))  # fmt: skip
    deadline = started + PATIENCE_S
    while time.monotonic() < deadline and (rep.published is None or rep.owning is None):
        time.sleep(POLL_S)
        run.check_alive()
        now = time.monotonic() - started
        try:
            publishing = survivor.health()["partitions"]["publishing"]
            if rep.owning is None and len(publishing) == PARTITIONS:
                rep.owning = now
            if rep.counted is None:
                by_type, other = survivor.counts()
                if sum(by_type.values()) + other - before >= rep.probes:
                    rep.counted = now
            if rep.published is None and probes_visible(run.redis, run.redis_prefix, campaigns):
                rep.published = now
        except (httpx.HTTPError, ValueError, KeyError, redis.RedisError):
            continue
    if rep.published is None:
        rep.note = f"probes not published within {PATIENCE_S:.0f} s"
        return rep
    run.exact(rep)
    return rep


def run_takeover(env: Env, spec: RestartSpec, stores: list[str]) -> list[RestartResult]:
    """Per store: two workers on the 1× history, ``spec.reps`` kills of the second."""
    runs = [_StoreRun(env, f"tko-{store}", store, 2) for store in stores]
    results: list[RestartResult] = []
    try:
        log.info("takeover: writing %d history events ...", spec.history)
        _grow(env, runs, spec, 100, spec.history)
        for run in runs:
            result = RestartResult(run.store, 0, history_events=run.truth.events)
            results.append(result)
            try:
                run.start(0)
                run.start(1)
                result.drain_s = run.wait_steady(DRAIN_BUDGET_S)
                result.changelog_records = run.changelog_records()
                for i in range(spec.reps):
                    rep = _takeover_once(run, f"tko-{run.store}-{i}", result)
                    result.reps.append(rep)
                    log.info("takeover %s rep %d: %s", run.store, i + 1, rep.__dict__)
                    if rep.published is None:
                        raise RuntimeError(rep.note)
                    run.start(1)  # the victim comes back; the next rep waits for the pair
            except Exception as exc:
                log.warning("takeover %s failed: %r", run.store, exc)
                result.error = str(exc)
            finally:
                for i, worker in enumerate(run.workers):
                    if worker is not None:
                        worker.stop()
                        run.workers[i] = None
    finally:
        for run in runs:
            run.close()
    return results
