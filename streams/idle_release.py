"""Memory handed back once a burst of work is over.

A drain (a backlog after a deploy or an outage upstream, a replay) leaves memory behind
that nothing uses while the worker then idles: RocksDB's memtables keep the burst's last
writes until they fill (they may take half the store's budget, ``streams/rocks_memory.py``;
10-14 MiB after the memory benchmark's drains), cycles wait for the next full collection,
and glibc keeps the pages they free. After ``IDLE_AFTER`` seconds without a processed
message the worker flushes the memtables to disk, empties RocksDB's block cache, collects
and trims, once. (The cache serves the stages' reads in a burst; when idle nothing reads
through it: the publisher's minute refresh of every scope reads past it,
``LocalStore.get(scan=True)``, so its blocks would otherwise stay until the next burst.)

Measured (``bench/memtrace.py``, ``BENCH_WORKER_MEMTRACE_FLUSH=1``, 2,000 campaigns × 24 h,
the memory phase's settled worker): 176.7 → 161.5 MB resident.

The trap: doing it while busy. A flush blocks the event loop while RocksDB writes the
memtables, leaves small files for compaction, and the collection walks the whole heap;
every few seconds under load that would cost throughput for memory the next batches take
again. So: once per quiet spell, never during a table recovery (Faust writes the stores
then while the stages process nothing), and again only after new work.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable

from funnelpulse.malloc import trim

from .local_store import RocksStore

log = logging.getLogger("funnelpulse.idle")
IDLE_AFTER = 10.0  # seconds without a processed message: the burst is over
CHECK_EVERY = 2.0  # seconds between looks (a timer)


class IdleRelease:
    """Watches the stages' processed-message count; releases memory once per quiet spell."""

    def __init__(
        self,
        processed: Callable[[], int],
        recovering: Callable[[], bool],
        stores: Callable[[], Iterable[RocksStore]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Narrow inputs: the count of messages the stages processed, whether tables are
        being restored, and the tables' stores (asked at each release: they change with
        the assignment)."""
        self.processed, self.recovering, self.stores, self.clock = (
            processed, recovering, stores, clock)  # fmt: skip
        self._seen = processed()
        self._since = clock()
        self._released = True  # a fresh worker holds nothing a burst left behind
        self.releases = 0

    def due(self) -> bool:
        """True once per quiet spell: ``IDLE_AFTER`` s after the last change of the count
        (or the end of a recovery), if anything was processed since the last release."""
        done, now = self.processed(), self.clock()
        if done != self._seen or self.recovering():
            self._seen, self._since, self._released = done, now, False
            return False
        if self._released or now - self._since < IDLE_AFTER:
            return False
        self._released = True
        return True

    async def check(self) -> None:
        """The timer's body: releases when due (Faust timers take coroutines)."""
        if self.due():
            self.release()

    def release(self) -> int:
        """Flushes every RocksDB store's memtables, empties the block cache, collects,
        trims; returns the bytes RocksDB let go."""
        started = time.monotonic()
        flushed = sum(store.release_memory() for store in self.stores())
        gc.collect()
        trim()
        self.releases += 1
        log.info("idle: released %.1f MiB of memtables and cached blocks, collected and "
                 "trimmed in %.0f ms", flushed / 2**20,
                 (time.monotonic() - started) * 1000)  # fmt: skip
        return flushed
