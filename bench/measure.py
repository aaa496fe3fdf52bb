"""Process and machine facts read from /proc and the tools (no psutil needed)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def stat_cpu(path: Path) -> tuple[str, float] | None:
    """(command name, user + system CPU seconds) from a ``/proc/<pid>[/task/<tid>]/stat``
    file, or None once the process or thread is gone. The name is between the first "("
    and the last ")": it may itself hold spaces and parentheses."""
    try:
        stat = path.read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 1 :].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def proc_cpu(pid: int | None) -> float | None:
    """user + system CPU seconds of a live process (all threads), or None."""
    found = None if pid is None else stat_cpu(Path(f"/proc/{pid}/stat"))
    return None if found is None else found[1]


def _status_mb(pid: int, field: str) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else None


def proc_peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the peak resident set size of a live process, in MB."""
    return _status_mb(pid, "VmHWM")


def proc_rss_mb(pid: int) -> float | None:
    """VmRSS: the resident set size of a live process now, in MB."""
    return _status_mb(pid, "VmRSS")


def broker_pid() -> int | None:
    """The local broker started by ``make up`` (``kafka.pid`` in FUNNELPULSE_STACK_DIR,
    default ``.stack/``), or BENCH_BROKER_PID."""
    raw = os.environ.get("BENCH_BROKER_PID", "")
    if not raw:
        stack = Path(os.environ.get("FUNNELPULSE_STACK_DIR") or ROOT / ".stack")
        try:
            raw = (stack / "kafka.pid").read_text().strip()
        except OSError:
            return None
    pid = int(raw) if raw.isdigit() else None
    return pid if pid is not None and proc_cpu(pid) is not None else None


def machine() -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Architecture", "CPU(s)", "Model name", "Thread(s) per core",
                               "Core(s) per socket", "Socket(s)", "Hypervisor vendor",
                               "CPU max MHz"):  # fmt: skip
                facts[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        facts["lscpu"] = "not available"
    meminfo = Path("/proc/meminfo").read_text()
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    if match:
        facts["Memory"] = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB"
    facts["Kernel"] = platform.release()
    from funnelpulse.malloc import find_jemalloc
    from funnelpulse.settings import Settings

    name = "FUNNELPULSE_ALLOCATOR"  # the setting as the workers will read it, default included
    choice = Settings.from_env({k: v for k, v in os.environ.items() if k == name}).allocator
    library = find_jemalloc()
    facts["Worker allocator"] = (
        f"jemalloc ({library}, funnelpulse/malloc.py)"
        if choice == "jemalloc" and library
        else f"system (FUNNELPULSE_ALLOCATOR={choice}, libjemalloc {library or 'missing'})"
    )
    return facts


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def kafka_version() -> str:
    home = os.environ.get("KAFKA_HOME") or str(Path.home() / ".cache" / "funnelpulse")
    jars = sorted(Path(home).glob("**/libs/kafka_2.*-*.jar"))
    for jar in jars:
        match = re.match(r"kafka_[\d.]+-([\d.]+)\.jar$", jar.name)
        if match:
            return match.group(1)
    return "unknown"


def versions(quix_python: Path | None) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "faust-streaming": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
        "orjson": _version("orjson"),
        "redis (client)": _version("redis"),
        "kafka (broker)": kafka_version(),
    }
    found["quixstreams"] = "not installed"
    if quix_python is not None:
        probe = "import importlib.metadata as m; print(m.version('quixstreams'))"
        result = subprocess.run([str(quix_python), "-c", probe], capture_output=True, text=True)
        if result.returncode == 0:
            found["quixstreams"] = result.stdout.strip()
    return found
