"""Memory handed back once a burst is over (streams/idle_release.py): when it happens (once
per quiet spell, never while busy or recovering), and what a RocksDB store's part does (every
column family's memtables on disk, the data still read the same). RocksDB is real."""

from __future__ import annotations

from typing import Any

import faust
from rocksdict import Options

from streams.idle_release import IDLE_AFTER, IdleRelease
from streams.local_store import MEMTABLES, RocksStore, local_store
from streams.table_state import PartitionState

from .stores import Changelog, rocks_table, settle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Work:
    """What the release watches: a processed count and the recovery flag."""

    def __init__(self) -> None:
        self.done = 0
        self.recovering = False


def watcher(work: Work, clock: Clock, stores: list[Any] | None = None) -> IdleRelease:
    return IdleRelease(lambda: work.done, lambda: work.recovering, lambda: stores or [], clock)


def test_a_fresh_idle_worker_releases_nothing() -> None:
    work, clock = Work(), Clock()
    release = watcher(work, clock)
    clock.now += 10 * IDLE_AFTER
    assert not release.due()


def test_once_per_quiet_spell_after_work_and_not_before_idle_after() -> None:
    work, clock = Work(), Clock()
    release = watcher(work, clock)
    work.done = 5
    assert not release.due()  # work seen now: the quiet spell starts here
    clock.now += IDLE_AFTER - 0.1
    assert not release.due()
    clock.now += 0.2
    assert release.due()
    clock.now += 10 * IDLE_AFTER
    assert not release.due()  # the same spell: not again
    work.done = 6
    assert not release.due()
    clock.now += IDLE_AFTER + 0.1
    assert release.due()


def test_steady_work_never_releases() -> None:
    work, clock = Work(), Clock()
    release = watcher(work, clock)
    for _ in range(100):
        work.done += 1
        clock.now += IDLE_AFTER / 2
        assert not release.due()


def test_a_recovery_is_work_even_with_nothing_processed() -> None:
    """Faust writes the stores while it restores them; the stages process nothing then."""
    work, clock = Work(), Clock()
    release = watcher(work, clock)
    work.recovering = True
    for _ in range(5):
        clock.now += IDLE_AFTER
        assert not release.due()
    work.recovering = False
    assert not release.due()
    clock.now += IDLE_AFTER
    assert release.due()


async def test_a_store_release_flushes_every_family_and_reads_the_same(
    rocks_app: faust.App, changelog: Changelog
) -> None:
    table = rocks_table(rocks_app, value_type=bytes)
    state: PartitionState[bytes] = PartitionState(table, 1)
    for i in range(200):
        state[f"k{i}"] = b"v" * 100
    await state.flush()
    changelog.ack()
    await settle()
    store = local_store(table)
    assert isinstance(store, RocksStore)
    db = store.faust_store._dbs[1]
    family = db.create_column_family("side", Options(raw_mode=True))
    family[b"x"] = b"y" * 1000
    held = sum(int(f.property_int_value(MEMTABLES)) for f in (db, family))
    assert held > 0

    work, clock = Work(), Clock()
    release = watcher(work, clock, [store])
    flushed = release.release()

    assert flushed == held
    left = [int(f.property_int_value(MEMTABLES)) for f in (db, family)]
    assert all(size <= 4096 for size in left), left  # an empty memtable's first block
    assert store.get(1, "1|k7") == b"v" * 100 and family[b"x"] == b"y" * 1000
    assert release.releases == 1
