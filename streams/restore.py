"""How far the restore of this worker's tables has got, for ``/healthz``.

A restart with the RocksDB store reads only the changelog records its disk has not
applied; a worker that lost its disk (or a memory-store worker, or a partition new here)
reads each changelog from its start, which can take minutes. ``/healthz`` says which, and
how far along it is, from Faust's own recovery state (``faust.tables.recovery.Recovery``):

- at each assignment (``on_assigned``, called after Faust's ``tables.on_rebalance`` has
  registered the active changelog partitions with the offset their local store holds —
  RocksDB's persisted offset, or what the memory store still holds from the previous
  generation — or ``None``), that offset is the start: ``None`` means the partition has
  no local state and is rebuilt from the changelog;
- while restoring, Faust's ``active_highwaters`` (the last offset to read) and
  ``active_offsets`` (the last offset applied) give ``to_apply = highwater - start`` and
  ``applied = offset - start``.

The trap: these count changelog *offsets*, not records. A compacted changelog has gaps,
and Faust starts reading at the earliest offset still on the broker, so ``applied`` may
jump and the real number of records read is at most ``to_apply``. As progress it is
right (it ends at ``applied == to_apply``); as a record count it is an upper bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TableOf = Callable[[Any], str | None]  # changelog partition → its table's name


@dataclass
class Figures:
    applied: int = 0
    to_apply: int | None = 0  # None: Faust has not read the changelog's end yet
    partitions: int = 0
    rebuilding: int = 0  # partitions with no local state: read from the changelog's start

    def add(self, applied: int, to_apply: int | None, rebuilding: bool) -> None:
        self.applied += applied
        self.to_apply = (
            None if to_apply is None or self.to_apply is None else self.to_apply + to_apply
        )
        self.partitions += 1
        self.rebuilding += rebuilding

    def as_json(self) -> dict[str, Any]:
        done = None
        if self.to_apply is not None:
            done = 1.0 if self.to_apply == 0 else round(self.applied / self.to_apply, 4)
        return {"applied": self.applied, "to_apply": self.to_apply, "progress": done,
                "partitions": self.partitions, "rebuilding": self.rebuilding}  # fmt: skip


@dataclass
class RestoreProgress:
    """``recovery``: Faust's ``app.tables.recovery`` (read when asked); ``restoring``: is
    Faust rebalancing or restoring now; ``store``: ``memory`` or ``rocksdb``."""

    recovery: Callable[[], Any]
    restoring: Callable[[], bool]
    store: str
    clock: Callable[[], float] = time.monotonic
    start: dict[Any, int | None] = field(default_factory=dict)
    began: float | None = None
    ended: float | None = None
    _moved: tuple[int, float] = (0, 0.0)  # (offsets applied, when that figure last changed)

    def on_assigned(self) -> None:
        """Takes the start offsets of the active changelog partitions just assigned."""
        recovery = self.recovery()
        self.start = {tp: recovery.active_offsets.get(tp) for tp in recovery.active_tps}
        self.began, self.ended = self.clock(), None
        self._moved = (0, self.began)

    def on_restored(self) -> None:
        self.ended = self.clock()

    def report(self) -> dict[str, Any]:
        restoring = self.restoring()
        if self.began is None:
            state = "waiting"  # no assignment yet
        else:
            state = "restoring" if restoring or self.ended is None else "done"
        overall, tables = Figures(), dict[str, Figures]()
        recovery = self.recovery()
        highwaters, offsets = recovery.active_highwaters, recovery.active_offsets
        for tp, start in self.start.items():
            first = -1 if start is None else start
            high, at = highwaters.get(tp), offsets.get(tp)
            to_apply = None if high is None else max(high - first, 0)
            applied = 0 if at is None else max(at - first, 0)
            if to_apply is not None:
                applied = min(applied, to_apply)
            table = recovery.tp_to_table.get(tp)
            name = tp.topic if table is None else table.name
            for figures in (overall, tables.setdefault(name, Figures())):
                figures.add(applied, to_apply, start is None)
        end = self.clock() if self.ended is None else self.ended
        if overall.applied != self._moved[0]:
            self._moved = (overall.applied, end)
        return {
            "state": state,
            "seconds_without_progress": (
                round(end - self._moved[1], 3) if state == "restoring" else 0.0
            ),
            "store": self.store,
            **overall.as_json(),
            "seconds": None if self.began is None else round(end - self.began, 3),
            "tables": {name: figures.as_json() for name, figures in sorted(tables.items())},
        }
