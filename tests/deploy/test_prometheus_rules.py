"""Prometheus and Alertmanager files are checked by their own tools, and the alert rules by
``promtool test rules`` unit tests: every alerting rule needs a firing and a quiet case.

Run by ``make test`` (``scripts/ensure-tools.sh`` installs promtool and amtool from
Debian's ``prometheus`` and ``prometheus-alertmanager`` packages).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from metrics.prometheus import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
ALERT_RULES = RULES_DIR / "funnelpulse-alerts.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
MONITORING_DOC = ROOT / "docs" / "MONITORING.md"

pytestmark = pytest.mark.seconds(31)  # promtool evaluates 26 h of rules
RUNBOOK = "README.md#monitoring-and-alerts"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/ensure-tools.sh (make test does)"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(result.args)}\n{result.stdout}\n{result.stderr}"


def relative(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load(ALERT_RULES)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def all_rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in load(path)["groups"] for rule in group["rules"]
    ]


# -- the tools -------------------------------------------------------------------------


def test_rule_files_and_tests_exist() -> None:
    assert ALERT_RULES in RULE_FILES
    assert RULES_DIR / "funnelpulse-recording.yml" in RULE_FILES
    assert RULE_TESTS, "no promtool test files in deploy/prometheus/tests"


def test_prometheus_config_is_valid() -> None:
    # Also loads rule_files (rules/*.yml, relative to the config file) and checks them.
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, show(result)
    for path in RULE_FILES:
        assert path.name in result.stdout, (
            f"{path.name} not loaded by prometheus.yml\n{show(result)}"
        )


def test_rules_are_valid() -> None:
    result = run(tool("promtool"), "check", "rules", "--lint-fatal", *relative(RULE_FILES))
    assert result.returncode == 0, show(result)


def test_rule_unit_tests_pass() -> None:
    # one promtool per file, side by side: the 27 h CPL scenario alone takes ~20 s
    promtool = tool("promtool")
    running = [
        subprocess.Popen(
            [promtool, "test", "rules", path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in relative(RULE_TESTS)
    ]
    for proc in running:
        out, err = proc.communicate(timeout=600)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert result.returncode == 0, show(result)


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, show(result)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["severity=critical", "alertname=MarketingSpendWithoutLeads", "campaign=spring"],
            "pager-webhook",
        ),
        (["severity=critical", "alertname=FunnelpulseWorkerDown"], "pager-webhook"),
        (["severity=warning", "alertname=MarketingCPLSpike", "campaign=spring"], "team-webhook"),
        (["severity=info", "alertname=MarketingInStreamCPLSpike"], "null"),
        (["alertname=SomethingUnlabelled"], "team-webhook"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG.relative_to(ROOT)}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, show(result)


def test_every_severity_has_a_route() -> None:
    config = load(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routed = {matcher for route in config["route"]["routes"] for matcher in route["matchers"]}
    for rule in alert_rules():
        assert f'severity="{rule["labels"]["severity"]}"' in routed, rule["alert"]
    assert {"pager-webhook", "team-webhook", "null"} <= receivers
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"].startswith("http://alert-webhook:5001/"), hook


# -- the alert rules -------------------------------------------------------------------


def test_alerts_carry_severity_and_runbook() -> None:
    groups = load(ALERT_RULES)["groups"]
    assert [group["name"] for group in groups] == ["funnelpulse"]
    rules = alert_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        assert annotations.get("runbook") == RUNBOOK, name


def test_alerts_never_clamp_denominators() -> None:
    for rule in all_rules():
        assert "clamp_min" not in rule["expr"], rule.get("alert") or rule.get("record")


def firing_and_quiet_cases() -> tuple[dict[str, list[dict[str, str]]], set[str]]:
    """alertname → exp_labels of every expected firing alert; alertnames tested quiet."""
    firing: dict[str, list[dict[str, str]]] = {}
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = load(path)
        for rule_file in doc.get("rule_files", []):
            assert (path.parent / rule_file).resolve() in RULE_FILES, (path.name, rule_file)
        for case in doc.get("tests", []):
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts")
                if expected:
                    labels = [
                        {k: str(v) for k, v in (a.get("exp_labels") or {}).items()}
                        for a in expected
                    ]
                    firing.setdefault(check["alertname"], []).extend(labels)
                elif expected == [] or "exp_alerts" not in check:
                    quiet.add(check["alertname"])
    return firing, quiet


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing, quiet = firing_and_quiet_cases()
    problems = []
    for rule in alert_rules():
        name = rule["alert"]
        # Rules sharing a name (scope=all / scope=campaign, ...) differ by their static
        # labels: each must be seen firing on its own.
        static = {k: str(v) for k, v in rule.get("labels", {}).items()}
        if not any(static.items() <= labels.items() for labels in firing.get(name, [])):
            problems.append(f"{name} {static}: no firing case (exp_alerts with these labels)")
        if name not in quiet:
            problems.append(f"{name}: no not-firing case (exp_alerts: [])")
    assert not problems, "\n".join(problems)


# -- the series the rules use ----------------------------------------------------------

_OWN_SERIES = re.compile(r"(?<![\w:])((?:marketing|funnelpulse)_\w+)(?![\w:])")
_RECORDED = re.compile(r"(?<![\w:])([a-z_]+:\w+:\w+)(?![\w:])")
_RULE_NAME = re.compile(r"[a-z]+(?:_[a-z]+)*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")


def exported_series() -> set[str]:
    """Every series name the worker can put on /metrics, from its own registry."""
    registry = CollectorRegistry()
    Metrics(registry, max_campaigns=10)
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }


def test_rules_use_only_series_the_worker_exports() -> None:
    exported = exported_series()
    recorded = {rule["record"] for rule in all_rules() if "record" in rule}
    problems = []
    for rule in all_rules():
        name = rule.get("record") or rule["alert"]
        expr = rule["expr"]
        for series in set(_OWN_SERIES.findall(expr)) - exported:
            problems.append(f"{name}: {series} is not exported by the worker")
        for series in set(_RECORDED.findall(expr)) - recorded:
            problems.append(f"{name}: {series} is not a recording rule")
    assert not problems, "\n".join(problems)


def test_recording_rule_names_follow_the_convention() -> None:
    for rule in all_rules():
        if "record" in rule:
            assert _RULE_NAME.fullmatch(rule["record"]), rule["record"]


# -- the operator docs -----------------------------------------------------------------


def test_every_alert_is_in_the_monitoring_docs() -> None:
    text = MONITORING_DOC.read_text()
    missing = sorted({rule["alert"] for rule in alert_rules()} - set(re.findall(r"\w+", text)))
    assert not missing, f"alerts without an entry in docs/MONITORING.md: {missing}"
