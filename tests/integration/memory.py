"""Resident memory of a worker process, sampled from /proc while a test drives it."""

from __future__ import annotations

import threading


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler(threading.Thread):
    """VmRSS of the worker every 200 ms, from a thread: the test's loop is busy producing."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples = pid, [rss_kb(pid)]
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.samples.append(rss_kb(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone: the test reports the crash
