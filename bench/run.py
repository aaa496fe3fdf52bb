"""The side-by-side benchmark (issue 5): ``python -m bench.run --help``.

Preloads seeded data into fresh topics, drains it with each system in turn (alternating
order per repetition), writes docs/BENCHMARKS.md and deletes every topic, consumer
group and Redis key it made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.generator import FORMS, DataSpec, preload, topic_names
from bench.kafka_admin import create_topics, delete_groups, delete_topics, list_topics
from bench.measure import ROOT, broker_pid, machine, versions
from bench.quixenv import ensure_quix_venv
from bench.report import render
from bench.systems import SYSTEMS, Result, Run, run_system

log = logging.getLogger("bench")

NOT_BUILT = [
    ("latency phase (p50/p95/p99 produce → visible in Redis at 1k, 5k ev/s and 50 % of "
     "the maximum)", "not implemented yet in bench/ (issue 5, deliverable 2)"),
    ("memory phase (10,000 campaigns with 24 h of panes)",
     "not implemented yet in bench/ (issue 5, deliverable 2)"),
    ("two funnelpulse workers versus one", "not implemented yet (issue 5, deliverable 5)"),
    ("consumer lag via the admin API", "drains end when the system has seen (or funnelpulse "
     "has counted) every preloaded message; committed offsets are not read"),
]  # fmt: skip


def _csv(value: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--systems", type=lambda v: _csv(v, SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--inputs", type=lambda v: _csv(v, FORMS), default=list(FORMS))
    p.add_argument("--campaigns", type=int, default=1_000)
    p.add_argument("--seed", type=int, default=20250501)
    p.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds of draining allowed per system run (then: partial)",
    )
    p.add_argument(
        "--naive-budget",
        type=float,
        default=60.0,
        help="the same for faust-naive (~300 events/s: it can never drain 1M)",
    )
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--web-port", type=int, default=6097)
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    ns = f"fpbench{uuid.uuid4().hex[:6]}"
    spec = DataSpec(events=args.events, campaigns=args.campaigns, seed=args.seed)
    quix_python = None
    not_measured = list(NOT_BUILT)
    if "quix" in args.systems:
        try:
            quix_python = ensure_quix_venv()
        except Exception as exc:
            not_measured.append(("quix", f"could not install Quix Streams: {exc}"))
    broker = broker_pid()
    if broker is None:
        not_measured.append(
            ("CPU-s broker", "no broker pid (.stack/kafka.pid or BENCH_BROKER_PID)")
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"{ns}-"))
    results: list[Result] = []
    try:
        names = [t for f in args.inputs for t in topic_names(f"{ns}.", f).values()]
        asyncio.run(create_topics(args.bootstrap, names, spec.partitions))
        started = time.monotonic()
        truth = asyncio.run(preload(args.bootstrap, f"{ns}.", args.inputs, spec))
        log.info("preloaded %d events (%s messages) in %.1f s", truth.events, truth.messages,
                 time.monotonic() - started)  # fmt: skip
        (workdir / "truth.json").write_text(json.dumps(truth.to_json()))
        for rep in range(1, args.reps + 1):
            order = args.systems if rep % 2 else list(reversed(args.systems))
            for form in args.inputs:
                for system in order:
                    budget = args.naive_budget if system == "faust-naive" else args.budget
                    run = Run(system, form, rep, ns, args.bootstrap, truth, budget, workdir,
                              broker, quix_python, args.redis_url)  # fmt: skip
                    log.info("rep %d %s %s ...", rep, form, system)
                    result = run_system(run, args.web_port)
                    log.info("  -> %s", json.dumps(result.to_json(), default=str))
                    results.append(result)
        (workdir / "results.json").write_text(
            json.dumps([r.to_json() for r in results], default=str, indent=1)
        )
        data = {
            "events": f"{truth.events:,} (seed {spec.seed}, {spec.campaigns:,} campaigns, "
            f"Zipf s={spec.zipf_s}, event times over the last {spec.span_s / 60:.0f} min)",
            "events by type": ", ".join(f"{k} {v:,}" for k, v in sorted(truth.by_type.items())),
            "busiest campaigns (share of events)": ", ".join(
                f"{c} {n / truth.events:.1%}" for c, n in truth.by_campaign.most_common(3)
            ),
            "messages": ", ".join(f"{f}: {n:,}" for f, n in truth.messages.items()),
            "topics": f"7 per input form, {spec.partitions} partitions, keyed by campaign",
            "repetitions": str(args.reps),
            "Quix Streams work": "tumbling 60 s count per campaign (message key) per event "
            "type; no group_by to channel/all scopes (that would add a repartition topic)",
            "raw aiokafka work": "per-minute counts per (type, scope) for all, channel and "
            "campaign scopes in one dict",
        }
        text = render(
            command=command,
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine(),
            versions=versions(quix_python),
            data=data,
            systems=args.systems,
            forms=args.inputs,
            results=results,
            not_measured=not_measured,
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(text)
    finally:
        cleanup(args, ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
