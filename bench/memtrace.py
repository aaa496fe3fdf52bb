"""Runs a funnelpulse worker with tracemalloc on, for finding where its memory goes:

    BENCH_WORKER_MEMTRACE=/tmp/mem.txt python -m bench.run ... --phases memory
    touch /tmp/mem.txt.now      # within 2 s: the 40 largest allocation sites in /tmp/mem.txt

(A file, not a signal: mode's worker takes SIGUSR1 and SIGUSR2, the latter for pdb.) The
memory phase touches it itself once the worker has settled (``bench.phases``).

Each dump also lists what tracemalloc cannot see: RocksDB's native memory per table
(memtables, block cache, table readers: RocksDB's own properties, read from every
Faust RocksDB store found through the garbage collector), and the Python objects by
type (shallow ``sys.getsizeof``: the containers' own size, not what they hold).
``BENCH_WORKER_MEMTRACE_TRACE=0`` leaves tracemalloc off (the worker runs at full speed;
the dump then has the native and by-type parts only).

tracemalloc slows the worker down (about 2x), so figures from such a run are for the
composition of the heap only, never for the benchmark tables.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from typing import Any

ROCKS_PROPERTIES = (
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.block-cache-usage",
    "rocksdb.estimate-table-readers-mem",
    "rocksdb.block-cache-pinned-usage",
)
MIB = 2**20


def _rocks(out: Any) -> None:
    """RocksDB memory by table, summed over the partitions' databases this worker has open."""
    from faust.stores.rocksdb import Store

    by_table: dict[str, Counter[str]] = {}
    for obj in gc.get_objects():
        if isinstance(obj, Store):
            name = getattr(getattr(obj, "table", None), "name", "?")
            counts = by_table.setdefault(name, Counter())
            for db in list(obj._dbs.values()):
                counts["databases"] += 1
                for prop in ROCKS_PROPERTIES:
                    counts[prop] += int(db.property_int_value(prop) or 0)
    totals: Counter[str] = Counter()
    out.write(f"--- RocksDB native memory by table (MiB): {', '.join(ROCKS_PROPERTIES)}\n")
    for name, counts in sorted(by_table.items()):
        totals.update(counts)
        cells = " ".join(f"{counts[p] / MIB:8.1f}" for p in ROCKS_PROPERTIES)
        out.write(f"{name:60} dbs={counts['databases']:3} {cells}\n")
    cells = " ".join(f"{totals[p] / MIB:8.1f}" for p in ROCKS_PROPERTIES)
    out.write(f"{'total':60} dbs={totals['databases']:3} {cells}\n")


def _kafka_metadata(out: Any) -> None:
    """Topics and partitions each aiokafka client of the worker keeps metadata for: a
    client that never named its topics reads all of the broker's at every refresh."""
    from aiokafka.cluster import ClusterMetadata

    out.write("--- aiokafka cluster metadata held (topics, partitions):")
    for obj in gc.get_objects():
        if isinstance(obj, ClusterMetadata):
            topics = obj.topics()
            parts = sum(len(obj.partitions_for_topic(t) or ()) for t in topics)
            out.write(f" ({len(topics)}, {parts})")
    out.write("\n")


def _by_type(out: Any, top: int = 25) -> None:
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj).__name__
        counts[kind] += 1
        sizes[kind] += sys.getsizeof(obj)
    total = sum(sizes.values())
    out.write(f"--- gc-tracked Python objects: {total / MIB:.1f} MiB shallow, "
              f"{sum(counts.values()):,} objects; largest types:\n")  # fmt: skip
    for kind, size in sizes.most_common(top):
        out.write(f"{size / MIB:8.1f} MiB {counts[kind]:>10,} {kind}\n")


