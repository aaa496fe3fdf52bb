"""The ``funnelpulse`` command as a user meets it: ``--version``, durations with units,
``--help`` with descriptions and defaults, ``top`` within an 80-column terminal, ``check``
that creates nothing, and one line (no traceback) when the broker is not there."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

import funnelpulse
from funnelpulse import cli, connectivity
from funnelpulse.connectivity import Cluster, kafka_failure, kafka_metadata
from funnelpulse.settings import Settings
from funnelpulse.top import (
    ABSENT,
    RED,
    TABLE_WIDTH,
    Row,
    Screen,
    breached,
    layout,
    read_alerting,
    render,
)
from metrics.alerts import CplSpikeRule
from metrics.durations import parse_seconds
from streams.topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COMMANDS = ("check", "worker", "simulate", "top", "replay")


def visible(line: str) -> str:
    return ANSI.sub("", line)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    choices: dict[str, argparse.ArgumentParser] = action.choices
    return choices


# -- --version, --help ------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    expected = importlib.metadata.version("funnelpulse")
    assert capsys.readouterr().out.strip() == f"funnelpulse {expected}"
    assert funnelpulse.__version__ == expected


def test_every_subcommand_has_a_summary_and_a_description() -> None:
    assert set(subcommands()) == set(COMMANDS)
    overview = cli.build_parser().format_help()
    for name, parser in subcommands().items():
        assert parser.description and len(parser.description) > 40, name
        summary = next(line for line in overview.splitlines() if line.strip().startswith(name))
        assert len(summary.split()) > 2, f"{name}: no summary in funnelpulse --help"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("top", ["(default: 1s)", "(default: 5m)", "(default: 20)", "DURATION: a number"]),
        ("simulate", ["(default: 500.0)", "(default: 42)", "(default: 12)"]),
        ("check", ["(default: 15s)", "CREATING it"]),
        ("replay", ["(default: 100)"]),
    ],
)
def test_help_shows_the_defaults_but_not_the_off_ones(command: str, shown: list[str]) -> None:
    text = " ".join(subcommands()[command].format_help().split())
    for fragment in shown:
        assert fragment in text, f"{command} --help lacks {fragment!r}"
    assert "(default: None)" not in text and "(default: False)" not in text


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600.0),
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 2h ", 7200.0),
        ("90", 90.0),  # plain seconds, as the flags took them before units
        ("0.25", 0.25),
    ],
)
def test_durations_with_units_or_plain_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds
    assert cli.build_parser().parse_args(["simulate", "--duration", text]).duration == seconds
    assert cli.build_parser().parse_args(["top", "--interval", text]).interval == seconds
    assert cli.build_parser().parse_args(["check", "--timeout", text]).timeout == seconds


@pytest.mark.parametrize("text", ["", "10x", "-1", "-5s", "1e3", "nan", "inf", "1 m s", "m"])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_seconds(text)


@pytest.mark.parametrize("text", ["0", "0s", "10x"])
def test_a_bad_duration_flag_is_a_usage_error(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["simulate", "--duration", text])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("funnelpulse simulate: error: argument --duration: ")
    assert text in error


def test_duration_defaults_are_parsed_like_user_input() -> None:
    args = cli.build_parser().parse_args(["top"])
    assert (args.interval, args.window) == (1.0, "5m")
    assert cli.build_parser().parse_args(["check"]).timeout == 15.0
    assert cli.build_parser().parse_args(["simulate"]).duration is None
    assert cli.build_parser().parse_args(["top", "--window", "900"]).window == "15m"


# -- top in a terminal ------------------------------------------------------------------------


def _busy_rows() -> list[Row]:
    rows: list[Row] = [
        {"scope": "all", "impressions": "123456789", "clicks": "4000000", "ctr": "0.0324",
         "signups": "150000", "conversion_rate": "0.0375", "mql_to_sql": "0.5",
         "spend": "98765432.5", "cpl": "658.43", "cac": "1017.5", "roas": "3.2",
         "updated_at": str(NOW - 3)},
        {"scope": "channel:paid_search", "clicks": "400", "spend": "100", "signups": "0"},
    ]  # fmt: skip
    rows += [
        {"scope": f"campaign:{'spring-sale-' * 4}{i}", "clicks": "12", "spend": str(i)}
        for i in range(30)
    ]
    return rows


@pytest.mark.parametrize("colour", [False, True])
def test_top_fits_80_columns(colour: bool) -> None:
    frame = render(_busy_rows(), "15m", NOW, width=80, colour=colour, alerting={"all"})
    lines = [visible(line) for line in frame.splitlines()]
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, "\n".join(too_long)
    header = lines[2].split()
    assert header[0] == "scope" and {"spend", "CPL", "clicks", "signups"} <= set(header)
    assert "window 15m" in lines[0] and "3 s ago" in lines[0]
    assert "more campaign(s)" in frame


@pytest.mark.parametrize("width", [8, 20, 40, 60, 79, 100, 120, TABLE_WIDTH - 1, 200])
def test_top_never_wraps_whatever_the_width(width: int) -> None:
    frame = render(_busy_rows(), "24h", NOW, width=width, colour=True, alerting={"all"})
    assert max(len(visible(line)) for line in frame.splitlines()) <= width
    assert layout(width).width == min(width, TABLE_WIDTH)


def test_a_pipe_gets_every_column(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    with open(os.devnull, "w") as null:
        screen = Screen(null, sys.stderr)
        assert screen.width() is None and not screen.colour
        assert layout(None).width == TABLE_WIDTH
        monkeypatch.setenv("COLUMNS", "80")
        assert screen.width() == 80


def test_breaches_are_red_only_when_asked() -> None:
    spent_no_leads = {"scope": "campaign:broken-form", "clicks": "900", "spend": "250"}
    spiking = {"scope": "campaign:spike", "spend": "500", "signups": "2", "cpl": "250",
               "cac": "100"}  # fmt: skip
    healthy = {"scope": "campaign:fine", "spend": "0", "signups": "3"}
    assert breached(spent_no_leads) == {"cpl", "cac"}
    assert breached(spiking, {"campaign:spike"}) == {"cpl"}
    assert breached(healthy) == set()
    rows: list[Row] = [spent_no_leads, spiking, healthy]
    plain = render(rows, "15m", NOW, width=80)
    assert "\x1b" not in plain
    coloured = render(rows, "15m", NOW, width=80, colour=True, alerting={"campaign:spike"})
    red_lines = {line.split()[0] for line in coloured.splitlines() if RED in line}
    assert red_lines == {"campaign:broken-form", "campaign:spike"}
    assert f"{RED}{ABSENT.rjust(10)}" in coloured  # the missing CPL, padded inside the colour


class _Pipe:
    def __init__(self, data: Mapping[str, dict[str, str]]) -> None:
        self.data, self.keys = data, list[str]()

    async def __aenter__(self) -> _Pipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def hgetall(self, key: str) -> None:
        self.keys.append(key)

    async def execute(self) -> list[dict[str, str]]:
        return [self.data.get(key, {}) for key in self.keys]


class _Redis:
    def __init__(self, data: Mapping[str, dict[str, str]]) -> None:
        self.data = data

    def pipeline(self, transaction: bool) -> _Pipe:
        return _Pipe(self.data)


async def test_top_reads_the_cpl_spike_condition_from_both_windows() -> None:
    rule = CplSpikeRule(short_window="15m", long_window="24h", min_leads=20, min_spend=50)
    data = {
        "p:kpi:15m:campaign:spike": {"spend": "600.0", "signups": "2"},  # CPL 300
        "p:kpi:24h:campaign:spike": {"spend": "2000.0", "signups": "40"},  # baseline 50
        "p:kpi:15m:campaign:calm": {"spend": "100.0", "signups": "2"},
        "p:kpi:24h:campaign:calm": {"spend": "2000.0", "signups": "40"},
        "p:kpi:15m:channel:email": {"spend": "600.0", "signups": "0"},
        "p:kpi:24h:channel:email": {"spend": "600.0", "signups": "40"},
        "p:kpi:15m:campaign:new": {"spend": "600.0", "signups": "0"},  # no baseline yet
    }
    scopes = ["campaign:spike", "campaign:calm", "channel:email", "campaign:new"]
    client: Any = _Redis(data)
    assert await read_alerting(client, "p:", rule, scopes) == {"campaign:spike"}
    assert await read_alerting(client, "p:", rule, ["channel:email"]) == set()


# -- check ------------------------------------------------------------------------------------


class _Admin:
    """A stand-in AIOKafkaAdminClient that records what is asked of it."""

    calls: list[str] = []

    def __init__(self, **options: object) -> None:
        self.calls.append("init")

    def __getattr__(self, name: str) -> Any:
        async def call(*args: object, **kwargs: object) -> Any:
            self.calls.append(name)
            if name == "describe_cluster":
                return {"brokers": [{"node_id": 1}, {"node_id": 2}], "controller_id": 1}
            return ["mkt.clicks", "other"] if name == "list_topics" else None

        return call


async def test_kafka_metadata_only_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    _Admin.calls = []
    monkeypatch.setattr(connectivity, "AIOKafkaAdminClient", _Admin)
    cluster = await kafka_metadata("127.0.0.1:9092")
    assert cluster == Cluster(2, frozenset({"mkt.clicks", "other"}))
    assert set(_Admin.calls) == {"init", "start", "describe_cluster", "list_topics", "close"}


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``check`` against a cluster with every input topic; the list gets the replication
    factor of each round trip (there must be none unless asked)."""
    trips: list[int] = []
    topics = frozenset(TopicNames.from_settings(Settings()).inputs.values())

    async def metadata(bootstrap: str, client: object) -> Cluster:
        return Cluster(3, topics | {"__consumer_offsets"})

    async def round_trip(bootstrap: str, client: object, replication: int) -> float:
        trips.append(replication)
        return 0.01

    async def ping(url: str, options: object) -> float:
        return 0.001

    monkeypatch.setattr(cli, "kafka_metadata", metadata)
    monkeypatch.setattr(cli, "kafka_round_trip", round_trip)
    monkeypatch.setattr(cli, "redis_ping", ping)
    return trips


