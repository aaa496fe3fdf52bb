"""The C allocator under the worker: jemalloc when it is there, glibc's otherwise.

Why jemalloc. A drain's peak grows Python's small-object heap (pymalloc: 1 MiB arenas)
and glibc's, and neither gives the peak back: a pymalloc arena is returned only when
every object in it is free, and after a drain each of ~100 arenas keeps a few long-lived
objects — not only the per-scope state: with the publisher's index, its latest counts,
the campaign labels, the alerts, the Prometheus children and the stages' group caches all
emptied, a settled 10,000-campaign worker still held every one of its 104 arenas
(``bench/memtrace.py``'s ``BENCH_WORKER_MEMTRACE_DROP``; Faust's and aiokafka's metadata,
futures and strings made over its lifetime sit in each). jemalloc serves small objects
from page-sized slabs and hands whole free pages back after ``dirty_decay_ms``, so the
resident size follows what is in use. With ``PYTHONMALLOC=malloc`` every Python object
goes through it. Measured (10,000 campaigns × 24 h, memory benchmark): steady 197–209 MB
with pymalloc and glibc, 169–171 MB with jemalloc, peak and drain no worse
(docs/RELIABILITY.md, eighth round).

The trap: an allocator is chosen before the process starts (``LD_PRELOAD``), so the
worker command re-executes itself once with it (``reexec_env``; the container image
installs the library and goes the same way), unless ``FUNNELPULSE_ALLOCATOR=system`` or
the library is not found (then it says so and runs on glibc). A preload that fails is
not tried twice (``REEXEC_MARK``).

glibc's side (when it is the allocator): the worker allocates and frees from two threads
(Faust runs aiokafka's consumer in its own), glibc then keeps a heap per thread and
returns freed pages rarely; two arenas and a trim after each eviction round keep it near
what is in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("funnelpulse")
M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h
# in the re-executed worker's environment; not FUNNELPULSE_*: those are settings, checked
REEXEC_MARK = "JEMALLOC_PRELOADED_BY_FUNNELPULSE"
JEMALLOC_PATHS = (  # Debian/Ubuntu's libjemalloc2, then the other usual places
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
# Free pages go back after 1 s (the default 10 s kept a drain's tail resident through the
# benchmark's settle period); "muzzy" pages (lazily freed) are skipped; a background
# thread does the purging, not the allocating threads; two arenas, as for glibc.
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2"
MALLCTL_ARENAS_ALL = 4096  # "arena.<i>.purge" with this i purges every arena

_libc: ctypes.CDLL | None = None


def find_jemalloc() -> str | None:
    for path in JEMALLOC_PATHS:
        if Path(path).exists():
            return path
    return None


def reexec_env(choice: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to run the worker again in, with jemalloc, or None: ``system``
    chosen, already under jemalloc, no library, or already tried (each but the first two
    logged: the worker then runs on the system allocator)."""
    if choice != "jemalloc" or jemalloc() is not None:
        return None
    library = find_jemalloc()
    if library is None:
        log.warning("allocator: libjemalloc.so.2 not found (Debian: libjemalloc2); running "
                    "on the system allocator, which keeps a backlog's peak resident")  # fmt: skip
        return None
    if environ.get(REEXEC_MARK):  # preloaded and still not running on it: do not loop
        log.warning("allocator: %s did not load; running on the system allocator", library)
        return None
    preload = " ".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, "PYTHONMALLOC": "malloc", REEXEC_MARK: "1",
            "MALLOC_CONF": environ.get("MALLOC_CONF", JEMALLOC_CONF)}  # fmt: skip


@functools.cache
def jemalloc() -> ctypes.CDLL | None:
    """The process's jemalloc, if it runs on it (``mallctl`` is jemalloc's; fixed for the
    process's life, so asked once)."""
    process = ctypes.CDLL(None)
    return process if hasattr(process, "mallctl") else None


def mallctl_number(name: str, kind: type[ctypes._SimpleCData[int]] = ctypes.c_size_t) -> int | None:
    """A numeric jemalloc control (``size_t`` unless ``kind``: ``arenas.nbins`` is an
    ``unsigned``), or None when jemalloc is not the allocator or refuses the name."""
    lib = jemalloc()
    if lib is None:
        return None
    value = kind(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if lib.mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return None
    return int(value.value)


def jemalloc_stats() -> dict[str, int]:
    """jemalloc's own account in bytes (allocated, active, resident, mapped, retained,
    metadata); empty when it is not the allocator."""
    lib = jemalloc()
    if lib is None:
        return {}
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(ctypes.sizeof(epoch))
    lib.mallctl(b"epoch", None, None, ctypes.byref(epoch), size)  # refreshes the stats
    stats = {}
    for name in ("allocated", "active", "resident", "mapped", "retained", "metadata"):
        value = mallctl_number(f"stats.{name}")
        if value is not None:
            stats[name] = value
    return stats


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.mallopt  # noqa: B018 - glibc only
            libc.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def limit_arenas(arenas: int = 2) -> bool:
    """Before any thread starts: at most ``arenas`` glibc heaps (jemalloc's are set by
    ``JEMALLOC_CONF``)."""
    if jemalloc() is not None:
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Returns free pages to the system now; True if the allocator was asked."""
    lib = jemalloc()
    if lib is not None:
        purge = f"arena.{MALLCTL_ARENAS_ALL}.purge".encode()
        return bool(lib.mallctl(purge, None, None, None, 0) == 0)
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def running_on() -> str:
    """The allocator's name, for the log."""
    return (
        "jemalloc"
        if jemalloc() is not None
        else f"system ({os.environ.get('PYTHONMALLOC') or 'pymalloc'})"
    )
