"""Runs a funnelpulse worker with tracemalloc on, for finding where its memory goes:

    BENCH_WORKER_MEMTRACE=/tmp/mem.txt python -m bench.run ... --phases memory
    touch /tmp/mem.txt.now      # within 2 s: the 40 largest allocation sites in /tmp/mem.txt

(A file, not a signal: mode's worker takes SIGUSR1 and SIGUSR2, the latter for pdb.)

tracemalloc slows the worker down (about 2x), so figures from such a run are for the
composition of the heap only, never for the benchmark tables.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc


def _dump(path: str) -> None:
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    with open(path, "a") as out:
        out.write(f"--- traced {total / 2**20:.1f} MiB in {len(stats)} sites\n")
        for stat in stats[:40]:
            out.write(f"{stat.size / 2**20:8.1f} MiB {stat.count:>10,} {stat.traceback}\n")


def main() -> None:
    path = os.environ["BENCH_WORKER_MEMTRACE"]
    tracemalloc.start(1)

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.path.exists(path + ".now"):
                os.unlink(path + ".now")
                _dump(path)

    threading.Thread(target=watch, name="memtrace", daemon=True).start()
    from funnelpulse.cli import main as cli

    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
