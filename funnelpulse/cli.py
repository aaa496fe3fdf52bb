"""The ``funnelpulse`` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable

from .connectivity import kafka_round_trip, redis_ping
from .settings import Settings, SettingsError


def _check(settings: Settings, args: argparse.Namespace) -> int:
    """Round trip to Kafka and PING Redis, reporting each on its own line."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    failures = 0
    probes = [
        ("kafka", settings.kafka_bootstrap_servers, kafka_round_trip),
        ("redis", settings.redis_url, redis_ping),
    ]
    for name, target, probe in probes:
        try:
            took = asyncio.run(asyncio.wait_for(probe(target), timeout=args.timeout))
            print(f"{name:6} ok      {target}  ({took * 1000:.0f} ms)")
        except Exception as exc:
            failures += 1
            print(f"{name:6} FAILED  {target}  {type(exc).__name__}: {exc}")
    return 1 if failures else 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """Creates the topics, then runs the Faust worker until SIGTERM/SIGINT (graceful)."""
    import faust

    from streams.app import create_app
    from streams.topics import ensure_topics

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    created = loop.run_until_complete(ensure_topics(settings))
    if created:
        print(f"created topics: {', '.join(created)}", file=sys.stderr)
    fp = create_app(settings)
    worker = faust.Worker(fp.app, loglevel=settings.log_level, quiet=True, loop=loop)
    worker.execute_from_commandline()
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .simulator import simulate

    def report(sent: int, elapsed: float) -> None:
        if args.quiet:
            return
        print(
            f"\rsimulate: {sent:,} events in {elapsed:,.0f} s ({sent / max(elapsed, 1e-9):,.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    sent = asyncio.run(
        simulate(
            settings.kafka_bootstrap_servers,
            settings.topic_prefix,
            args.rate,
            args.seed,
            args.duration,
            args.single,
            args.campaigns,
            report,
        )
    )
    print(f"\nsimulate: sent {sent:,} events", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnelpulse",
        description="Real-time marketing KPIs from Kafka. Settings come from the environment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="connectivity to Kafka and Redis")
    check.add_argument("--timeout", type=float, default=15.0, help="seconds per check")
    check.set_defaults(run=_check)
    worker = commands.add_parser("worker", help="run the Faust worker (Ctrl-C/SIGTERM stops it)")
    worker.set_defaults(run=_worker)
    sim = commands.add_parser("simulate", help="realistic funnel traffic into the input topics")
    sim.add_argument("--rate", type=float, default=500.0, help="events per second")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    sim.add_argument("--campaigns", type=int, default=12)
    sim.add_argument("--single", action="store_true", help="one event per message")
    sim.add_argument("--quiet", action="store_true")
    sim.set_defaults(run=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"funnelpulse: bad setting: {exc}", file=sys.stderr)
        return 2
    run: Callable[[Settings, argparse.Namespace], int] = args.run
    return run(settings, args)


if __name__ == "__main__":
    sys.exit(main())
