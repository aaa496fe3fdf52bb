"""Fixtures of the fault tests: the integration stack, plus a scale and a figures report.

``FUNNELPULSE_FAULTS=full`` (what ``make test-faults`` sets) runs the sizes the reliability
issue asks for (>= 200,000 events, >= 20 kills); without it the same tests run reduced, so
that ``make test`` can afford them. Every test adds the figures it measured to a summary
printed at the end of the run, a line per fault that can be quoted as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import namespace, redis, stack

__all__ = ["namespace", "redis", "stack"]

FIGURES: list[str] = []
REPORT = Path(__file__).resolve().parents[2] / ".stack" / "faults-figures.txt"


@dataclass(frozen=True)
class Scale:
    full: bool
    events: int  # scenario size of the kill -9 test (other tests use a fraction)
    kills: int

    @classmethod
    def from_env(cls) -> Scale:
        full = os.environ.get("FUNNELPULSE_FAULTS", "reduced") == "full"
        return cls(full, 200_000, 20) if full else cls(False, 30_000, 5)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.from_env()


@pytest.fixture(scope="session")
def figures() -> list[str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault figures")
    for line in FIGURES:
        terminalreporter.write_line(line)
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a") as out:
        out.write("".join(f"{line}\n" for line in FIGURES))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault tests (kill -9, outages, rebalances, SIGTERM): make test-faults"
    )
