"""One counting stage's state: its partial panes, its dedup index, its replay marks.

The intake and the funnel count the same way (``streams/batch.py``, ``counting.py``):
per partition of their own, into partial panes whose values carry the last source offset
they hold, deduplicated by a per-partition index of event identities. This object holds
that state for one stage — the two tables, the decoded groups kept between batches, the
highest offsets applied per (partition, source topic), the panes changed since the last
snapshot — and is the only thing that writes it.

The trap it guards: the applied high waters decide whether a batch may be counted in one
pass (every offset above anything the partition ever applied) or message by message
against each pane's mark. They are read from the stored panes, and again after every
recovery, since partitions move between workers. After a recovery that reading is a walk
of every stored group, which grows with the history: it goes a slice per snapshot tick
(``read_stored``), behind the new events, and until it is done the partition's messages
are counted one by one against each pane's mark (the exact path, never wrong, slower).
The walk's high waters are then completed with the offsets counted meanwhile.

And the sent mark: after a recovery, the panes whose merge snapshot may have been lost in
a crash are sent again. Sending every pane (what this did first) grew with the history:
at 8 M events, two fifths of a restarted worker's first seconds went into re-sending and
re-merging panes the merge stage already held. So each partition keeps, as one record in
its partials table (``SENT_MARK``), the high waters of the last snapshot tick whose every
message the broker has acknowledged; a pane whose marks are all at or below it went out
with its current value, and only the others are sent again. A mark that is old, lost or
never written only means more is sent again: it is written at most every
``MARK_EVERY`` seconds, never past a re-send still under way, and never again in a
process where a snapshot failed.

The mark's second trap: a message re-delivered after a recovery (at or below the stored
high waters) changes the panes its crashed first count did not reach. A mark taken from
the stored high waters would cover those changes before they are made, and a crash
after them would not send them again. So a mark holds, per source topic, only what is
counted since this recovery (every later message is above it) or the stored mark (every
message at or below it had reached all its panes when that mark was stored: a
re-delivery of it changes nothing).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from metrics.prometheus import Metrics
from metrics.windows import oldest_kept

from .batch import Batch, PartitionWork, count_group
from .campaign_channels import ChannelTally
from .counting import Stores
from .dedup import DedupIndex, MessageDedup, cutoff_for_cap, rebuild, sweep
from .disk_index import DiskIndexes
from .exactly_once.delivery import delivered
from .local_store import NotHeld, RocksStore, assigned_here, local_store
from .pane_groups import (
    EVICT_EVERY,
    PARTIAL,
    SENT_MARK,
    GroupCache,
    GroupKey,
    PaneGroups,
    PaneKey,
    group_last_start,
)
from .stage import Stage
from .state import Lead
from .stored_walk import StoredWalk
from .table_state import PartitionState, compact_json

log = logging.getLogger("funnelpulse")
# groups of a recovered partition sent again per share, behind the new changes: up to 16
# panes each, so ~8,000 panes; the next share waits until the merge stage has taken this
# one (partial_snapshots.ResendPace)
RESEND_GROUPS = 500
# a snapshot tick (every 100 ms) reads recovered partitions' stored groups for this long
# per counting stage (``read_stored``), a slice of WALK_SLICE groups at a time: the walk
# ends as soon as the loop can afford, whatever the machine
WALK_SECONDS = 0.015
WALK_SLICE = 250
MARK_EVERY = 5.0  # seconds between writes of a partition's sent mark
HighWaters = dict[str, int]  # source topic index (as in pane marks) → offset


def _marker(raw: list[int]) -> tuple[int, int, int]:
    return (raw[0], raw[1], raw[2])


def _lead_record(lead: Lead) -> bytes:
    """A lead as stored: its JSON bytes (a lead per sign-up: 300,000 in the memory
    benchmark, ~360 bytes each as Python lists and strings, ~180 as bytes)."""
    return compact_json(lead.to_json())


def _lead_from_record(raw: bytes) -> Lead:
    return Lead.from_json(orjson.loads(raw))


class PartialCounts:
    """``lead_tables``: (leads, customers) for the funnel stage, whose counting reads and
    writes lead state in the same batch as its panes."""

    def __init__(
        self,
        stage: Stage,
        partials: Any,
        dedup: Any,
        *,
        horizon: float,
        pane_sizes: Sequence[int],
        max_future: float,
        dedup_horizon: float,
        dedup_max_ids: int,
        metrics: Metrics,
        channels: ChannelTally,
        lead_tables: tuple[Any, Any] | None = None,
        active: Callable[[int], bool] | None = None,
    ) -> None:
        """``active``: is the partials table's partition active here (default: Faust's
        assignment, ``local_store.assigned_here``)?"""
        self.stage = stage
        self.partials, self.dedup = partials, dedup
        self.horizon, self.pane_sizes = horizon, pane_sizes
        self.max_future = max_future
        self.dedup_horizon, self.dedup_max_ids = dedup_horizon, dedup_max_ids
        self.metrics = metrics
        self.channels = channels  # events per (campaign, channel), for the gauges' label
        self.lead_tables = lead_tables
        self.cache: GroupCache[Any] = GroupCache()  # decoded groups between batches
        self.pending: dict[int, set[PaneKey]] = defaultdict(set)  # panes to snapshot
        self.pending_groups: dict[int, set[GroupKey]] = defaultdict(set)  # whole groups
        # groups of recovered partitions to send again, a share per snapshot tick
        self.resend: dict[int, set[GroupKey]] = {}
        self.active = active or assigned_here(partials, standby=False)  # ours to snapshot?
        self.applied: dict[tuple[int, int], int] = {}  # (partition, topic) → offset
        self._applied_known: set[int] = set()  # partitions whose high waters were read
        self.walks: dict[int, StoredWalk] = {}  # recovered partitions still being read
        self.counted: dict[tuple[int, int], int] = {}  # highest offset since the recovery
        self.dedup_indexes: dict[int, DedupIndex] = {}
        # with RocksDB, the index is on disk beside the records (streams/disk_index.py)
        dedup_store = local_store(dedup)
        self.disk_indexes = (
            DiskIndexes(dedup_store) if isinstance(dedup_store, RocksStore) else None
        )
        self._last_evict: dict[int, float] = {}
        # the sent mark: partitions whose re-send was queued at their recovery here (a mark
        # may be written for those only); snapshot ticks not yet delivered, oldest first;
        # per partition the newest delivered mark, and the one stored (with its time)
        self._resend_queued: set[int] = set()
        self._undelivered: list[tuple[dict[int, HighWaters], list[Any]]] = []
        self._delivered: dict[int, HighWaters] = {}
        self._stored_marks: dict[int, tuple[float, HighWaters]] = {}
        self._marks_broken = False

    # -- one batch ----------------------------------------------------------------------
    def open_partition(self, partition: int, now: float) -> PartitionWork:
        """The tables one batch may change in ``partition``."""
        dedup = MessageDedup(self.dedup_index(partition))
        work = PartitionWork(
            partials=self.groups(partition),
            oldest=self.oldest_panes(now),
            dedup_table=PartitionState(self.dedup, partition),
            dedup=dedup,
            stores=Stores(dedup=dedup, leads={}, customers={}),
        )
        if self.lead_tables is not None:
            leads_table, customers_table = self.lead_tables
            leads: PartitionState[Lead] = PartitionState(
                leads_table, partition, _lead_record, _lead_from_record
            )
            customers: PartitionState[Any] = PartitionState(
                customers_table, partition, decode=_marker
            )
            work.stores = Stores(dedup=dedup, leads=leads, customers=customers)
            work.flushers = [leads, customers]
        return work

    def count(self, batch: Batch) -> list[tuple[Any, Exception]]:
        """Counts each (partition, topic) group of the batch; returns messages that failed."""
        failed: list[tuple[Any, Exception]] = []
        for (partition, topic), items in batch.groups.items():
            work = batch.partition(partition)
            applied = self.applied_offset(partition, topic)
            try:
                for outcome in count_group(work, items, topic, applied, self.pane_sizes):
                    batch.tally.add(outcome)
            except Exception as exc:  # a bug: keep the worker and the messages
                log.exception("counting failed on partition %s of source %s", partition, topic)
                failed += [(msg, exc) for _off, _evs, msg in items]
            last, key = items[-1][0], (partition, topic)
            self.counted[key] = max(self.counted.get(key, -1), last)
            if applied is not None:
                self.applied[key] = max(applied, last)
        return failed

    async def finish(self, batch: Batch, processed: Mapping[str, int]) -> None:
        """Writes what the batch changed, then the metrics; the offsets are acked after.
        ``processed``: messages per stage label of ``funnelpulse_messages_processed``."""
        firsts: list[Any] = []
        for work in batch.parts.values():
            firsts += await work.send_firsts(batch.now)
        await delivered(firsts)  # before any pane record: ``PartitionWork.send_firsts``
        for partition, work in batch.parts.items():
            await self._maybe_evict(partition, work.partials, batch.now)
            await work.send_panes()
            # looked up now: the snapshot timer swaps ``pending`` while a batch awaits
            self.pending[partition] |= work.touched
        self._record(batch)
        for label, n in processed.items():
            if n:
                self.metrics.processed.labels(label).inc(n)

    def _record(self, batch: Batch) -> None:
        tally, metrics = batch.tally, self.metrics
        metrics.count_events(tally.counted)
        self.channels.add(tally.counted)
        metrics.count_money(tally.money)
        metrics.count_funnel(tally.impressions, tally.stages)
        for kind, n in tally.duplicates.items():
            metrics.duplicates.labels(kind).inc(n)
        if tally.late:
            metrics.late_events.inc(tally.late)
        for topic, newest in tally.newest.items():
            metrics.newest_event.labels(topic).set(newest)
        if tally.newest:
            metrics.processing_lag.set(max(0.0, batch.now - max(tally.newest.values())))

    # -- panes --------------------------------------------------------------------------
    def groups(self, partition: int) -> PaneGroups[Any]:
        return PaneGroups(self.partials, partition, PARTIAL, self.cache)

    def oldest_panes(self, now: float) -> dict[int, float]:
        """Per pane size, the oldest pane start eviction would keep: older panes are not
        even written (an event 30 hours old adds to its hourly pane only: minute panes
        are kept 25 h, hourly ones for the horizon)."""
        cutoff = now - self.max_future
        return {size: oldest_kept(size, cutoff, self.horizon) for size in self.pane_sizes}

    def take_changed(
        self, budget: int = RESEND_GROUPS
    ) -> tuple[dict[int, set[PaneKey]], dict[int, set[GroupKey]]]:
        """The panes and whole groups changed since the last call, per partition, then up
        to ``budget`` groups of the recovered partitions' re-send."""
        pending, self.pending = self.pending, defaultdict(set)
        groups, self.pending_groups = self.pending_groups, defaultdict(set)
        for partition in list(self.resend):
            waiting = self.resend[partition]
            if not self.active(partition):  # moved away (or a standby copy): not ours
                waiting.clear()
            while waiting and budget > 0:
                groups[partition].add(waiting.pop())
                budget -= 1
            if not waiting:
                del self.resend[partition]
        return pending, groups

    @property
    def changed(self) -> bool:
        """Whether a snapshot would send anything: panes or groups changed, or a re-send."""
        return any(self.pending.values()) or any(self.pending_groups.values()) or bool(self.resend)

    @property
    def resending(self) -> int:
        """Groups of recovered partitions not sent again yet."""
        return sum(map(len, self.resend.values()))

    def applied_offset(self, partition: int, topic: int) -> int | None:
        """The highest source offset any pane of this partition holds (-1: none); None
        while a recovered partition's stored panes are still being read. A partition
        first counted here without a recovery is read at once, whole."""
        if partition in self.walks:
            return None
        if partition not in self._applied_known:
            walk = StoredWalk(None, set())
            walk.read(list(local_store(self.partials).items(partition)))
            self._walked(partition, walk)
        return self.applied.get((partition, topic), -1)

    def _walked(self, partition: int, walk: StoredWalk) -> None:
        """The partition's high waters: what its stored panes held when read, completed
        with what was counted meanwhile."""
        for key in [k for k in self.applied if k[0] == partition]:
            del self.applied[key]
        for topic, offset in walk.high.items():
            self.applied[(partition, topic)] = offset
        for (counted_in, topic), offset in self.counted.items():
            if counted_in == partition:
                key = (partition, topic)
                self.applied[key] = max(self.applied.get(key, -1), offset)
        self._applied_known.add(partition)

    def read_stored(self, seconds: float = WALK_SECONDS, slice_groups: int = WALK_SLICE) -> None:
        """Reads the recovered partitions' stored groups, a slice at a time, until
        ``seconds`` have passed (at least one slice: call once per snapshot tick, outside
        the durable section — the walk needs no pause of the batches, ``StoredWalk`` and
        ``LocalStore.walk``)."""
        deadline = time.monotonic() + seconds
        store = local_store(self.partials)
        for partition in sorted(self.walks):
            walk = self.walks[partition]
            while partition in self.walks:
                if not self.active(partition):  # moved away: read whole if it comes back
                    del self.walks[partition]
                    break
                try:
                    items, walk.after = store.walk(partition, walk.after, slice_groups)
                except NotHeld:
                    del self.walks[partition]
                    break
                walk.read(items)
                if walk.mark is not None and walk.resend:
                    self.resend[partition] = walk.resend
                if walk.after is None:
                    self._walk_done(partition, walk)
                if time.monotonic() >= deadline:
                    return

    def _walk_done(self, partition: int, walk: StoredWalk) -> None:
        del self.walks[partition]
        self._walked(partition, walk)
        log.info("%s partition %d: %d stored groups read after the recovery in %.1f s, "
                 "%d to send again", self.stage.value, partition, walk.groups,
                 time.monotonic() - walk.started, walk.found)  # fmt: skip

    def _stored_mark(self, partition: int) -> HighWaters:
        raw = local_store(self.partials).get(partition, f"{partition}|{SENT_MARK}")
        mark: HighWaters = orjson.loads(raw) if raw is not None else {}
        self._stored_marks[partition] = (time.monotonic(), mark)
        return mark

    async def on_partials_recovered(self) -> None:
        """After recovery, re-send the partials of the partitions active here whose
        snapshots may have been lost in a crash: those above the partition's sent mark
        (module docstring). They are found, and the applied high waters re-read
        (partitions may have moved), by a walk of the stored groups that the snapshot
        ticks make (``read_stored``): here only the marks are read.

        The re-send goes behind the panes that new messages change, a share per snapshot
        tick: sent at once, it held every pane of every scope (1.3 s of snapshot timer in
        a takeover with 2,000 campaigns, then as long again in the merge stage), and the
        first new counts after a restart or a takeover waited behind it. Standby copies
        are not ours to snapshot: their owner does."""
        self._applied_known.clear()
        self.walks.clear()
        self.counted.clear()  # a rebalance re-delivers from the committed offsets
        self._resend_queued.clear()
        self._undelivered.clear()  # ticks before the recovery: their marks are not needed
        self._delivered.clear()
        self._stored_marks.clear()
        for partition in sorted(local_store(self.partials).partitions()):
            if self.active(partition):
                mark = {int(t): offset for t, offset in self._stored_mark(partition).items()}
                self.walks[partition] = StoredWalk(mark, self.resend.pop(partition, set()))
                self._resend_queued.add(partition)

    # -- the sent mark ------------------------------------------------------------------
    def sent_through(self) -> dict[int, HighWaters]:
        """The high waters this snapshot tick sends everything through, per partition: call
        inside the tick's durable section, after ``take_changed``. Only partitions whose
        re-send was queued here and has all been found and gone out (a pane still waiting
        to be sent again may be below the high waters); per topic, the offsets counted
        since the recovery or the stored mark, not the stored high waters (the module's
        docstring: the mark's second trap)."""
        through: dict[int, HighWaters] = {}
        for partition in self._resend_queued:
            if partition in self.resend or partition in self.walks:
                continue
            if not self.active(partition):
                continue
            _written, stored = self._stored_marks.get(partition, (0.0, {}))
            marks = dict(stored)
            for (counted_in, topic), offset in self.counted.items():
                if counted_in == partition and offset > marks.get(str(topic), -1):
                    marks[str(topic)] = offset
            if marks:
                through[partition] = marks
        return through

    def snapshot_sent(self, through: dict[int, HighWaters], sends: list[Any]) -> None:
        """One tick's snapshot: ``sends`` are its messages' futures; once all are
        delivered (and every earlier tick's), ``through`` may be stored."""
        if not self._marks_broken:
            self._undelivered.append((through, sends))

    def marks_due(self, now: float | None = None) -> bool:
        """Whether ``store_marks`` would write a mark now."""
        self._take_delivered()
        return bool(self._due(time.monotonic() if now is None else now))

    def _take_delivered(self) -> None:
        """Oldest first, the ticks whose every send is delivered. The trap: acks of
        different merge partitions come in any order; a tick is taken only after every
        earlier one, and a failed send stops all marks of this process (the worker stops
        on it, ``require_delivery``; its panes would otherwise be below a stored mark)."""
        while self._undelivered and not self._marks_broken:
            through, sends = self._undelivered[0]
            if not all(sent.done() for sent in sends):
                return
            if any(sent.cancelled() or sent.exception() is not None for sent in sends):
                self._marks_broken = True
                self._undelivered.clear()
                return
            self._delivered.update(through)
            del self._undelivered[0]

    def _due(self, now: float) -> list[int]:
        due = []
        for partition, mark in self._delivered.items():
            written_at, stored = self._stored_marks.get(partition, (-MARK_EVERY, {}))
            if mark != stored and now - written_at >= MARK_EVERY:
                due.append(partition)
        return due

    async def store_marks(self, now: float | None = None) -> None:
        """Writes the due marks into the partials table (its changelog, like a pane). Call
        inside a durable section: no batch writes the partition meanwhile."""
        self._take_delivered()
        now = time.monotonic() if now is None else now
        for partition in self._due(now):
            if not self.active(partition):
                continue
            mark = self._delivered[partition]
            state: PartitionState[bytes] = PartitionState(self.partials, partition)
            state[SENT_MARK] = compact_json(mark)
            await state.flush()
            self._stored_marks[partition] = (now, mark)

    # -- dedup --------------------------------------------------------------------------
    def dedup_index(self, partition: int) -> DedupIndex:
        index = self.dedup_indexes.get(partition)
        if index is None:
            if self.disk_indexes is not None:
                index = self.disk_indexes.index(partition)
            else:
                index = rebuild(PartitionState(self.dedup, partition))
            self.dedup_indexes[partition] = index
        return index

    async def on_dedup_recovered(self) -> None:
        self.dedup_indexes.clear()  # rebuilt from the recovered tables on first use
        if self.disk_indexes is not None:
            self.disk_indexes.clear()

    def release_indexes(self) -> None:
        """Drops the disk indexes' handles on their databases: Faust closes a revoked
        partition's database by dropping the last reference (streams/disk_index.py)."""
        if self.disk_indexes is not None:
            self.disk_indexes.release()

    async def _maybe_evict(self, partition: int, state: PaneGroups[Any], now: float) -> None:
        # not on a partition's first batch: a restart's first new counts would wait for a
        # sweep of every stored id and group, which grows with the history
        if now - self._last_evict.setdefault(partition, now) < EVICT_EVERY:
            return
        if partition in self.walks:  # a group dropped under the walk would hide its marks
            return
        self._last_evict[partition] = now
        dedup_state: PartitionState[Any] = PartitionState(self.dedup, partition)
        index = self.dedup_index(partition)
        horizon_cut = now - self.dedup_horizon
        cut = cutoff_for_cap(index.times, len(index), self.dedup_max_ids, horizon_cut)
        dropped = await sweep(dedup_state, index, cut)
        if cut > horizon_cut:
            self.metrics.dedup_early.inc(dropped)
        oldest = self.oldest_panes(now)
        for scope, size, block in state.group_keys():  # a group goes when its newest pane can
            if group_last_start(size, block) < oldest[size]:
                state.drop_group(scope, size, block)

    def index_sizes(self) -> dict[str, int]:
        return {
            f"dedup_index_{self.stage.code}{p}": len(ix) for p, ix in self.dedup_indexes.items()
        }
