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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnelpulse",
        description="Real-time marketing KPIs from Kafka. Settings come from the environment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="connectivity to Kafka and Redis")
    check.add_argument("--timeout", type=float, default=15.0, help="seconds per check")
    check.set_defaults(run=_check)
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
