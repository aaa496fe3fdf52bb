"""Run-wide hooks: the test run's identity, and stopping what the run started.

Under pytest-xdist the session fixtures run once per worker process, so "stop at the end
of the session" would stop the stack while the other process still uses it. The
controller (the one process that is not an xdist worker) names the run before the workers
start; they inherit the name, and the controller stops the stack last.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.integration.conftest import REPORT, TEST_RUN_ENV, TEST_RUN_PID_ENV, stop_started_stack

_REPORT_START: list[int] = []  # the size of the figures report when this run began


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        os.environ[TEST_RUN_ENV] = uuid.uuid4().hex
        os.environ[TEST_RUN_PID_ENV] = str(os.getpid())
        _REPORT_START.append(REPORT.stat().st_size if REPORT.exists() else 0)


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the fault and hostile-input tests of this run measured (written by
    whichever process)."""
    if not _REPORT_START or not REPORT.exists():
        return
    with REPORT.open() as report:
        report.seek(_REPORT_START[0])
        lines = report.read().splitlines()
    if lines:
        terminalreporter.section("measured figures")
        for line in lines:
            terminalreporter.write_line(line)
