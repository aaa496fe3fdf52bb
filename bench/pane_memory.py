"""Bytes of Python heap per pane in the state tables, for the layouts the memory target
could use: measured with tracemalloc on synthetic panes shaped like the memory phase's
(campaign scopes, minute and 15-minute panes, counts of a typical campaign pane, replay
marks of two source topics at realistic offsets).

    .venv/bin/python -m bench.pane_memory [--panes 200000]

It answers "what would a compact layout save" before anyone rewrites the tables: the
worker's memory is dominated by one dict entry per (scope, pane) in both the partial and
the merged table (see docs/BENCHMARKS.md, memory phase).
"""

from __future__ import annotations

import argparse
import gc
import random
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from metrics.counts import COUNT_FIELDS

N = len(COUNT_FIELDS)


def _counts(rng: random.Random) -> list[int]:
    counts = [0] * N
    counts[0] = rng.randint(50, 5_000)  # impressions
    counts[2] = rng.randint(0, 200)  # clicks
    counts[4] = rng.randint(0, 50)  # opens
    counts[5] = rng.randint(0, 5)  # signups
    counts[14] = rng.randint(0, 50_000_000)  # spend, micros
    return counts


def _pane(i: int, rng: random.Random) -> tuple[str, list[int], dict[str, int]]:
    campaign, n = divmod(i, 158)  # 61 minute panes (1 h) and 97 of 15 minutes (24 h)
    size, start = (60, 1_795_400_040 + 60 * n) if n < 61 else (900, 1_795_310_100 + 900 * n)
    key = f"{campaign % 4}|campaign:cmp-{campaign:05d}|{size}|{start}"
    marks = {"0": rng.randint(0, 5_000_000), "2": rng.randint(0, 5_000_000)}
    return key, _counts(rng), marks


def partial_objects(key: str, counts: list[int], marks: dict[str, int]) -> tuple[str, Any]:
    """Today's layout: ``[counts, marks]`` as Python objects (JSON-decoded on recovery)."""
    return key, [counts, marks]


def partial_json_bytes(key: str, counts: list[int], marks: dict[str, int]) -> tuple[str, Any]:
    """The same value kept as its changelog bytes, decoded when a batch touches the pane.
    (Copied: a bytes object straight from orjson.dumps keeps orjson's whole write buffer,
    several KB, as measured here.)"""
    return key, bytes(bytearray(orjson.dumps([counts, marks])))


def partial_packed(key: str, counts: list[int], marks: dict[str, int]) -> tuple[str, Any]:
    """Sparse binary: (field, value) pairs of the non-zero counts, then the marks."""
    nonzero = [(i, v) for i, v in enumerate(counts) if v]
    body = struct.pack("<B" + "Bq" * len(nonzero), len(nonzero), *[x for p in nonzero for x in p])
    body += struct.pack(f"<{2 * len(marks)}q", *[x for t, o in marks.items() for x in (int(t), o)])
    return key, body


LAYOUTS: dict[str, Callable[[str, list[int], dict[str, int]], tuple[str, Any]]] = {
    "objects (today)": partial_objects,
    "JSON bytes": partial_json_bytes,
    "packed sparse bytes": partial_packed,
}


def measure(layout: Callable[..., tuple[str, Any]], panes: int) -> float:
    """Heap bytes per pane of a store built in this layout; keys, counts and marks are
    made inside the traced region, as recovery or counting makes them."""
    gc.collect()
    tracemalloc.start()
    rng = random.Random(7)
    before = tracemalloc.get_traced_memory()[0]
    store = {}
    for i in range(panes):
        key, value = layout(*_pane(i, rng))
        store[key] = value
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == panes
    return (after - before) / panes


def measure_grouped(panes: int) -> tuple[float, float]:
    """One store entry per (scope, pane size): the JSON bytes of all its panes. Returns
    heap bytes per pane and the bytes one changelog write of a group costs on average
    (a batch that touches one pane rewrites its whole group)."""
    gc.collect()
    tracemalloc.start()
    rng = random.Random(7)
    before = tracemalloc.get_traced_memory()[0]
    groups: dict[str, list[Any]] = {}
    for i in range(panes):
        key, counts, marks = _pane(i, rng)
        part, scope, size, start = key.split("|")
        groups.setdefault(f"{part}|{scope}|{size}", []).append([int(start), counts, marks])
    store = {k: bytes(bytearray(orjson.dumps(v))) for k, v in groups.items()}
    del groups
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / panes, sum(map(len, store.values())) / len(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panes", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{args.panes:,} panes; bytes per pane (key, store entry and value)")
    for name, layout in LAYOUTS.items():
        print(f"  {name:22s} {measure(layout, args.panes):6.0f}")
    per_pane, write = measure_grouped(args.panes)
    print(f"  {'grouped per scope':22s} {per_pane:6.0f}  (one changelog write: {write:,.0f} B)")


if __name__ == "__main__":
    main()
