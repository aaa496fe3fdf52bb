"""One native-memory budget for every RocksDB database of the worker.

With ``FUNNELPULSE_STORE=rocksdb`` every table partition is its own database (about 20 on
one worker: eight tables, their partitions, standbys; the dedup table's databases have a
second column family, ``streams/disk_index.py``). Faust's ``RocksDBOptions`` gives each
database its own block cache and its own memtables, so the native memory grows with the
number of databases, whatever they hold: with 4 MiB write buffers, 27.5 MiB of memtables
were live after the 2,000-campaign memory benchmark, on top of one cache per database
(``bench/memtrace.py`` reads RocksDB's own properties).

Here every database of the process charges one LRU block cache, and its memtables one
``WriteBufferManager`` charged to that same cache: once all memtables together pass
their share, RocksDB flushes the largest. Index and filter blocks go through the same
cache (``cache_index_and_filter_blocks``), as in Kafka Streams' bounded-memory
``RocksDBConfigSetter``, with rocksdict's objects. Kept with the table readers instead
(what this did first), they sat outside the budget, grew with the files on disk, were
all read when a database opened, and stayed when an idle worker emptied its cache: the
10,000-campaign memory benchmark settled at 151 MB that way against 140 with them in the
cache (one run each, same code otherwise; peak 227 / 225, both exact; 146 and 140 in
two more runs). The trap: in a small cache, data blocks can evict a filter block that the dedup
lookups need, and it is read again. Same-run drains (``docs/RELIABILITY.md``, eleventh
round) were equal in a quiet repetition and 11-12 % more CPU an event in two noisy ones:
a larger budget while the stages work (the idle release empties it anyway) is the lever
if that holds. The operating system's page cache keeps the files' hot blocks for reads
beyond the cache.

Compaction is universal (size-tiered), files compressed with LZ4. The tables are written
far more than they grow: every batch rewrites the same pane groups, and every event adds
a dedup id that a later eviction deletes. Leveled compaction (RocksDB's default) merges
each few small flushed files into the whole next level, and on two cores its background
threads competed with the worker and the broker: 7.8-10.1 s of RocksDB thread CPU per
million events leveled, 4.6-6.2 s universal, and 65-66 against 60-61 us of worker CPU per
event in two same-run comparisons of three drains each (``docs/RELIABILITY.md``, sixth
round). LZ4 instead of Snappy or none: no CPU cost measurable against none, and the
10,000-campaign state takes 177 MB on disk against 299 uncompressed (132 leveled with
Snappy; one run each). A universal compaction may briefly need twice the space of the
runs it merges. A database written leveled opens universal (its files read as sorted
runs) and back.

The trap: the cache and the manager must be one per process, made once, and outlive every
database using them. One made per store or per ``as_options()`` call (Faust's
``RocksDBOptions.open`` calls it twice per database) is not a budget at all: it is the
per-database memory again, with a new name.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from faust.stores.rocksdb import RocksDBOptions
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompactionStyle,
    DBCompressionType,
    Options,
    WriteBufferManager,
)

MIB = 1024 * 1024
# a memtable is flushed at this size at the latest; the shared manager flushes sooner
WRITE_BUFFER = 4 * MIB
WRITE_BUFFERS = 2  # per column family: one being written while the other is flushed
# Bloom filter bits per key (Faust's default: 3, ~14 % false positives per table file).
# The disk dedup index looks up every new event id and misses (``disk_index``): with 3
# bits a multi-get of 100 missing keys cost 1.83 us a key over 1,000,000 keys, with 10
# (~1 %) 0.89 us (one run, a 4 MiB write buffer as here); the drain profile had the
# multi-get at 11.5 % of the rocksdb worker's samples. 10 bits a key: ~1.9 MB of filter
# blocks for 1.5 million ids, in the block cache.
BLOOM_BITS = 10


class SharedMemory:
    """The process's block cache and the write-buffer manager charged to it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.cache = Cache(total)
        # memtables may take half the budget; allow_stall=False: a write is never held
        # up, the manager only makes RocksDB flush sooner (the consumer must not block)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            total // 2, False, self.cache
        )

    def usage(self) -> int:
        """Bytes charged to the budget now (blocks cached and memtables)."""
        return int(self.cache.get_usage())

    def drop_blocks(self) -> int:
        """Evicts every cached block (what a reader holds, and the memtables' share,
        stay); returns the bytes let go. For a worker gone idle (``idle_release``): the
        cache is there to serve the stages' reads during a burst, and once the burst is
        over nothing reads through it — the publisher's refresh reads past it
        (``local_store.RocksStore.get(scan=True)``) — so its blocks would sit in memory
        until the next burst replaces them."""
        before = self.usage()
        self.cache.set_capacity(0)  # evicts every entry not in use
        self.cache.set_capacity(self.total)
        return max(before - self.usage(), 0)


@cache
def shared_memory(total: int) -> SharedMemory:
    """The process's one budget of ``total`` bytes (made on first use, then kept)."""
    return SharedMemory(total)


class BudgetedOptions(RocksDBOptions):
    """Faust's options for opening a table partition's database (it still chooses the
    path, the driver and the access type), every database charging ``shared``."""

    def __init__(self, shared: SharedMemory, **options: Any) -> None:
        super().__init__(use_rocksdict=True, **options)
        self.shared = shared

    def as_options(self) -> Options:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(WRITE_BUFFER)
        options.set_max_write_buffer_number(WRITE_BUFFERS)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.shared.write_buffers)
        options.set_compaction_style(DBCompactionStyle.universal())  # see the docstring
        options.set_compression_type(DBCompressionType.lz4())
        table = BlockBasedOptions()
        table.set_bloom_filter(BLOOM_BITS, True)
        table.set_block_cache(self.shared.cache)
        table.set_index_type(BlockBasedIndexType.binary_search())
        table.set_cache_index_and_filter_blocks(True)  # charged to the budget (docstring)
        options.set_block_based_table_factory(table)
        return options


def budget(faust_store: Any, shared: SharedMemory) -> None:
    """Makes ``faust_store`` (a Faust RocksDB store, no database opened yet) open its
    databases within ``shared``."""
    if faust_store._dbs:
        raise RuntimeError(f"{faust_store.table.name}: databases already opened unbudgeted")
    faust_store.rocksdb_options = BudgetedOptions(shared, **faust_store.options)
