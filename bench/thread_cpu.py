"""CPU per thread name of every funnelpulse worker that runs while this watches.

Why: the benchmark's "CPU-s SUT" is the whole process, and py-spy samples only the
threads that run Python; RocksDB's compaction and flush threads (``rocksdb:low``,
``rocksdb:high``) are in neither breakdown. Run it beside a drain:

    python -m bench.thread_cpu --seconds 900 &
    python -m bench.run --systems funnelpulse-memory,funnelpulse-rocksdb ...

It prints, as each worker exits, its threads' user+system CPU summed by thread name
(from ``/proc/<pid>/task/*/stat``, last read every half second: a thread that ends
between two reads loses at most its last half second) and the store the worker ran with
(``FUNNELPULSE_STORE`` in its environment; ``default`` when unset, as for
``funnelpulse-base``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .measure import stat_cpu

POLL = 0.5


def workers() -> dict[int, str]:
    """pid → store of each running ``funnelpulse.cli worker`` process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if b"funnelpulse.cli" not in command or b"worker" not in command:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        store = next((v[len(b"FUNNELPULSE_STORE="):].decode() for v in environ
                      if v.startswith(b"FUNNELPULSE_STORE=")), "default")  # fmt: skip
        found[int(entry.name)] = store
    return found


def thread_cpu(pid: int) -> dict[str, tuple[str, float]] | None:
    """thread id → (name, user+system CPU seconds); None once the process is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out = {}
    for tid in tids:
        found = stat_cpu(Path(f"/proc/{pid}/task/{tid}/stat"))
        if found is not None:
            out[tid] = found
    return out or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=900.0, help="how long to watch")
    args = parser.parse_args()
    end = time.monotonic() + args.seconds
    last: dict[int, dict[str, tuple[str, float]]] = {}
    stores: dict[int, str] = {}
    while time.monotonic() < end:
        running = workers()
        stores.update(running)
        for pid in set(running) | set(last):
            threads = thread_cpu(pid)
            if threads is not None:
                last.setdefault(pid, {}).update(threads)
            elif pid in last:
                by_name: dict[str, float] = {}
                for name, used in last.pop(pid).values():
                    by_name[name] = by_name.get(name, 0.0) + used
                ranked = sorted(by_name.items(), key=lambda item: -item[1])
                cells = ", ".join(f"{name} {cpu:.2f} s" for name, cpu in ranked)
                print(f"worker {pid} (store {stores.get(pid, '?')}): {cells}", flush=True)
        time.sleep(POLL)


if __name__ == "__main__":
    main()