def _untracked(out: Any, top: int = 12) -> None:
    """What the collector does not track (strings, numbers, bytes, tuples and dicts of
    only those), reached from tracked objects and from untracked containers: by type, and
    the strings by shape (digits replaced, cut at 24 characters) — where jemalloc's 32-80
    B classes go."""
    tracked = gc.get_objects()
    seen: set[int] = {id(obj) for obj in tracked}
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    pending = [ref for obj in tracked for ref in gc.get_referents(obj)]
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj).__name__
        counts[kind] += 1
        sizes[kind] += sys.getsizeof(obj)
        if isinstance(obj, str):
            shapes["".join("9" if c.isdigit() else c for c in obj[:24])] += 1
        elif isinstance(obj, tuple):
            pending.extend(obj)
        elif isinstance(obj, dict):  # untracked: it holds only atomic keys and values
            pending.extend(obj)
            pending.extend(obj.values())
    out.write(f"--- untracked objects: {sum(sizes.values()) / MIB:.1f} MiB, "
              f"{sum(counts.values()):,}; by type:\n")  # fmt: skip
    for kind, size in sizes.most_common(top):
        out.write(f"{size / MIB:8.1f} MiB {counts[kind]:>10,} {kind}\n")
    out.write("    most common string shapes:\n")
    for shape, n in shapes.most_common(top):
        out.write(f"    {n:>10,} {shape!r}\n")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def _malloc(out: Any) -> None:
    """glibc's own account (all threads' arenas): what is in use, what is free but kept
    (fragmentation the trim could not return), and big blocks mmapped one by one."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return
    out.write(f"--- glibc malloc (MiB): in use {info.uordblks / MIB:.1f}, free in arenas "
              f"{info.fordblks / MIB:.1f} (arenas {info.arena / MIB:.1f}), mmapped "
              f"{info.hblkhd / MIB:.1f} in {info.hblks} blocks\n")  # fmt: skip
    before = _rss_kb()
    libc.malloc_trim(0)  # after the bench's own readings: what a trim would give back now
    out.write(f"--- malloc_trim(0) now: VmRSS {before} -> {_rss_kb()} kB\n")
    fields = ("Rss", "Anonymous", "Private_Clean", "Shared_Clean")
    with open("/proc/self/smaps_rollup") as rollup:
        found = [" ".join(line.split()[:2]) for line in rollup if line.startswith(fields)]
    out.write(f"--- smaps_rollup (kB): {' '.join(found)}\n")


def _jemalloc(out: Any) -> None:
    """jemalloc's own account, when the worker runs on it (``funnelpulse/malloc.py``):
    allocated (live), active (in pages with a live object), resident, mapped, retained
    (mapped, given back), metadata."""
    from funnelpulse.malloc import jemalloc_stats

    stats = jemalloc_stats()
    if stats:
        out.write(
            "--- jemalloc (MiB): "
            + ", ".join(f"{k} {v / MIB:.1f}" for k, v in stats.items())
            + "\n"
        )
        _jemalloc_bins(out)


def _jemalloc_bins(out: Any, top: int = 15) -> None:
    """Where the gap between allocated and active sits: per small size class, the bytes
    of its slabs against the bytes live in them (all arenas merged), the classes with the
    most slack first; and small against large in all. Slack in the classes Python objects
    use (16-512 bytes) is objects scattered over slabs; in large classes, buffers."""
    from funnelpulse.malloc import MALLCTL_ARENAS_ALL, jemalloc, mallctl_number

    if jemalloc() is None:
        return

    def number(name: str, kind: type[ctypes._SimpleCData[int]] = ctypes.c_size_t) -> int:
        value = mallctl_number(name, kind)
        if value is None:
            raise OSError(f"mallctl {name} refused")
        return value

    merged = f"stats.arenas.{MALLCTL_ARENAS_ALL}"
    rows = []
    for i in range(number("arenas.nbins", ctypes.c_uint)):
        size = number(f"arenas.bin.{i}.size")
        slab = number(f"arenas.bin.{i}.slab_size")
        regs = number(f"{merged}.bins.{i}.curregs")
        slabs = number(f"{merged}.bins.{i}.curslabs")
        rows.append((slabs * slab - regs * size, size, slabs * slab, regs * size, slabs))
    small = number(f"{merged}.small.allocated")
    large = number(f"{merged}.large.allocated")
    slab_bytes = sum(r[2] for r in rows)
    out.write(f"--- jemalloc small {small / MIB:.1f} MiB live in {slab_bytes / MIB:.1f} MiB of "
              f"slabs, large {large / MIB:.1f} MiB; slack by size class (MiB):\n")  # fmt: skip
    for slack, size, in_slabs, live, slabs in sorted(rows, reverse=True)[:top]:
        out.write(f"    {size:6d} B  slack {slack / MIB:6.2f}  slabs {in_slabs / MIB:6.2f} "
                  f"({slabs} slabs)  live {live / MIB:6.2f}\n")  # fmt: skip


def _mallocstats() -> str:
    """What ``sys._debugmallocstats`` writes (to the C stderr, so captured at fd 2)."""
    with tempfile.TemporaryFile("w+") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read()


def _pymalloc(out: Any) -> None:
    """Python's small-object allocator (objects up to 512 bytes: outside glibc's heap, in
    arenas of its own): bytes in live blocks, and arena bytes it holds without them (an
    arena goes back only when all of it is free)."""
    stats = _mallocstats()
    wanted = ("# bytes in allocated blocks", "# bytes in available blocks",
              "# arenas allocated current", "Total")  # fmt: skip
    lines = [" ".join(line.split()) for line in stats.splitlines() if line.startswith(wanted)]
    out.write(f"--- pymalloc: {'; '.join(lines)}\n")


SMALL = 512  # pymalloc's largest block; bigger objects come from glibc
ARENA_BITS = 20  # pymalloc's arenas are 1 MiB mmaps (3.10+): one spans at most two buckets


def _live_objects() -> dict[int, Any]:
    """Every object reachable from a gc-tracked one, by address: the containers and what
    they hold directly (strings, ints, floats and bytes are not tracked themselves)."""
    found: dict[int, Any] = {}
    for obj in gc.get_objects():
        found[id(obj)] = obj
        for ref in gc.get_referents(obj):
            found.setdefault(id(ref), ref)
    return found


def _sparse_arenas(out: Any, top: int = 30) -> None:
    """Who pins pymalloc's arenas: small objects bucketed by 1 MiB of address, and, in
    the buckets that are mostly empty, what lives there by type and allocation site
    (tracemalloc's, when it is on). An arena goes back only when all of it is free, so a
    few long-lived objects in each of many arenas keep them all."""
    live = _live_objects()
    used: Counter[int] = Counter()
    for address, obj in live.items():
        size = sys.getsizeof(obj, 0)
        if size <= SMALL:
            used[address >> ARENA_BITS] += size
    sparse = {bucket for bucket, size in used.items() if size < (1 << ARENA_BITS) // 4}
    sizes = sorted(used.values())
    out.write(f"--- small objects in {len(used)} 1-MiB buckets, live MiB per bucket "
              f"quartiles {[round(sizes[len(sizes) * q // 4] / MIB, 2) for q in (1, 2, 3)]}; "
              f"{len(sparse)} under a quarter full, holding "
              f"{sum(used[b] for b in sparse) / MIB:.1f} MiB:\n")  # fmt: skip
    by_site: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for address, obj in live.items():
        if address >> ARENA_BITS in sparse and sys.getsizeof(obj, 0) <= SMALL:
            trace = tracemalloc.get_object_traceback(obj) if tracemalloc.is_tracing() else None
            site = f"{type(obj).__name__} {trace[0] if trace else '?'}"
            by_site[site] += sys.getsizeof(obj, 0)
            count[site] += 1
    for site, size in by_site.most_common(top):
        out.write(f"{size / MIB:8.2f} MiB {count[site]:>9,} {site}\n")
    del live


def _arenas() -> int:
    """pymalloc's arenas now (``sys._debugmallocstats``' count)."""
    for line in _mallocstats().splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.split("=")[1].replace(",", ""))
    return -1


def _drop_owners(out: Any) -> None:
    """What each owner of long-lived objects pins: the owners are emptied one after the
    other (cumulative), each followed by a collection, and the arenas and resident size
    read after each. Destroys the worker's state: the last section of a dump, for an
    upper bound on what a rewrite of that owner could give back, never for a figure."""
    from streams.pane_groups import GroupCache
    from streams.publisher import KpiPublisher

    found = [obj for obj in gc.get_objects() if isinstance(obj, KpiPublisher | GroupCache)]
    publishers = [p for p in found if isinstance(p, KpiPublisher)]
    caches = [c for c in found if isinstance(c, GroupCache)]

    def index() -> None:
        for p in publishers:
            p.index.clear()

    def per_scope() -> None:
        for p in publishers:
            p.computed_at.clear()
            p.due.clear()
            p.backfill.clear()
            p.dirty.clear()
            p.latest = type(p.latest)(p.specs)
            p.metrics.kpi_rows.clear()

    def channels() -> None:
        for p in publishers:
            p.campaign_channels.label.clear()

    def alerts() -> None:
        for p in publishers:
            p.alerts.active.clear()
            p.alerts.pending.clear()

    def prometheus() -> None:
        for p in publishers:
            m = p.metrics
            m._children.clear()
            m._known_campaigns.clear()
            for family in vars(m).values():
                if hasattr(family, "_metrics"):
                    family._metrics.clear()

    def group_caches() -> None:
        for c in caches:
            c._entries.clear()

    out.write(f"--- owners emptied in turn (arenas, VmRSS kB): start {_arenas()}, {_rss_kb()}\n")
    steps = [("publisher index", index), ("computed_at/latest/queues", per_scope),
             ("campaign labels", channels), ("alerts", alerts),
             ("prometheus children", prometheus), ("stage group caches", group_caches)]  # fmt: skip
    for name, step in steps:
        step()
        gc.collect()
        out.write(f"    {name:28} {_arenas():5} {_rss_kb():8}\n")
    _sparse_arenas(out)


def _flush_rocks(out: Any) -> None:
    """What the worker's idle release (``streams/idle_release.py``: every column family's
    memtables flushed, a collection, a trim) gives back now (changes state: the last
    section of a dump)."""
    from streams.idle_release import IdleRelease
    from streams.local_store import RocksStore

    stores = [obj for obj in gc.get_objects() if isinstance(obj, RocksStore)]
    before = _rss_kb()
    flushed = IdleRelease(lambda: 0, lambda: False, lambda: stores).release()
    out.write(f"--- idle release ({flushed / MIB:.1f} MiB of memtables): VmRSS {before} -> "
              f"{_rss_kb()} kB\n")  # fmt: skip


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def _rss() -> str:
    with open("/proc/self/status") as status:
        return " ".join(line.strip() for line in status if line.startswith(("VmRSS", "VmHWM")))


def _dump(path: str) -> None:
    gc.unfreeze()  # the worker freezes its start-up objects: gc.get_objects would miss them
    with open(path, "a") as out:
        out.write(f"=== {time.strftime('%H:%M:%S')} {_rss()}\n")
        if tracemalloc.is_tracing():
            stats = tracemalloc.take_snapshot().statistics("lineno")
            total = sum(stat.size for stat in stats)
            out.write(f"--- traced {total / MIB:.1f} MiB in {len(stats)} sites\n")
            for stat in stats[:40]:
                out.write(f"{stat.size / MIB:8.1f} MiB {stat.count:>10,} {stat.traceback}\n")
        _malloc(out)
        _jemalloc(out)
        _pymalloc(out)
        _rocks(out)
        _kafka_metadata(out)
        _by_type(out)
        _untracked(out)
        if os.environ.get("BENCH_WORKER_MEMTRACE_ARENAS") == "1":
            _sparse_arenas(out)
        if os.environ.get("BENCH_WORKER_MEMTRACE_FLUSH") == "1":
            _flush_rocks(out)
        if os.environ.get("BENCH_WORKER_MEMTRACE_DROP") == "1":
            _drop_owners(out)


def main() -> None:
    path = os.environ["BENCH_WORKER_MEMTRACE"]
    if os.environ.get("BENCH_WORKER_MEMTRACE_TRACE", "1") != "0":
        tracemalloc.start(1)

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if os.path.exists(path + ".now"):
                os.unlink(path + ".now")
                try:
                    _dump(path)
                finally:
                    with open(path + ".done", "w"):
                        pass

    threading.Thread(target=watch, name="memtrace", daemon=True).start()
    from funnelpulse.cli import main as cli

    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
