"""The ``funnelpulse`` command: one entry point, one sub-command per job.

This is the first thing a new user runs, so it follows the conventions their other tools
follow: ``--version``, a description and the defaults in every ``--help``, durations with
units (``--duration 10m``, ``--interval 500ms``; a bare number is still seconds) through
the one parser in ``durations``, and one line on stderr, not a traceback, when the broker
is not there. Two traps: argparse runs ``type`` on a default only when it is a string, so
duration defaults are written ``"1s"`` (shown as such in ``--help``, parsed like user
input); and aiokafka logs why it could not connect before it raises a bare "Unable to
bootstrap", so a command asks the cluster for its metadata first (``kafka_metadata``,
which creates nothing) and reports that one failure with the logged reason.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias, TypeVar

from aiokafka.errors import KafkaError

from metrics.durations import parse_seconds
from streams.topics import TopicNames

from . import __version__
from .connectivity import (
    HEALTH_TOPIC,
    client_errors,
    explain,
    kafka_failure,
    kafka_metadata,
    kafka_round_trip,
    redis_ping,
)
from .credentials import redact_url
from .security import describe_kafka, kafka_client_kwargs, redis_client_kwargs
from .settings import Settings, SettingsError
from .top import run_top, window_name

_N = TypeVar("_N", int, float)
Run = Callable[[Settings, argparse.Namespace], int]
PREFLIGHT_TIMEOUT = 15.0  # seconds for a broker to answer a metadata request
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every default, except the ones that mean "off" (False, None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


# -- check ------------------------------------------------------------------------------------


async def _kafka_metadata(settings: Settings) -> str:
    """Brokers, topics and which input topics exist: read only."""
    started = time.monotonic()
    cluster = await kafka_metadata(settings.kafka_bootstrap_servers, kafka_client_kwargs(settings))
    inputs = set(TopicNames.from_settings(settings).inputs.values())
    present = len(inputs & cluster.topics)
    missing = "" if present == len(inputs) else " (the worker creates them)"
    return (
        f"{cluster.brokers} broker(s), {len(cluster.topics)} topics, "
        f"input topics {present} of {len(inputs)}{missing}, "
        f"{(time.monotonic() - started) * 1000:.0f} ms"
    )


async def _kafka_round_trip(settings: Settings) -> str:
    took = await kafka_round_trip(
        settings.kafka_bootstrap_servers, kafka_client_kwargs(settings), settings.replication
    )
    return f"produced and read back through {HEALTH_TOPIC}, {took * 1000:.0f} ms"


async def _redis_ping(settings: Settings) -> str:
    took = await redis_ping(settings.redis_url, redis_client_kwargs(settings))
    return f"PING {took * 1000:.0f} ms"


def _check(settings: Settings, args: argparse.Namespace) -> int:
    """Read Kafka's metadata (and, with --round-trip, produce and consume) and PING Redis,
    with the configured credentials and TLS, one line each (secrets never printed)."""
    s = settings
    probes: list[tuple[str, str, Coroutine[Any, Any, str]]] = [
        ("kafka", describe_kafka(s), _kafka_metadata(s)),
        ("redis", redact_url(s.redis_url), _redis_ping(s)),
    ]
    if args.round_trip:
        probes.insert(1, ("kafka", f"{HEALTH_TOPIC} round trip", _kafka_round_trip(s)))
    failures = 0
    for name, target, probe in probes:
        with client_errors() as logged:
            try:
                detail = asyncio.run(asyncio.wait_for(probe, timeout=args.timeout))
                print(f"{name:6} ok      {target}  ({detail})")
            except Exception as exc:
                failures += 1
                print(f"{name:6} FAILED  {target}  {explain(exc, logged, name)}")
    return 1 if failures else 0


# -- producing commands -----------------------------------------------------------------------


def _kafka_ready(settings: Settings, command: str) -> bool:
    """Whether Kafka answers, asked before producing anything; if not, one line says why."""
    probe = kafka_metadata(settings.kafka_bootstrap_servers, kafka_client_kwargs(settings))
    with client_errors() as logged:
        try:
            asyncio.run(asyncio.wait_for(probe, timeout=PREFLIGHT_TIMEOUT))
        except (KafkaError, OSError, TimeoutError) as exc:
            failure = kafka_failure(command, settings.kafka_bootstrap_servers, exc, logged)
            print(failure, file=sys.stderr)
            return False
    return True


class _Progress:
    """``simulate``'s progress line on stderr; keeps the count for an interrupted run."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.sent = quiet, 0

    def __call__(self, sent: int, elapsed: float) -> None:
        self.sent = sent
        if not self.quiet:
            rate = sent / max(elapsed, 1e-9)
            line = f"\rsimulate: {sent:,} events in {elapsed:,.0f} s ({rate:,.0f}/s)"
            print(line, end="", file=sys.stderr, flush=True)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from .simulator import simulate

    if not _kafka_ready(settings, "simulate"):
        return 1
    progress = _Progress(args.quiet)
    s = settings
    run = simulate(
        s.kafka_bootstrap_servers, TopicNames.from_settings(s).inputs, args.rate, args.seed,
        args.duration, args.single, args.campaigns, progress, client=kafka_client_kwargs(s),
    )  # fmt: skip
    try:
        sent = asyncio.run(run)
    except KafkaError as exc:
        print(f"\n{kafka_failure('simulate', s.kafka_bootstrap_servers, exc, ())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nsimulate: interrupted after {progress.sent:,} events", file=sys.stderr)
        return INTERRUPTED
    print(f"\nsimulate: sent {sent:,} events", file=sys.stderr)
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from .replay import Options, run_replay

    if not _kafka_ready(settings, "replay"):
        return 1
    return run_replay(settings, Options(args.file, args.batch, args.single, args.rate, args.quiet))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .malloc import reexec_env
    from .worker import run_worker

    env = reexec_env(settings.allocator, os.environ)
    if env is not None:  # the allocator is chosen at exec: once more, the same command
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)
    return run_worker(settings)


