"""Reading CPU time from /proc stat files (the benchmark's process and thread figures)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.measure import proc_cpu, stat_cpu

TICK = os.sysconf("SC_CLK_TCK")


def test_a_name_with_spaces_and_parentheses_does_not_shift_the_fields(tmp_path: Path) -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = tmp_path / "stat"
    stat.write_text(f"42 (rocksdb:low) (x) S 1 1 1 0 -1 0 0 0 0 0 {3 * TICK} {TICK} 0 0 20\n")
    assert stat_cpu(stat) == ("rocksdb:low) (x", 4.0)


def test_a_process_or_thread_gone_reads_none(tmp_path: Path) -> None:
    assert stat_cpu(tmp_path / "missing") is None
    assert proc_cpu(None) is None


def test_this_process_reads_its_own_cpu() -> None:
    sum(range(2_000_000))
    cpu = proc_cpu(os.getpid())
    assert cpu is not None and 0 < cpu <= os.times().user + os.times().system + 1 / TICK
