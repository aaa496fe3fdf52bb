"""The generated Grafana dashboard against a real Prometheus scraping a real worker.

A worker is fed by the simulator (plus a dead letter, a duplicate and a short Redis
outage, so the error series exist too) while Debian's ``prometheus`` binary scrapes it
every second, with whatever rule files ``deploy/prometheus/rules/*.yml`` hold at run time.
Then every panel query of the dashboard ``funnelpulse/dashboard.py`` generates for the worker's
settings (collapsed rows included; tests/unit/test_dashboard_json.py checks that the
committed file is that output) and every recording rule runs as an instant query, with
the template variables filled in as Grafana does, and must return data: a query that is
valid but empty is a panel that shows "No data". The ``$campaign`` variable is rendered
from its own query, so a campaign panel is checked with the campaigns of the channels
chosen, the way Grafana expands "All" without an ``allValue``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from funnelpulse.dashboard import dashboard as generate
from funnelpulse.dashboard import default_options

from .conftest import ROOT, Stack
from .processes import die_with_parent, free_port
from .worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.seconds(42)]

RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
SIMULATE_SECONDS = 20
SIMULATE = f"-m funnelpulse.cli simulate --rate 400 --duration {SIMULATE_SECONDS} --quiet".split()
REDIS_ARGS = ["--save", "", "--appendonly", "no", "--dir"]
# Two renderings of the template variables: the defaults (All) and a narrower choice of
# window and channels; $campaign is then "All" of what its own query finds for $channel.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
CHOICES = (
    {"window": "1h", "channel": [], **BUILTINS},  # [] = All: the variable's allValue
    {"window": "5m", "channel": ["email", "paid_search"], **BUILTINS},
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
# Grafana's Prometheus datasource escapes these in a multi-value variable, with two
# backslashes (one is eaten by the PromQL string literal).
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def render(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation, for the variables the dashboard uses."""

    def substitute(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name.isdigit():  # "$1" in a label_replace() replacement, not a variable
            return match.group(0)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(substitute, expr)


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana's Prometheus datasource interpolates it."""
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every target of every panel, rows included."""
    return [
        (f"{panel.get('title', '?')} / {target.get('refId', '?')}", target["expr"])
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml")) if RULES_DIR.is_dir() else []


def rules(paths: list[Path], kind: str) -> list[tuple[str, str]]:
    """(rule name, expr) of every ``record`` or ``alert`` rule in the rule files."""
    found = []
    for path in paths:
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if kind in rule:
                    found.append((f"{path.name}: {rule[kind]}", str(rule["expr"])))
    return found


class Prometheus:
    def __init__(self, tmp: Path, target: str, rule_paths: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path.resolve()) for path in rule_paths],
            "scrape_configs": [
                {
                    "job_name": "funnelpulse",
                    "metrics_path": "/metrics",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        self.config_path = tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.args = [
            PROMETHEUS,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.tail()}")

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def values(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def label_values(self, label: str, selector: str) -> list[str]:
        response = httpx.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", (selector, body)
        return list(body["data"])

    def wait_for(self, expr: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.values(expr):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what}: {expr} still empty after {timeout}s\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _label_query(definition: str) -> tuple[str, str]:
    """``label_values(selector, label)`` → (selector, label)."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", definition)
    assert match, f"not a label_values() query: {definition!r}"
    return match.group(1), match.group(2)


def campaigns_for(
    variables: dict[str, dict[str, Any]], prometheus: Prometheus, values: dict[str, str]
) -> list[str]:
    """What the ``$campaign`` variable's own query finds for these values of ``$channel``."""
    selector, label = _label_query(render(variables["campaign"]["definition"], values))
    return prometheus.label_values(label, selector)


def resolve(
    variables: dict[str, dict[str, Any]], prometheus: Prometheus, choice: dict[str, Any]
) -> dict[str, str]:
    """Every template variable for one ``choice``, as Grafana interpolates it: ``$channel``
    is its ``allValue`` when nothing is chosen; ``$campaign`` is "All" of what its own query
    finds for that ``$channel`` (it has no ``allValue``)."""
    chosen = choice["channel"]
    channel = grafana_regex(chosen) if chosen else variables["channel"]["allValue"]
    values = {**choice, "channel": channel}
    campaigns = campaigns_for(variables, prometheus, values)
    assert campaigns, f"$campaign is empty for channels {chosen or 'All'}"
    return {**values, "campaign": grafana_regex(campaigns)}


def _count(result: dict[str, Any]) -> int:
    data = result.get("data", {}).get("result", [])
    return len(data) if isinstance(data, list) else 1


