"""The process-wide RocksDB budget (streams/rocks_memory.py): every database opened through
a budgeted Faust store uses the one block cache, and the memtables of all of them are
charged to it, so their native memory no longer grows with the number of databases."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from streams.rocks_memory import MIB, SharedMemory, budget, shared_memory

from .stores import rocks_table


def test_the_budget_is_made_once_per_size() -> None:
    assert shared_memory(8 * MIB) is shared_memory(8 * MIB)


def test_every_database_shares_one_cache_and_charges_it_its_memtables(
    rocks_app: faust.App,
) -> None:
    shared = SharedMemory(16 * MIB)
    tables = [rocks_table(rocks_app, name) for name in ("a", "b")]
    for table in tables:
        budget(table.data, shared)
    dbs = [table.data._db_for_partition(p) for table in tables for p in (0, 1)]
    for db in dbs:  # one cache of the budget's size, not one per database
        assert db.property_int_value("rocksdb.block-cache-capacity") == 16 * MIB
    before = shared.write_buffers.get_usage()
    for i, db in enumerate(dbs):
        for j in range(2_000):
            db.put(f"{i}-{j}".encode(), b"x" * 100)
    assert shared.write_buffers.get_usage() > before  # the memtables are charged
    assert shared.usage() >= shared.write_buffers.get_usage()  # ... to the one cache


def test_a_store_whose_databases_are_open_is_not_budgeted_after_the_fact(
    rocks_app: faust.App,
) -> None:
    table = rocks_table(rocks_app)
    table.data._db_for_partition(0)
    with pytest.raises(RuntimeError, match="already opened"):
        budget(table.data, SharedMemory(8 * MIB))


def test_databases_compact_universal_with_lz4(rocks_app: faust.App) -> None:
    """The choice in streams/rocks_memory.py, as RocksDB wrote it in the database's own
    OPTIONS file (what it runs with, not what we asked for)."""
    table = rocks_table(rocks_app)
    budget(table.data, SharedMemory(8 * MIB))
    db = table.data._db_for_partition(0)
    written = max(Path(db.path()).glob("OPTIONS-*")).read_text()
    assert "compaction_style=kCompactionStyleUniversal" in written
    assert "compression=kLZ4Compression" in written
