"""py-spy profiles of a drain, summed by where the time goes.

Issue 5 asks for a profile before any change, and for a profile behind every target
not met. ``python -m bench.run --profile DIR`` records each drain of the systems under
test with py-spy (sampling, non-blocking: the process is never stopped) and the report
sums the samples into the parts of the work below, so a table says where a worker's
time goes, not a flame graph one must read.

A sample belongs to the innermost funnelpulse (or benchmark agent) frame of its stack:
time in aiokafka's producer called from a changelog write is the changelog write's. A
stack with no such frame is library time: the Kafka client's, waiting in ``epoll``,
or Faust's, mode's and asyncio's own machinery, which every Faust agent pays per
message whatever it does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# (part, where its code lives), innermost matching frame first; a module matches by its
# path as py-spy prints it (relative to its sys.path entry), a function by its name
OWN_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("decode + validate events", ("streams/events.py", "streams/codec.py")),
    ("dedup (event ids)", ("streams/dedup.py", "streams/id_index.py", "streams/disk_index.py")),
    ("disk store: overlay, landings (RocksDB)", ("streams/local_store.py",
                                                 "streams/rocks_memory.py")),
    ("count into panes", ("streams/counting.py", "streams/pane_values.py", "metrics/windows.py",
                         "streams/partial_counts.py")),
    ("table writes + changelog", ("streams/pane_groups.py", "streams/table_state.py")),
    ("merge stage", ("streams/merge.py",)),
    ("funnel stage (leads)", ("streams/funnel.py",)),
    ("publish: KPIs to Redis + Prometheus", ("streams/publisher.py", "streams/latest.py",
                                             "streams/refresh.py", "metrics/")),
    ("HTTP (/metrics scrapes)", ("streams/web.py",)),
    ("batching, ordering, ownership", ("streams/exactly_once/", "streams/batch.py",
                                       "streams/progress.py")),
    ("intake: routing and forwards", ("streams/intake.py", "streams/routing.py")),
    ("the agents' glue (streams/app.py)", ("streams/app.py",)),
    ("other worker code", ("streams/", "metrics/")),
    ("the benchmark agent's own code", ("bench/sut_",)),
]  # fmt: skip
KAFKA_CLIENT = "Kafka client (aiokafka: fetch, produce, protocol)"
IDLE = "idle (waiting in epoll)"
ENTRY_POINTS = ("funnelpulse/cli.py", "funnelpulse/worker.py")  # below every stack: no part
FRAMEWORK = "Faust + mode + asyncio machinery"
PARTS = [part for part, _places in OWN_PARTS] + [FRAMEWORK, KAFKA_CLIENT, IDLE]
PROFILE_METHOD = (
    "py-spy (`--nonblocking`, 100 samples/s of each busy thread: the main loop and Faust's "
    "consumer thread) records each drain of the system under test from its first record for at "
    "most `--profile-seconds`, and each restarted process of the restart phase from the first "
    "answer of its web server to the probes' arrival in Redis. A sample counts for the "
    "innermost frame of its stack that is the system's own code (funnelpulse's modules, or the "
    "benchmark agent's): time in aiokafka's producer under a changelog write is the changelog "
    "write's. Stacks without such a frame are library time: the Kafka client's (aiokafka), "
    "waiting in epoll (idle), or Faust's, mode's and asyncio's own machinery, which every Faust"
    " agent pays per message: fetch loop, conductor, stream queue, event and ack bookkeeping, "
    "task switches. Shares are of samples, not of CPU time: compare them within a column; the "
    "CPU cost per event is in the tables above. Summed by `bench/spy.py`."
)


def record(pid: int, path: Path, seconds: float, rate: int = 100) -> subprocess.Popen[bytes]:
    """Starts py-spy on ``pid`` for ``seconds``; raw collapsed stacks to ``path``."""
    # BENCH_PY_SPY: a py-spy outside this venv (it is a tool, not a dependency of the lock)
    spy = os.environ.get("BENCH_PY_SPY") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
               "--rate", str(rate), "--format", "raw", "--nonblocking",
               "-o", str(path)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _location(frame: str) -> tuple[str, str]:
    """``func (path:line)`` → (func, path)."""
    name, _, rest = frame.partition(" (")
    return name.strip(), rest.rstrip(")").rpartition(":")[0]


def part_of(frames: list[str]) -> str:
    """The part of the work one sample's stack (outermost frame first) belongs to."""
    located = [_location(frame) for frame in reversed(frames) if frame]
    located = [(n, p) for n, p in located if n != "<module>" and p not in ENTRY_POINTS]
    for name, path in located:
        for part, places in OWN_PARTS:
            if any(path.startswith(p) or name == p for p in places):
                return part
    if any(path.startswith("aiokafka/") for _name, path in located):
        return KAFKA_CLIENT
    if located and located[0][0].endswith(".select"):
        return IDLE
    return FRAMEWORK


def summarize(text: str) -> tuple[int, Counter[str]]:
    """Samples in a py-spy raw (collapsed) profile, and how many fall in each part."""
    parts: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        parts[part_of(stack.split(";"))] += int(count)
    return total, parts


@dataclass(frozen=True)
class Profile:
    """One drain's profile, summed: its samples and how many fall in each part."""

    title: str
    samples: int
    parts: dict[str, int]


def load(title: str, path: Path) -> Profile:
    total, parts = summarize(path.read_text())
    return Profile(title, total, dict(parts))


class ProcessProfile:
    """py-spy on one process under test (a drain's, from its first record; a restarted
    worker's, from web up) for at most ``seconds``; does nothing without a directory
    (``--profile`` not given)."""

    def __init__(self, directory: Path | None, tag: str, seconds: float) -> None:
        self.path = directory / f"{tag}.txt" if directory is not None else None
        self.seconds = seconds
        self.spy: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        if self.path is not None and self.spy is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.spy = record(pid, self.path, self.seconds)

    def finish(self) -> str | None:
        """Stops py-spy (before the process it watches stops: it then writes what it
        has); the profile's path, if one was written."""
        if self.spy is None or self.path is None:
            return None
        if self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)
        try:
            self.spy.wait(30)
        except subprocess.TimeoutExpired:
            self.spy.kill()
        return str(self.path) if self.path.exists() else None
