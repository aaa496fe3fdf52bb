"""Restore progress (streams/restore.py) from Faust's recovery state: the start is the
offset the local store held at assignment (none: rebuilt from the changelog's start),
the figures follow Faust's highwaters and applied offsets."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.restore import RestoreProgress

KEPT, LOST = TP("fp-partials-changelog", 0), TP("fp-partials-changelog", 1)
LEADS = TP("fp-leads-changelog", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recovery(offsets: dict[TP, int | None]) -> Any:
    """Faust's Recovery as ``tables.on_rebalance`` leaves it: the active partitions with
    their local store's offset (None: no local state), no highwaters yet."""
    tables = {tp: SimpleNamespace(name=tp.topic.removesuffix("-changelog")) for tp in offsets}
    return SimpleNamespace(
        active_tps=set(offsets), active_offsets=Counter(offsets),
        active_highwaters=Counter(), tp_to_table=tables,
    )  # fmt: skip


def test_progress_from_the_local_store_and_from_the_changelog_start() -> None:
    faust = recovery({KEPT: 899, LOST: None, LEADS: 40})
    restoring, clock = [True], Clock()
    progress = RestoreProgress(lambda: faust, lambda: restoring[0], "rocksdb", clock)
    assert progress.report()["state"] == "waiting"
    progress.on_assigned()
    report = progress.report()
    assert report["state"] == "restoring" and report["store"] == "rocksdb"
    assert report["to_apply"] is None and report["progress"] is None  # ends not read yet
    assert (report["partitions"], report["rebuilding"]) == (3, 1)
    # Faust reads the ends, then applies: 100 of KEPT's tail, 250 of LOST's 1,000
    faust.active_highwaters.update({KEPT: 999, LOST: 999, LEADS: 40})
    faust.active_offsets[KEPT], faust.active_offsets[LOST] = 999, 249
    clock.now += 2.5
    report = progress.report()
    assert (report["applied"], report["to_apply"]) == (350, 1100)
    assert report["progress"] == round(350 / 1100, 4)
    assert report["seconds"] == 2.5
    partials = report["tables"]["fp-partials"]
    assert (partials["applied"], partials["to_apply"], partials["rebuilding"]) == (350, 1100, 1)
    assert report["tables"]["fp-leads"]["progress"] == 1.0  # nothing to read: done
    faust.active_offsets[LOST] = 999
    restoring[0] = False
    progress.on_restored()
    clock.now += 10
    done = progress.report()
    assert done["state"] == "done" and done["applied"] == done["to_apply"] == 1100
    assert done["progress"] == 1.0 and done["seconds"] == 2.5  # how long it took


def test_a_compacted_head_counts_as_applied_never_beyond_the_end() -> None:
    """Faust starts at the earliest offset still on the broker: the gap is progress."""
    faust = recovery({LOST: None})
    progress = RestoreProgress(lambda: faust, lambda: True, "memory")
    progress.on_assigned()
    faust.active_highwaters[LOST] = 99
    faust.active_offsets[LOST] = 120  # beyond the highwater read (written meanwhile)
    report = progress.report()
    assert (report["applied"], report["to_apply"], report["rebuilding"]) == (100, 100, 1)


def test_seconds_without_progress_counts_while_nothing_is_applied() -> None:
    """A restore whose applied offsets stop moving says for how long (/healthz turns
    ``stalled`` past 120 s while Faust still recovers); any progress resets it."""
    faust, clock = recovery({KEPT: None}), Clock()
    restoring = [True]
    progress = RestoreProgress(lambda: faust, lambda: restoring[0], "rocksdb", clock)
    assert progress.report()["seconds_without_progress"] == 0.0  # waiting: not restoring
    progress.on_assigned()
    faust.active_highwaters[KEPT] = 999
    clock.now += 30
    assert progress.report()["seconds_without_progress"] == 30.0  # nothing applied yet
    faust.active_offsets[KEPT] = 10
    clock.now += 5
    assert progress.report()["seconds_without_progress"] == 0.0  # moved: the clock restarts
    clock.now += 121
    assert progress.report()["seconds_without_progress"] == 121.0
    faust.active_offsets[KEPT] = 999  # all applied, yet Faust never ends the recovery:
    clock.now += 1
    assert progress.report()["seconds_without_progress"] == 0.0
    clock.now += 200
    assert progress.report()["seconds_without_progress"] == 200.0  # ... a hang, reported
    restoring[0] = False
    progress.on_restored()
    assert progress.report()["seconds_without_progress"] == 0.0  # done