def test_check_reads_metadata_and_creates_nothing(
    fake_kafka: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli.build_parser().parse_args(["check"])
    assert cli._check(Settings(), args) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith("kafka  ok      127.0.0.1:9092 PLAINTEXT")
    assert "3 broker(s), 8 topics, input topics 7 of 7" in out[0]
    assert out[1].startswith("redis  ok      redis://127.0.0.1:6379/0")
    assert fake_kafka == []


def test_check_round_trip_is_opt_in(
    fake_kafka: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli.build_parser().parse_args(["check", "--round-trip"])
    assert cli._check(Settings(replication=3), args) == 0
    assert fake_kafka == [3]
    assert f"produced and read back through {connectivity.HEALTH_TOPIC}" in capsys.readouterr().out


# -- one line when Kafka is not there ---------------------------------------------------------


def test_unreachable_kafka_is_one_line_with_a_hint() -> None:
    exc = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9999, 2)]")
    logged = ['Unable connect to "127.0.0.1:9999": [Errno 111]\nConnect call failed']
    line = kafka_failure("simulate", "127.0.0.1:9999", exc, logged)
    assert line.startswith("funnelpulse simulate: cannot reach Kafka at 127.0.0.1:9999 (")
    assert line.endswith("): is it running? set KAFKA_BOOTSTRAP_SERVERS")
    assert "\n" not in line