def _top(settings: Settings, args: argparse.Namespace) -> int:
    return run_top(settings, args.window, args.interval, args.limit, args.once)


# -- arguments --------------------------------------------------------------------------------


def _at_least(kind: Callable[[str], _N], low: _N, inclusive: bool = True) -> Callable[[str], _N]:
    """An argparse ``type`` for a finite number (or duration) with a lower bound."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError as exc:
            plain = kind is int or kind is float  # their messages are for programmers
            reason = f"not a {kind.__name__}: {text!r}" if plain else str(exc)
            raise argparse.ArgumentTypeError(reason) from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            op = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"{text}: need a finite number {op} {low}")
        return value

    return parse


positive = _at_least(float, 0.0, inclusive=False)
duration = _at_least(parse_seconds, 0.0, inclusive=False)  # "10m", "500ms", "90" (seconds)
DURATIONS = "DURATION: a number and a unit (500ms, 30s, 10m, 1h, 7d), or a bare number of seconds."

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _command(
    commands: Commands, name: str, summary: str, text: str, run: Run
) -> argparse.ArgumentParser:
    """A sub-command with its one-line summary (in ``funnelpulse --help``) and its
    description (in ``funnelpulse NAME --help``)."""
    parser = commands.add_parser(name, help=summary, description=text, formatter_class=_Help)
    parser.set_defaults(run=run)
    return parser


def _add_duration(
    parser: argparse.ArgumentParser, flag: str, default: str | None, text: str
) -> None:
    """A flag taking a DURATION; its parser's ``--help`` ends with the syntax."""
    parser.add_argument(flag, type=duration, default=default, metavar="DURATION", help=text)
    parser.epilog = DURATIONS


def _add_check(commands: Commands) -> None:
    check = _command(
        commands, "check", "connectivity to Kafka and Redis",
        "Connect to Kafka and Redis with the configured credentials and TLS; one line each. "
        "Kafka: reads the cluster's metadata (brokers, topics) and creates nothing. "
        "Exit code 1 if either fails.",
        _check,
    )  # fmt: skip
    _add_duration(check, "--timeout", "15s", "time allowed for each check")
    check.add_argument(
        "--round-trip",
        action="store_true",
        help=f"also produce one record and read it back through topic {HEALTH_TOPIC}, "
        "CREATING it if missing (1 partition, FUNNELPULSE_REPLICATION replicas)",
    )


def _add_worker(commands: Commands) -> None:
    _command(
        commands, "worker", "run the Faust worker (Ctrl-C/SIGTERM stops it)",
        "Create the topics if missing, count the events, publish the KPIs to Redis, "
        "Prometheus and the kpis topic, and serve HTTP. SIGTERM or Ctrl-C stop it "
        "gracefully (flush, commit).",
        _worker,
    )  # fmt: skip


def _add_simulate(commands: Commands) -> None:
    sim = _command(
        commands, "simulate", "realistic funnel traffic into the input topics",
        "Produce seeded, realistic funnel traffic (impressions to purchases, spend reports) "
        "into the input topics, batched per campaign. For demos and tests: never against "
        "production topics.",
        _simulate,
    )  # fmt: skip
    sim.add_argument("--rate", type=positive, default=500.0, help="events per second")
    sim.add_argument("--seed", type=int, default=42, help="random seed (same seed, same events)")
    _add_duration(sim, "--duration", None, "stop after this long; default: run until Ctrl-C")
    sim.add_argument("--campaigns", type=_at_least(int, 1), default=12, help="campaigns simulated")
    sim.add_argument("--single", action="store_true", help="one event per message, not batches")
    sim.add_argument("--quiet", action="store_true", help="no progress line")


def _add_top(commands: Commands) -> None:
    top = _command(
        commands, "top", "live terminal table of the KPIs in Redis",
        "Show one window's KPIs as the worker published them to Redis: all, channels, then "
        "campaigns by spend. Columns that do not fit the terminal are left out; on a "
        "terminal, breaches are red (NO_COLOR turns colour off).",
        _top,
    )  # fmt: skip
    top.add_argument(
        "--window", type=window_name, default="5m", help="KPI window, one of FUNNELPULSE_WINDOWS"
    )
    _add_duration(top, "--interval", "1s", "time between frames")
    top.add_argument("--limit", type=_at_least(int, 0), default=20, help="campaign rows shown")
    top.add_argument("--once", action="store_true", help="print one frame and exit")


def _add_replay(commands: Commands) -> None:
    replay = _command(
        commands, "replay", "JSON Lines file of events → the input topics",
        "Send a JSON Lines file (one event object per line, with its type) to the input "
        "topics, as live producers would: batched per campaign, byte for byte. Bad lines are "
        "reported with their number and skipped.",
        _replay,
    )  # fmt: skip
    replay.add_argument("file", metavar="FILE", help="one event object per line; - is stdin")
    replay.add_argument("--batch", type=_at_least(int, 1), default=100, help="events per message")
    replay.add_argument("--single", action="store_true", help="one event per message")
    replay.add_argument(
        "--rate", type=positive, help="events per second; default: as fast as possible"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnelpulse",
        description="Real-time marketing KPIs from Kafka. Settings come from the environment "
        "(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, FUNNELPULSE_*: see the README).",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_check, _add_worker, _add_simulate, _add_top, _add_replay):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"funnelpulse: bad setting: {exc}", file=sys.stderr)
        return 2
    run: Run = args.run
    try:
        return run(settings, args)
    except KeyboardInterrupt:  # Ctrl-C between two of a command's own handlers
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
