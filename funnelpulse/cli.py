"""The ``funnelpulse`` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .connectivity import client_errors, explain, kafka_round_trip, redis_ping
from .security import describe_kafka, kafka_client_kwargs, redact_url, redis_client_kwargs
from .settings import Settings, SettingsError
from .top import run_top, window_name

_N = TypeVar("_N", int, float)


def _check(settings: Settings, args: argparse.Namespace) -> int:
    """Round trip to Kafka and PING Redis, with the configured credentials and TLS,
    reporting each on its own line (secrets never printed)."""
    failures = 0
    s = settings
    probes: list[tuple[str, str, Coroutine[Any, Any, float]]] = [
        ("kafka", describe_kafka(s),
         kafka_round_trip(s.kafka_bootstrap_servers, kafka_client_kwargs(s))),
        ("redis", redact_url(s.redis_url), redis_ping(s.redis_url, redis_client_kwargs(s))),
    ]  # fmt: skip
    for name, target, probe in probes:
        with client_errors() as logged:
            try:
                took = asyncio.run(asyncio.wait_for(probe, timeout=args.timeout))
                print(f"{name:6} ok      {target}  ({took * 1000:.0f} ms)")
            except Exception as exc:
                failures += 1
                print(f"{name:6} FAILED  {target}  {explain(exc, logged, name)}")
    return 1 if failures else 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .worker import run_worker

    return run_worker(settings)


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
            client=kafka_client_kwargs(settings),
        )
    )
    print(f"\nsimulate: sent {sent:,} events", file=sys.stderr)
    return 0


def _top(settings: Settings, args: argparse.Namespace) -> int:
    return run_top(settings, args.window, args.interval, args.limit, args.once)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from .replay import Options, run_replay

    options = Options(args.file, args.batch, args.single, args.rate, args.quiet)
    return run_replay(settings, options)


def _at_least(kind: Callable[[str], _N], low: _N, inclusive: bool = True) -> Callable[[str], _N]:
    """An argparse ``type`` for a finite number with a lower bound."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            op = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"{text}: need a finite number {op} {low}")
        return value

    return parse


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
    positive = _at_least(float, 0.0, inclusive=False)
    top = commands.add_parser("top", help="live terminal table of the KPIs in Redis")
    top.add_argument("--window", type=window_name, default="5m", help="KPI window (default 5m)")
    top.add_argument("--interval", type=positive, default=1.0, help="seconds per frame")
    top.add_argument("--limit", type=_at_least(int, 0), default=20, help="campaign rows shown")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(run=_top)
    replay = commands.add_parser("replay", help="JSON Lines file of events → the input topics")
    replay.add_argument("file", metavar="FILE", help="one event object per line; - is stdin")
    replay.add_argument("--batch", type=_at_least(int, 1), default=100, help="events per message")
    replay.add_argument("--single", action="store_true", help="one event per message")
    replay.add_argument("--rate", type=positive, default=None, help="events per second")
    replay.add_argument("--quiet", action="store_true", help="no progress line")
    replay.set_defaults(run=_replay)
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