def test_a_broker_that_answers_no_gets_its_reason_not_is_it_running() -> None:
    exc = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9093, 2)]")
    logged = ["SaslAuthenticationFailed: [SASL authentication failed]"]
    line = kafka_failure("replay", "127.0.0.1:9093", exc, logged)
    assert line.startswith("funnelpulse replay: cannot use Kafka at 127.0.0.1:9093: ")
    assert "check FUNNELPULSE_KAFKA_SASL_USERNAME" in line
    assert "is it running" not in line


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def _run(*args: str, port: int, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("FUNNELPULSE_", "KAFKA_", "REDIS_"))}  # fmt: skip
    env = {**clean, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    command = [sys.executable, "-m", "funnelpulse.cli", *args]
    return subprocess.run(
        command, env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("simulate", "--duration", "5s"), ""),
        (("replay", "-"), '{"type": "click", "event_id": "e1", "campaign_id": "c"}\n'),
    ],
    ids=["simulate", "replay"],
)
def test_a_closed_port_is_one_line_not_a_traceback(args: tuple[str, ...], stdin: str) -> None:
    port = _closed_port()
    proc = _run(*args, port=port, stdin=stdin)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "Unclosed" not in output, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"funnelpulse {args[0]}: cannot reach Kafka at 127.0.0.1:{port} (")
    assert output.endswith("is it running? set KAFKA_BOOTSTRAP_SERVERS"), output
