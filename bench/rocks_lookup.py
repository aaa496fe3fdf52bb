"""What a missing key costs a multi-get, with the worker's RocksDB options.

The disk dedup index (``streams/disk_index.py``) looks up every new event id before it
counts the event, and almost every lookup misses. This writes ``--keys`` random 8-byte
ids in rounds of 100, as the drain does, multi-getting each round's 100 new ids first,
and prints the cost per missing key, with and without the memtables' Bloom filter
(``set_memtable_prefix_bloom_ratio``). The worker does not set it: halving this cost
did not move the drain (docs/BENCHMARKS-memtable-bloom.md), and each memtable's filter
is allocated when the memtable is made, so 30 databases just flushed by the idle release
held 4-5 MB more (docs/RELIABILITY.md, twelfth round).

    python -m bench.rocks_lookup --keys 1000000 --ratios 0,0.02,0.05,0.1 --repeat 2
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from funnelpulse.settings import Settings
from streams.rocks_memory import MIB, BudgetedOptions, shared_memory

ROUND = 100


def worker_options(ratio: float) -> Options:
    """The worker's options (``BudgetedOptions``, the default memory budget), the memtable
    filter set to ``ratio``."""
    budget = Settings().rocksdb_memory_mb * MIB
    options = BudgetedOptions(shared_memory(budget)).as_options()
    options.set_memtable_prefix_bloom_ratio(ratio)
    options.set_memtable_whole_key_filtering(ratio > 0)
    return options


def miss_cost(ratio: float, keys: int, seed: int, folder: Path) -> tuple[float, float]:
    """Microseconds per missing key: over the whole run, and the median round of the last
    fifth (the memtables and files full by then)."""
    path = folder / f"db-{ratio}-{seed}"
    db = Rdict(str(path), worker_options(ratio))
    ids = db.create_column_family("ids", worker_options(ratio))
    rnd = random.Random(seed)
    rounds: list[float] = []
    for _ in range(keys // ROUND):
        batch = [rnd.getrandbits(64).to_bytes(8, "big") for _ in range(ROUND)]
        started = time.perf_counter()
        ids.get(list[Any](batch))  # a multi-get (rocksdict's stubs want scalars)
        rounds.append(time.perf_counter() - started)
        for key in batch:
            ids.put(key, b"\0" * 8)
    del ids
    db.close()
    shutil.rmtree(path, ignore_errors=True)
    tail = rounds[-len(rounds) // 5 :]
    return sum(rounds) / keys * 1e6, statistics.median(tail) / ROUND * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--ratios", default="0,0.02,0.05,0.1")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for repetition in range(args.repeat):
            for ratio in (float(r) for r in args.ratios.split(",")):
                overall, late = miss_cost(ratio, args.keys, repetition, Path(folder))
                print(f"memtable bloom ratio {ratio}: {overall:.2f} us/missing key overall, "
                      f"{late:.2f} in the last fifth (median round)")  # fmt: skip


if __name__ == "__main__":
    main()