class RedisServer:
    """A private redis-server, so the test can take Redis away without touching the stack's."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing (make up installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *REDIS_ARGS, str(self.dir)],
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"redis-server on {self.port} not up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def _produce_faults(bootstrap: str, namespace: str) -> None:
    """One message that cannot be parsed (a dead letter) and one click sent twice (a duplicate),
    so the dead-letter and duplicate series exist as they would in production."""
    click = {
        "event_id": "dashboard-duplicate-click",
        "ts": round(time.time(), 3),
        "campaign_id": "email-000",
        "channel": "email",
        "user_id": "dashboard-user",
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        topic = f"{namespace}.clicks"
        await producer.send(topic, b"{not json", key=b"email-000")
        for _ in range(2):
            await producer.send(topic, orjson.dumps(click), key=b"email-000")
        await producer.flush()
    finally:
        await producer.stop()


def _wait_metric(worker: Worker, name: str, timeout: float) -> None:
    """Waits for a series on the worker's /metrics; a worker that died says so, with its
    exit code and log, instead of a bare "connection refused"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        try:
            text = httpx.get(f"{worker.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            text = ""
        if any(line.startswith(name) for line in text.splitlines()):
            return
        time.sleep(0.3)
    raise TimeoutError(f"{name} never appeared on {worker.url}/metrics\n{worker.tail()}")


def test_every_dashboard_query_returns_data(stack: Stack, namespace: str, tmp_path: Path) -> None:
    assert Path(PROMETHEUS).exists(), f"{PROMETHEUS} is missing (Debian package `prometheus`)"
    options = default_options()  # the settings the worker below runs with
    dashboard = generate(options)
    queries = panel_queries(dashboard)
    assert queries, "the dashboard has no queries"
    annotations = [
        (f"annotation {a.get('name')}", a["expr"])
        for a in dashboard.get("annotations", {}).get("list", [])
        if a.get("expr")
    ]
    # A snapshot of the rule files, so Prometheus loads exactly the rules checked below even
    # if someone edits deploy/prometheus/rules meanwhile.
    (tmp_path / "rules").mkdir()
    rule_paths = [Path(shutil.copy(path, tmp_path / "rules")) for path in rule_files()]
    recording = rules(rule_paths, "record")
    alerting = rules(rule_paths, "alert")

    redis = RedisServer(tmp_path)
    worker = Worker(stack, namespace, tmp_path, REDIS_URL=redis.url,
                    FUNNELPULSE_WINDOWS=",".join(options.windows))  # fmt: skip
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{worker.port}", rule_paths)
    simulator: subprocess.Popen[bytes] | None = None
    try:
        redis.start()
        worker.start_ready()
        prometheus.start()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "FUNNELPULSE_TOPIC_PREFIX": f"{namespace}.",
        }
        with (tmp_path / "simulate.log").open("ab") as log:
            simulator = subprocess.Popen(
                [sys.executable, *SIMULATE],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        # Mid-run faults, as production sees them: a dead letter, a duplicate, and a short
        # Redis outage (publish failures, redis_up 0, then a republish once it is back).
        asyncio.run(_produce_faults(stack.bootstrap, namespace))
        time.sleep(4)
        redis.stop()
        _wait_metric(worker, "funnelpulse_publish_failures_total{", 20)
        redis.start()
        assert simulator.wait(SIMULATE_SECONDS + 40) == 0, (tmp_path / "simulate.log").read_text()

        # Scraped a few more times after the last publish, with every series the panels use.
        time.sleep(2)
        for expr, what in (
            ('count_over_time(up{job="funnelpulse"}[1m]) >= 10', "not enough scrapes"),
            ("funnelpulse_redis_up == 1", "Redis publishing not back"),
            ('marketing_cpl{window="24h",scope="campaign"}', "no KPI gauges"),
            ("marketing_cost_per_opportunity", "no opportunities yet"),
            ("marketing_events_rejected_total", "no dead letter"),
            ("marketing_events_duplicate_total", "no duplicate"),
        ):
            prometheus.wait_for(expr, 20, what)

        # The template variables' own queries find values, including the channels used below;
        # $campaign follows $channel; every configured window has KPI gauges.
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        selector, label = _label_query(variables["channel"]["definition"])
        assert {"email", "paid_search"} <= set(prometheus.label_values(label, selector))
        value_sets = [resolve(variables, prometheus, choice) for choice in CHOICES]
        every, chosen = (set(campaigns_for(variables, prometheus, v)) for v in value_sets)
        assert chosen < every, f"$campaign does not follow $channel: {chosen} vs {every}"
        windows = [option["value"] for option in variables["window"]["options"]]
        assert windows == list(options.windows)
        for window in windows:
            prometheus.wait_for(
                f'count({{__name__=~"marketing_.+",window="{window}"}})', 10, window
            )

        failures: list[str] = []
        counts: dict[str, list[int]] = {}

        def check(name: str, expr: str, values: dict[str, str], need_data: bool = True) -> None:
            promql = render(expr, values)
            result = prometheus.query(promql)
            where = f"{name} [{values['window']}]" if values else name
            if result.get("status") != "success":
                failures.append(f"{where}: {promql} → {result}")
            elif need_data and _count(result) == 0:
                failures.append(f"{where}: {promql} → empty")
            counts.setdefault(f"{name}: {expr}", []).append(_count(result))

        # Panels and annotations once per variable set; rule expressions use no variables.
        for values in value_sets:
            for name, expr in queries:
                check(name, expr, values)
            # Annotations (alert state) may rightly be empty, but must be valid PromQL.
            for name, expr in annotations:
                check(name, expr, values, need_data=False)
        for name, expr in recording:
            check(name, expr, {})
        for name, expr in alerting:  # none should fire on this traffic; valid PromQL is enough
            check(name, expr, {}, need_data=False)
        print("\nseries per query:")
        for name, seen in counts.items():
            print(f"  {seen} {' '.join(name.split())}")

        # Every rule file loaded, and no rule failed to evaluate.
        groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        missing = {p.name for p in rule_paths} - {Path(g["file"]).name for g in groups}
        assert not missing, f"rule files not loaded: {missing}\n{prometheus.tail()}"
        for group in groups:
            for rule in group["rules"]:
                if rule.get("health") == "err":
                    failures.append(f"rule {rule['name']}: {rule.get('lastError')}")

        assert not failures, f"{len(failures)} queries failed:\n" + "\n".join(failures)
    finally:
        if simulator is not None and simulator.poll() is None:
            simulator.kill()
            simulator.wait()
        prometheus.stop()
        if worker.proc is not None:
            worker.stop()
        redis.stop()
