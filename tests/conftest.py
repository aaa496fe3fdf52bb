"""Run-wide hooks: the test run's identity, and stopping what the run started.

Under pytest-xdist the session fixtures run once per worker process, so "stop at the end
of the session" would stop the stack while the other process still uses it. The
controller (the one process that is not an xdist worker) names the run before the workers
start; they inherit the name, and the controller stops the stack last.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from pathlib import Path

import pluggy
import pytest

from tests.integration.conftest import (
    FAILURE_LOGS,
    REPORT,
    TEST_RUN_ENV,
    TEST_RUN_PID_ENV,
    stop_started_stack,
)

_REPORT_START: list[int] = []  # the size of the figures report when this run began
_FAILURE_LOGS_START: list[int] = []  # and of the failure logs
LOG_TAIL_LINES = 40
LOG_NOISE = ("is overlapping",)  # Faust's timer warnings: frequent, never the cause


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        os.environ[TEST_RUN_ENV] = uuid.uuid4().hex
        os.environ[TEST_RUN_PID_ENV] = str(os.getpid())
        _REPORT_START.append(REPORT.stat().st_size if REPORT.exists() else 0)
        _FAILURE_LOGS_START.append(FAILURE_LOGS.stat().st_size if FAILURE_LOGS.exists() else 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (their ``seconds`` mark): ``--dist loadfile`` hands files out
    in collection order, and a minute-long fault test picked up last leaves the other
    process idle at the end (longest-processing-time-first scheduling)."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("seconds")
        return float(mark.args[0]) if mark else 0.0

    longest = {item.path: seconds(item) for item in items}
    items.sort(key=lambda item: -longest[item.path])  # stable: a file keeps its order


def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_controller(config):
        stop_started_stack(os.environ[TEST_RUN_ENV])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """A failed test's process logs (``*.log`` in its ``tmp_path``: workers, Prometheus,
    the simulator) are kept for the run's summary: a worker that died mid-test shows why."""
    outcome = yield
    report = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp, Path):
        return
    tails = [f"--- {item.nodeid}"]
    for log in sorted(tmp.glob("*.log")):
        lines = [
            line[:400]
            for line in log.read_text(errors="replace").splitlines()
            if line.strip() and not any(noise in line for noise in LOG_NOISE)
        ]
        tails += [f"- {log.name} (last {LOG_TAIL_LINES} of {len(lines)} lines)"]
        tails += lines[-LOG_TAIL_LINES:]
    FAILURE_LOGS.parent.mkdir(exist_ok=True)
    with FAILURE_LOGS.open("a") as out:
        out.write("\n".join(tails) + "\n")


def _written_since(path: Path, start: list[int]) -> list[str]:
    """The lines this run appended to ``path`` (any process of the run may write)."""
    if not start or not path.exists():
        return []
    with path.open(errors="replace") as written:
        written.seek(start[0])
        return written.read().splitlines()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the fault and hostile-input tests of this run measured, then the logs of
    the processes of the tests that failed (last: CI shows the end of the output)."""
    for title, lines in (
        ("measured figures", _written_since(REPORT, _REPORT_START)),
        ("logs of failed tests", _written_since(FAILURE_LOGS, _FAILURE_LOGS_START)),
    ):
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
