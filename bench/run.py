"""The side-by-side benchmark (issue 5): ``python -m bench.run --help``.

Preloads seeded data into fresh topics, drains it with each system in turn (alternating
order per repetition), then runs two funnelpulse workers on the batch input, the latency
phase (fixed rates, produce → visible in Redis) and the memory phase (many campaigns with
24 h of panes); writes docs/BENCHMARKS.md and deletes every topic, consumer group, Redis
key and temporary directory it made (the logs are kept when something failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.generator import FORMS, DataSpec, GroundTruth, MemorySpec, preload, topic_names
from bench.kafka_admin import census, create_topics, delete_groups, delete_topics, list_topics
from bench.measure import ROOT, broker_pid, machine, versions
from bench.phases import Env, run_latency, run_memory
from bench.quixenv import ensure_quix_venv
from bench.report import MAX_FRACTION_NAME, Report, full_drain_rate, render
from bench.restart import RestartSpec, run_restart, run_takeover
from bench.results import LatencyResult, MemoryResult, RestartResult
from bench.spy import Profile, load
from bench.systems import FUNNELPULSE, STORES, SYSTEMS, Result, Run, run_system
from funnelpulse.settings import Settings

log = logging.getLogger("bench")

PHASES = ("two-workers", "latency", "restart", "takeover", "memory")
# Time budgets (s of draining per run), chosen so that `make bench` (1,000,000 events, two
# repetitions, every phase) fits in 30 minutes on a 2-core machine: see docs/BENCHMARKS.md.
# The memory phase drains all 10,000 campaigns (~5 min) since its target needs them all.
BUDGET_S = 45.0
SINGLE_BUDGET_S = 30.0
NAIVE_BUDGET_S = 15.0
GATED_BUDGET_S = 300.0
MEMORY_BUDGET_S = 720.0
DEFAULT_SYSTEMS = ("raw", "quix", "faust-naive", "faust-bare", "funnelpulse", "funnelpulse-memory",
                   "funnelpulse-rocksdb")  # fmt: skip
# Issue 5 deliverables the harness does not produce (the optimisation work itself, with
# its py-spy profiles, is the product's, reported in the closing note).
NOT_BUILT: list[tuple[str, str]] = []


def _csv(value: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def profiles(results: list[Result], restarts: list[RestartResult]) -> list[Profile]:
    """The profiles ``--profile`` recorded, summed (bench/spy.py): drains', then restarted
    processes' (from web up to the probes' arrival)."""
    drains = [(f"{r.system}, {r.form}, rep {r.rep}", r.extra.get("profile")) for r in results]
    drains += [(f"restart {r.store} {r.level}×, rep {i}", rep.profile)
               for r in restarts for i, rep in enumerate(r.reps, 1)]  # fmt: skip
    return [load(title, Path(path)) for title, path in drains if path and Path(path).exists()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = p.add_argument
    add("--events", type=int, default=1_000_000)
    add("--reps", type=int, default=2)
    add(
        "--systems",
        type=lambda v: _csv(v, SYSTEMS),
        default=list(DEFAULT_SYSTEMS),
        help=f"of {', '.join(SYSTEMS)} (default: all but quix-campaign)",
    )
    add(
        "--inputs",
        type=lambda v: _csv(v, FORMS),
        default=list(FORMS),
        help="input forms; `mixed` (collector-keyed batches) is drained by funnelpulse only",
    )
    add(
        "--base",
        default="HEAD~1",
        help="the commit funnelpulse-base runs (a git worktree of it, with this venv): "
        "the same-run comparison of a change",
    )
    add("--campaigns", type=int, default=1_000)
    add("--seed", type=int, default=20250501)
    add(
        "--budget",
        type=float,
        default=BUDGET_S,
        help="seconds of draining allowed per batch-input run (then: partial)",
    )
    add(
        "--single-budget",
        type=float,
        default=SINGLE_BUDGET_S,
        help="the same per single-event-input run (the slow peers cannot drain 1M in it)",
    )
    add(
        "--naive-budget",
        type=float,
        default=NAIVE_BUDGET_S,
        help="the same for faust-naive (~300 events/s: it can never drain 1M)",
    )
    add(
        "--gated-budget",
        type=float,
        default=GATED_BUDGET_S,
        help="the same for funnelpulse on the batch input (one and two workers): its "
        "exactness gate needs a full drain",
    )
    add(
        "--phases",
        type=lambda v: _csv(v, PHASES),
        default=list(PHASES),
        help=f"after the drains, any of {', '.join(PHASES)}",
    )
    add("--latency-seconds", type=float, default=60.0, help="per rate")
    add("--latency-rates", default="1000,5000", help="fixed rates (events/s), comma-separated")
    add(
        "--latency-max-fraction",
        type=float,
        default=0.5,
        help="plus this fraction of funnelpulse's median full batch drain rate",
    )
    add(
        "--latency-max-rate",
        type=float,
        default=0.0,
        help="the max rate to use when this run has no full funnelpulse batch drain",
    )
    add(
        "--stores",
        type=lambda v: _csv(v, STORES),
        default=list(STORES),
        help="FUNNELPULSE_STORE values the memory, restart and takeover phases run, each in "
        "the same run (the drains pin theirs with funnelpulse-memory/-rocksdb)",
    )
    add(
        "--memory-campaigns",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        default=[10_000, 100_000],
        help="campaign counts, comma-separated: one memory run per count and store",
    )
    add("--restart-history", type=int, default=500_000, help="events at 1× (restart phase)")
    add(
        "--restart-levels",
        type=lambda v: tuple(int(x) for x in v.split(",") if x.strip()),
        default=(1, 4, 16),
        help="history multiples, ascending (the history grows from one to the next)",
    )
    add(
        "--restart-top",
        type=lambda v: {k: int(n) for k, _, n in (x.partition(":") for x in v.split(",") if x)},
        default={},
        help="store:level, comma-separated: the highest history level a store's restarts "
        "run (memory:4: the in-memory store's 16× restart passes the 600 s patience)",
    )
    add("--restart-campaigns", type=int, default=2_000)
    add("--restart-reps", type=int, default=3, help="kills per store and history (and takeovers)")
    add(
        "--memory-spacing",
        type=int,
        default=MemorySpec.coarse_s,
        help="seconds between a campaign's events over the 24 h (3600: one per hourly pane, "
        "a cheaper load for 100,000 campaigns)",
    )
    add(
        "--memory-fine-minutes",
        type=int,
        default=MemorySpec.fine_minutes,
        help="the last minutes given one event each on top (0: none)",
    )
    add("--memory-settle", type=float, default=30.0, help="idle seconds before steady RSS")
    add(
        "--memory-budget",
        type=float,
        default=MEMORY_BUDGET_S,
        help="seconds of draining allowed (then: partial, with a labelled projection)",
    )
    add(
        "--profile",
        type=Path,
        default=None,
        help="py-spy every drain and restarted process into this directory; the report sums "
        "where the time goes",
    )
    add("--profile-seconds", type=float, default=30.0, help="longest profile of one drain")
    add("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    add("--json", type=Path, default=None, help="also write every result here")
    add("--keep-workdir", action="store_true", help="keep logs and data (kept anyway on errors)")
    add(
        "--keep-data",
        action="store_true",
        help="keep the topics, groups and Redis keys made (to study a failed run)",
    )
    add("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    add("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    add("--web-port", type=int, default=6097, help="funnelpulse's HTTP port (and the next one)")
    return p.parse_args(argv)  # fmt: skip


def cleanup(args: argparse.Namespace, ns: str) -> None:
    mine = lambda name: name.startswith(ns) or f"__{ns}" in name  # noqa: E731
    topics = asyncio.run(list_topics(args.bootstrap, mine))
    asyncio.run(delete_topics(args.bootstrap, topics))
    groups = asyncio.run(delete_groups(args.bootstrap, lambda g: g.startswith(ns)))
    client = redis.Redis.from_url(args.redis_url, socket_timeout=5)
    keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    log.info("cleaned up %d topics, %d groups, %d Redis keys", len(topics), len(groups),
             len(keys))  # fmt: skip


def checkout(rev: str, workdir: Path) -> Path:
    """A detached worktree of ``rev`` (removed with the workdir; ``git worktree prune``)."""
    path = workdir / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
                   check=True)  # fmt: skip
    commit = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    log.info("funnelpulse-base runs %s (%s) from %s", rev, commit, path)
    return path


def _rate_name(rate: float) -> str:
    return f"{rate / 1000:g}k ev/s" if rate >= 1000 else f"{rate:g} ev/s"


def latency_rates(args: argparse.Namespace, results: list[Result]) -> list[tuple[str, float]]:
    rates = [(_rate_name(float(r)), float(r)) for r in args.latency_rates.split(",") if r.strip()]
    measured = full_drain_rate(results, "funnelpulse", "batch")
    top = measured if measured is not None else args.latency_max_rate
    rates.append((MAX_FRACTION_NAME, args.latency_max_fraction * top))
    return rates


def budgets(args: argparse.Namespace) -> dict[str, str]:
    return {
        "time budget per drain": f"batch input {args.budget:.0f} s, single-event input "
        f"{args.single_budget:.0f} s, faust-naive {args.naive_budget:.0f} s, funnelpulse on "
        f"the batch input (one and two workers) {args.gated_budget:.0f} s (its exactness "
        "gate needs a full drain); a run that hits its budget is marked partial, its rate "
        "is the events drained so far / the time, and it is not gated",
        "latency phase": f"{args.latency_seconds:.0f} s per rate",
        "memory phase": f"{args.memory_budget:.0f} s of draining, then "
        f"{args.memory_settle:.0f} s idle, per store and campaign count",
        "restart and takeover phases": "up to 600 s per restart or takeover, up to 3,600 s "
        "per warm-up drain",
    }


def describe_data(args: argparse.Namespace, spec: DataSpec, truth: GroundTruth) -> dict[str, str]:
    return {
        "events": f"{truth.events:,} (seed {spec.seed}, {spec.campaigns:,} campaigns, "
        f"Zipf s={spec.zipf_s}, event times over the last {spec.span_s / 60:.0f} min)",
        "events by type": ", ".join(f"{k} {v:,}" for k, v in sorted(truth.by_type.items())),
        "busiest campaigns (share of events)": ", ".join(
            f"{c} {n / truth.events:.1%}" for c, n in truth.by_campaign.most_common(3)
        ),
        "messages": ", ".join(f"{f}: {n:,}" for f, n in truth.messages.items()),
        "topics": f"7 per input form, {spec.partitions} partitions, keyed by campaign",
        "repetitions": str(args.reps),
        "raw aiokafka work": "per-minute counts per (type, scope) for the all, channel and "
        "campaign scopes in one dict; commits after each `getmany`",
        "Quix Streams work (`quix`)": "the same per-minute counts per (type, scope): on "
        "each input topic, each event (batch messages expanded to rows, event time from "
        "`ts`) fans out to its `all`, `channel:*` and `campaign:*` scope, `group_by(scope)` "
        "re-keys the rows through a repartition topic (3 messages per event; one "
        "repartition topic per input), then `tumbling_window(60 s).count()` per scope",
        "Quix Streams work (`quix-campaign`, when run)": "a cheaper, different result: "
        "`tumbling_window(60 s).count()` per campaign (the message key) on each input topic, "
        "no channel/all scopes, no repartition topic",
        "naive Faust work": "one hopping-table (1 h / 1 min) `+= 1` per event, per campaign",
        "funnelpulse": "the product's worker with its defaults (Redis and Prometheus "
        "publishing on, 1 s publish tick)",
    }


def memory_spec(args: argparse.Namespace, campaigns: int) -> MemorySpec:
    return MemorySpec(
        campaigns=campaigns, coarse_s=args.memory_spacing, fine_minutes=args.memory_fine_minutes
    )


def describe_memory(spec: MemorySpec) -> str:
    per = spec.events_per_campaign
    coarse = per - spec.fine_minutes
    return (
        "N campaigns (channels round-robin), each with one event in every "
        f"{spec.coarse_s // 60} min of the last 24 h older than the last "
        f"{spec.fine_minutes} min ({coarse}) and one in every minute of those: {per} events "
        "per campaign, in every hourly pane of the 24 h. Types: "
        "impression, click, open, sign-up, spend (no lead stages or purchases); batch "
        "messages of ≤ 100 events of one campaign and type, preloaded, then drained by a "
        "fresh worker with the defaults but the table store named in the title and "
        "`7d` added to the windows (each event counts into its minute pane, kept 25 h, and "
        "its hourly pane, kept 35 days; dedup horizon 7 days, so every event_id of the "
        "phase is remembered; with `rocksdb` on disk). Peak RSS = VmHWM of the worker after the "
        "drain and the settle period; steady RSS = VmRSS after it idled; exact = counters "
        "by type and every scope's `7d` Redis hash equal the recount (the `24h` window "
        "slides past the oldest preloaded minutes while the drain runs; `7d` holds them "
        "all, so its sums are the recount whatever the clock)."
    )


def describe_restart(spec: RestartSpec) -> str:
    levels = ", ".join(f"{level}× = {level * spec.history:,}" for level in spec.levels)
    return (
        f"History: the generator's events (all types, Zipf over {spec.campaigns:,} "
        f"campaigns, event times within the hour before each part was written), in batch "
        f"messages: {levels} events; {spec.reps} kills per store and history."
        + "".join(
            f" The {store} store runs up to {top}× only (`--restart-top`)."
            for store, top in spec.top_level.items()
        )
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    run_started = time.monotonic()
    ns = f"fpbench{uuid.uuid4().hex[:6]}"
    spec = DataSpec(events=args.events, campaigns=args.campaigns, seed=args.seed)
    quix_python = None
    not_measured = list(NOT_BUILT)
    if any(s.startswith("quix") for s in args.systems):
        try:
            quix_python = ensure_quix_venv()
        except Exception as exc:
            not_measured.append(("quix", f"could not install Quix Streams: {exc}"))
    broker = broker_pid()
    if broker is None:
        not_measured.append(("CPU-s broker", "no broker pid (kafka.pid in FUNNELPULSE_STACK_DIR "
                             "or .stack/, or BENCH_BROKER_PID)"))  # fmt: skip
    for phase in PHASES:
        if phase not in args.phases:
            not_measured.append((phase, "not run (--phases)"))
    if "memory" in args.phases and 100_000 not in args.memory_campaigns:
        not_measured.append(
            ("memory, 100,000 campaigns (issue 16)", "not run (--memory-campaigns)")
        )
    if "restart" in args.phases and args.restart_history < 500_000:
        not_measured.append(("restart at the issue's history (0.5 M, 2 M, 8 M events)",
                             f"scaled down to {args.restart_history:,} events at 1× "
                             "(--restart-history)"))  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix=f"{ns}-"))
    base_dir = checkout(args.base, workdir) if "funnelpulse-base" in args.systems else None
    env = Env(ns, args.bootstrap, args.redis_url, workdir, args.web_port)
    timings: dict[str, float] = {}
    results: list[Result] = []
    two: list[Result] = []
    latency: list[LatencyResult] = []
    memories: list[MemoryResult] = []
    restarts: list[RestartResult] = []
    takeovers: list[RestartResult] = []
    restart_spec = RestartSpec(
        history=args.restart_history,
        levels=args.restart_levels,
        campaigns=args.restart_campaigns,
        reps=args.restart_reps,
        profile_dir=args.profile,
        top_level=args.restart_top,
    )
    failed = False
    topics_before, partitions_before = asyncio.run(census(args.bootstrap))
    try:
        names = [t for f in args.inputs for t in topic_names(f"{ns}.", f).values()]
        asyncio.run(create_topics(args.bootstrap, names, spec.partitions))
        started = time.monotonic()
        truth = asyncio.run(preload(args.bootstrap, f"{ns}.", args.inputs, spec))
        timings["preload"] = time.monotonic() - started
        log.info("preloaded %d events (%s messages) in %.1f s", truth.events, truth.messages,
                 timings["preload"])  # fmt: skip
        (workdir / "truth.json").write_text(json.dumps(truth.to_json()))
        started = time.monotonic()
        for rep in range(1, args.reps + 1):
            order = args.systems if rep % 2 else list(reversed(args.systems))
            for form in args.inputs:
                for system in order:
                    if form == "mixed" and system not in FUNNELPULSE:
                        continue  # the peers count per message key: nothing to compare
                    budget = args.single_budget if form == "single" else args.budget
                    if system == "faust-naive":
                        budget = args.naive_budget
                    elif system in FUNNELPULSE and form != "single":
                        budget = args.gated_budget
                    base = base_dir if system == "funnelpulse-base" else None
                    run = Run(system, form, rep, ns, args.bootstrap, truth, budget, workdir,
                              broker, quix_python, args.redis_url, spec.span_s,
                              profile_dir=args.profile, profile_s=args.profile_seconds,
                              base_dir=base)  # fmt: skip
                    log.info("rep %d %s %s ...", rep, form, system)
                    result = run_system(run, args.web_port)
                    log.info("  -> %s", json.dumps(result.to_json(), default=str))
                    results.append(result)
        timings["side-by-side drains"] = time.monotonic() - started
        if "two-workers" in args.phases and "batch" in args.inputs:
            started = time.monotonic()
            run = Run("funnelpulse", "batch", 1, ns, args.bootstrap, truth, args.gated_budget,
                      workdir, broker, None, args.redis_url, spec.span_s, workers=2)  # fmt: skip
            log.info("two funnelpulse workers, batch ...")
            two.append(run_system(run, args.web_port))
            log.info("  -> %s", json.dumps(two[-1].to_json(), default=str))
            timings["two workers"] = time.monotonic() - started
        if "latency" in args.phases:
            started = time.monotonic()
            latency = run_latency(env, latency_rates(args, results), args.latency_seconds)
            timings["latency"] = time.monotonic() - started
        recoveries = {"restart": (run_restart, restarts), "takeover": (run_takeover, takeovers)}
        for phase, (measure, found) in recoveries.items():
            if phase in args.phases:
                started = time.monotonic()
                found.extend(measure(env, restart_spec, args.stores))
                for r in found:
                    log.info("  -> %s", json.dumps(r.to_json(), default=str))
                timings[phase] = time.monotonic() - started
        if "memory" in args.phases:
            for campaigns in args.memory_campaigns:
                for store in args.stores:
                    started = time.monotonic()
                    log.info("memory: %d campaigns, store %s ...", campaigns, store)
                    memory = run_memory(env, memory_spec(args, campaigns), args.memory_settle,
                                        args.memory_budget, store)  # fmt: skip
                    log.info("  -> %s", json.dumps(memory.to_json(), default=str))
                    memories.append(memory)
                    timings[f"memory, {campaigns:,} campaigns, {store}"] = (
                        time.monotonic() - started
                    )
        timings["whole run (the Quix venv and the stack not included)"] = (
            time.monotonic() - run_started
        )
        failed = any(r.error or r.exact == "NO" for r in [*results, *two])
        failed = failed or any(r.error for r in latency)
        failed = failed or any(m.error is not None or m.exact == "NO" for m in memories)
        failed = failed or any(
            r.error or any(rep.exact == "NO" for rep in r.reps) for r in [*restarts, *takeovers]
        )
        if args.json:
            args.json.write_text(json.dumps({
                "drains": [r.to_json() for r in results],
                "two_workers": [r.to_json() for r in two],
                "latency": [r.to_json() for r in latency],
                "memory": [m.to_json() for m in memories],
                "restart": [r.to_json() for r in restarts],
                "takeover": [r.to_json() for r in takeovers],
                "timings": timings,
            }, default=str, indent=1))  # fmt: skip
        text = render(
            Report(
                command=command,
                generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                machine={
                    **machine(),
                    "broker at the start": f"{topics_before:,} topics, "
                    f"{partitions_before:,} partitions (other runs' and tests')",
                },
                versions=versions(quix_python),
                data=describe_data(args, spec, truth),
                systems=args.systems,
                forms=args.inputs,
                results=results,
                not_measured=not_measured,
                latency=latency,
                latency_seconds=args.latency_seconds,
                memories=memories,
                memory_data=describe_memory(memory_spec(args, 0)) if memories else "",
                default_store=Settings().store,
                restarts=restarts,
                takeovers=takeovers,
                restart_data=describe_restart(restart_spec) if restarts else "",
                two_workers=two,
                timings=timings,
                budgets=budgets(args),
                profiles=profiles(results, restarts),
            )
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(text)
    except BaseException:
        failed = True
        raise
    finally:
        if args.keep_data:
            log.info("topics, groups and Redis keys of %s kept (--keep-data)", ns)
        else:
            cleanup(args, ns)
        if failed or args.keep_workdir:
            log.info("logs and data kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if base_dir is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
