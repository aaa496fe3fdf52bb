"""The protocol between a system under test (a child process) and the harness.

Standard library only: the Quix Streams child imports it from its own virtualenv. The
harness passes a JSON config in ``BENCH_CONFIG``; the child appends JSON lines to the
config's ``result_file``: ``first`` at its first record, ``progress`` about once a second,
and ``done`` when it has seen every expected message (or its time budget ran out, then
``partial`` is true). CPU time is the child's own ``getrusage`` (all threads).
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(os.environ["BENCH_CONFIG"])
    return config


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Reporter:
    """Writes the protocol lines; cheap enough to call per message."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.path = str(config["result_file"])
        self.budget = float(config["budget_s"])
        self.first_t: float | None = None
        self.finished = False
        self._next_progress = 0.0

    def _write(self, kind: str, **fields: Any) -> None:
        line = {"kind": kind, "t": time.time(), "cpu": cpu_seconds(), **fields}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    def first(self) -> None:
        if self.first_t is None:
            self._write("first")
            self.first_t = time.time()
            self._next_progress = self.first_t + 1.0

    def tick(self, messages: int, events: int) -> bool:
        """Progress line once a second; True when the time budget is spent."""
        now = time.time()
        if now >= self._next_progress:
            self._write("progress", messages=messages, events=events)
            self._next_progress = now + 1.0
        return self.first_t is not None and now - self.first_t > self.budget

    def done(self, messages: int, events: int, partial: bool, **extra: Any) -> None:
        if self.finished:
            return
        self.finished = True
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self._write(
            "done", messages=messages, events=events, partial=partial, maxrss_mb=maxrss_mb, **extra
        )
