"""The merge state this worker owns, and the publish tick that turns it into KPIs.

Each tick sums the panes of every scope that changed, and of the scopes last computed a
minute ago or more (windows slide even without new events), into each rolling window, then
writes one Redis pipeline, sets the Prometheus gauges and sends changed snapshots to the
``kpis`` topic. Scopes this worker gained with a partition (a start, a restart, a
takeover) are republished too, but behind the ones with new events and a share per tick:
after a restart with 2,000 campaigns, republishing all of them in the first tick took
2.7 s, and the first new events waited for it. A Redis failure skips Redis for that tick
and keeps the scopes dirty, so the full current state is republished once Redis answers;
consumption never waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from faust.exceptions import NotReady

from funnelpulse.malloc import trim
from funnelpulse.security import redis_client_kwargs
from funnelpulse.settings import Settings
from metrics.alerts import AlertTracker, reading_from
from metrics.counts import Counts
from metrics.prometheus import Metrics
from metrics.redis_client import connect
from metrics.redis_publisher import PublishError, RedisPublisher
from metrics.snapshots import build_snapshot, has_data, window_counts
from metrics.windows import PANE_SIZES, WindowSpec, groups_read, oldest_kept

from .campaign_channels import CampaignChannels
from .group_set import GroupSet
from .latest import LatestSnapshots
from .local_store import NotHeld, local_store, prefix
from .pane_groups import (
    EVICT_EVERY,
    GROUP_PANES,
    PaneGroups,
    block_of,
    group_key,
    group_last_start,
    merged_totals,
    split_group_key,
)
from .pane_values import merge_partial
from .progress import Progress
from .refresh import refresh_share, stale_scopes, take_scopes


@dataclass(frozen=True)
class Outputs:
    kpis: Any  # topic: snapshots, keyed window:scope
    alerts: Any  # topic: alert state changes


@dataclass(frozen=True)
class Assignment:
    actives: Callable[[], Iterable[Any]]  # the topic-partitions this worker is active for
    recovering: Callable[[], bool]  # tables are being restored


log = logging.getLogger("funnelpulse.publisher")
REFRESH_EVERY = 60.0  # a quiet scope's windows are recomputed about this often
# Scopes published per tick. A burst of new campaign ids (100,000 in the cardinality test)
# would otherwise make one tick compute, write and send every snapshot at once, blocking
# the event loop for tens of seconds; the rest wait their turn, oldest first.
MAX_SCOPES_PER_TICK = 2_000
# Scopes computed, written to Redis and sent together within a tick. All of a tick's at
# once were up to 12,000 snapshot dicts (2,000 scopes in six windows), their Redis
# commands and kpis messages alive together (~1.7 KB a dict), with the window counts each
# scope keeps (``latest``) allocated in between. On its own it moved the 2,000-campaign
# memory benchmark by nothing measurable (a tick there holds at most 2,000 scopes); it
# bounds a tick's transient work whatever the number of scopes.
PUBLISH_CHUNK = 200
BACKFILL_EVERY = 20.0  # the scopes of gained partitions are republished within about half this
# glibc keeps what a drain's batches freed (funnelpulse/malloc.py): a trim in the middle of
# the 10,000-campaign drain took the worker from 353 to 309 MB (bench/memtrace.py); one
# costs ~30-40 ms on a fragmented heap of that size (a synthetic one). Trimmed only after
# each eviction round (a minute), the peak and the steady size both kept those pages.
TRIM_EVERY = 10.0


class KpiPublisher:
    def __init__(
        self,
        settings: Settings,
        *,
        specs: Sequence[WindowSpec],
        metrics: Metrics,
        clock: Callable[[], float],
        merged: Any,
        merged_groups: Callable[[int], PaneGroups[Any]],
        outputs: Outputs,
        campaign_channels: CampaignChannels,
        progress: Progress,
        assignment: Assignment,
        state_sizes: Callable[[], dict[str, int]],
    ) -> None:
        """Narrow inputs: the merged table (and views of it), the two output topics, what
        the stages processed, and two questions about the group's assignment."""
        self.settings, self.specs, self.metrics, self.clock = settings, specs, metrics, clock
        self.pane_sizes = PANE_SIZES
        self.merged, self.merged_groups = merged, merged_groups
        self.kpis_topic, self.alerts_topic = outputs.kpis, outputs.alerts
        self.campaign_channels, self.progress = campaign_channels, progress
        self.actives, self.recovering = assignment.actives, assignment.recovering
        self.state_sizes = state_sizes
        # scope → the (pane size, block start) of its pane groups, and its merge partition
        self.index: dict[str, GroupSet] = {}  # streams/group_set.py
        self.dirty: set[str] = set()
        self.due: dict[str, None] = {}  # dirty scopes in arrival order (a FIFO queue)
        self.backfill: dict[str, None] = {}  # scopes of gained partitions, not computed yet
        # window → scope → the snapshot last published (kept as counts: streams/latest.py)
        self.latest = LatestSnapshots(specs)
        self.redis: RedisPublisher | None = None
        self.redis_ok = False
        self.redis_error: str | None = None  # the failure last logged, until Redis works
        self._redis_error_kind: str | None = None
        self.redis_backlog: set[str] = set()
        self._last_evict = 0.0
        self._last_trim = 0.0
        # scope → when its snapshots were last computed, oldest first
        self.computed_at: dict[str, float] = {}
        self.last_tick = 0.0
        self.alerts = AlertTracker(settings.cpl_rule)
        self.alert_dirty: set[str] = set()
        self._done_seen = 0  # messages processed as of the previous tick
        self.lag: dict[str, int] = {}
        self._owned: set[int] = set()  # merge partitions this worker is active for

    # -- merge state ------------------------------------------------------------------
    def merge(
        self,
        state: PaneGroups[Any],
        partition: int,
        source: str,
        scope: str,
        panes: list[list[Any]],
    ) -> None:
        """Keeps the newest partial per source; the caller flushes ``state`` once per batch."""
        known = self._groups(scope, partition)
        for size, start, ver, counts in panes:
            key = (scope, size, start)
            merged = merge_partial(state.get(key), source, ver, counts)
            if merged is not None:
                state[key] = merged
                known.add((size, block_of(size, start)))
                self.dirty.add(scope)

    def _groups(self, scope: str, partition: int) -> GroupSet:
        """The scope's groups (none yet: made, in ``partition``)."""
        found = self.index.get(scope)
        if found is None:
            found = self.index[scope] = GroupSet(partition)
        return found

    def rebuild_index(self) -> None:
        self.index.clear()
        self._last_evict = self.clock()  # not on the first tick after a recovery (tick)
        owned = self._owned_partitions()
        # none owned if the assignment is not whole yet: the next tick tries again
        self._owned = owned if self._index_held(owned) else set()

    def _index_held(self, partitions: set[int]) -> bool:
        """Indexes ``partitions``; False (and logged) when one of their tables is not held
        here. The trap: the group may hand out an assignment without some table's
        partitions (a changelog topic not yet in the cluster metadata, made moments ago
        by a fresh app); the batches wait for a whole assignment (``streams/assignment.py``),
        and the publisher must too — a read of a table partition not held raises
        ``NotHeld`` (``local_store``), and raised from the publish timer it stopped the
        worker. What the attempt indexed is dropped again (a partition that then moves
        away must not leave scopes here to publish); the next attempt reads it all."""
        try:
            self._index_partitions(partitions)
        except NotHeld as exc:
            log.info("not indexing merge partitions %s yet: %s", sorted(partitions), exc)
            for scope in [s for s, groups in self.index.items() if groups.partition in partitions]:
                del self.index[scope]
                self.backfill.pop(scope, None)
            return False
        return True

    def _index_partitions(self, partitions: set[int]) -> None:
        """Indexes the merged panes of ``partitions`` (others here are standby copies of
        another worker's partitions: not ours to publish) and queues their scopes to be
        republished (``backfill``)."""
        for partition, fulls in local_store(self.merged).keys_by_partition(partitions).items():
            for full in fulls:
                scope, size, block = split_group_key(full.partition("|")[2])
                self._groups(scope, partition).add((size, block))
                self.backfill[scope] = None
        self.campaign_channels.load(partitions)

    def pane_totals(
        self, scope: str, wanted: set[tuple[int, int]] | None = None
    ) -> dict[tuple[int, int], Counts]:
        """The scope's merged panes, (size, start) → counts summed over sources; with
        ``wanted`` (``metrics.windows.groups_read``) only the groups holding a pane some
        window sums are read: 35 days of hourly panes are decoded only when a window
        reaches back that far, and of 25 h of minute panes only those at the edges."""
        groups = self.index[scope]
        partition = groups.partition
        store = local_store(self.merged)
        totals = {}
        for size, block in groups:
            if wanted is not None and (size, block) not in wanted:
                continue
            raw = store.get(partition, prefix(partition) + group_key(scope, size, block),
                            scan=True)  # fmt: skip
            if raw is not None:
                for start, counts in merged_totals(raw, size, block).items():
                    totals[(size, start)] = counts
        return totals

    # -- the tick ---------------------------------------------------------------------
    async def tick(self) -> None:
        started = time.monotonic()
        self.lag = await self.progress.measure_lag()
        phases = [("lag", time.monotonic())]
        now = self.clock()
        self.due.update(dict.fromkeys(self.dirty))
        interval = self.settings.publish_interval
        self.due.update(dict.fromkeys(stale_scopes(self.computed_at, now, interval, REFRESH_EVERY)))
        self.dirty = set()
        share = refresh_share(len(self.index), interval, BACKFILL_EVERY)
        fresh, restored = take_scopes(self.due, self.backfill, MAX_SCOPES_PER_TICK, share)
        self._follow_ownership()
        # new counts reach Redis before the republished scopes are even read from the store;
        # with Redis down (the first pass failed) the restored ones wait in ``backfill``
        # for the next tick: a second pass would only meet the same failure again
        if not await self._publish(fresh, now):
            return
        phases.append((f"{len(fresh)} new", time.monotonic()))
        computed = fresh
        if restored and self.redis_ok:
            if not await self._publish(restored, now):
                return
            computed = fresh | restored
        phases.append((f"{len(computed) - len(fresh)} republished", time.monotonic()))
        for alert in self._evaluate_alerts(computed, now):
            try:
                await self._announce(alert)
            except NotReady:  # SIGTERM stopped the producer mid-tick (as in ``_publish``):
                # the alert state lives in memory, so a restarted worker announces it again
                log.info("stopping: alert %s for %s not sent", alert["alert"], alert["scope"])
                return
        self._set_gauges()
        # housekeeping last: it walks the whole index, which grows with the history
        if now - self._last_evict >= EVICT_EVERY:
            self._last_evict = now
            await self._evict(now)
        if now - self._last_trim >= TRIM_EVERY:
            self._last_trim = now
            trim()  # hand what batches, evictions and bursts freed back (funnelpulse/malloc.py)
        self.last_tick = time.time()
        self._health_metrics()
        phases.append(("alerts and housekeeping", time.monotonic()))
        self._say_if_slow(started, phases)
        self.metrics.publish_seconds.observe(time.monotonic() - started)

    def _say_if_slow(self, started: float, phases: list[tuple[str, float]]) -> None:
        """A tick longer than the publish interval delays the next one, and with it every
        new count (Faust only says "Timer publish is overlapping"): logs where it went."""
        took = phases[-1][1] - started
        if took > self.settings.publish_interval:
            spans, last = [], started
            for name, at in phases:
                spans.append(f"{name} {at - last:.2f}")
                last = at
            log.warning("publish tick took %.2f s: %s", took, ", ".join(spans))

    async def _publish(self, scopes: set[str], now: float) -> bool:
        """Computes ``scopes``' snapshots and writes them to Redis (and whatever Redis
        missed while it was down) and to the kpis topic, ``PUBLISH_CHUNK`` scopes at a
        time; False once the producer stopped. Once Redis failed in this pass, the
        remaining chunks wait in the backlog instead of meeting the failure again."""
        order = list(scopes)
        # no scope due still makes one pass: ``_to_redis`` then asks Redis (a PING), so
        # that "Redis is up" is known, and said, without any scope to publish
        for first in range(0, max(len(order), 1), PUBLISH_CHUNK):
            chunk = set(order[first : first + PUBLISH_CHUNK])
            snapshots = self._snapshots(chunk, now)
            if first == 0 or self.redis_ok:
                await self._to_redis(chunk, snapshots, now)
            else:
                self.redis_backlog |= chunk
            try:
                for snap in snapshots:
                    key = f"{snap['window']}:{snap['scope']}".encode()
                    await self.kpis_topic.send(key=key, value=orjson.dumps(snap))
            except NotReady:  # SIGTERM stopped the producer mid-tick: a restart republishes
                log.info("stopping: snapshots of %d scopes not sent to the kpis topic",
                         len(order) - first)  # fmt: skip
                return False
        return True

    def _health_metrics(self) -> None:
        """Lag, state sizes and the publisher's own backlog: a tick publishes at most
        ``MAX_SCOPES_PER_TICK`` scopes, so after a burst of new campaigns Redis trails the
        counters for a while, and ``funnelpulse_publish_pending_scopes`` says by how much
        (the benchmarks wait on it before they call Redis short)."""
        metrics = self.metrics
        pending = {"due": len(self.due) + len(self.dirty), "backfill": len(self.backfill),
                   "redis_backlog": len(self.redis_backlog)}  # fmt: skip
        for queue, size in pending.items():
            metrics.pending_scopes.labels(queue).set(size)
        for topic, lag in self.lag.items():
            metrics.consumer_lag.labels(topic).set(lag)
        for table, size in self.state_sizes().items():
            metrics.state_keys.labels(table).set(size)

    @property
    def owned(self) -> set[int]:
        """The merge partitions whose scopes this worker publishes."""
        return set(self._owned)

    def _owned_partitions(self) -> set[int]:
        topic = self.merged.changelog_topic.get_topic_name()
        actives = self.actives()
        return {tp.partition for tp in actives if tp.topic == topic}

    def _follow_ownership(self) -> None:
        """Forgets the scopes of merge partitions this worker no longer owns (moved to
        another worker, or only a standby copy here) as soon as the assignment says so:
        their owner publishes them from fresher data, and a stale copy here would
        overwrite Redis and show on /kpis. Partitions gained are indexed once their
        tables are recovered (here, or by ``rebuild_index`` at the end of recovery)."""
        owned = self._owned_partitions()
        if owned == self._owned:
            return
        lost = self._owned - owned
        if lost:
            self._owned -= lost
            self.campaign_channels.forget(lost)
            for scope in [s for s, groups in self.index.items() if groups.partition in lost]:
                del self.index[scope]
                self.computed_at.pop(scope, None)
                self.latest.forget(scope)
        gained = owned - self._owned
        if gained and not self.recovering() and self._index_held(gained):
            self._owned |= gained

    def _snapshots(self, scopes: set[str], now: float) -> list[dict[str, Any]]:
        snapshots = []
        wanted = groups_read([spec.cover(now) for spec in self.specs], GROUP_PANES)
        for scope in scopes:
            self.computed_at.pop(scope, None)
            self.backfill.pop(scope, None)
            if scope not in self.index:
                continue
            self.computed_at[scope] = now  # at the end: the newest
            panes = self.pane_totals(scope, wanted)
            for spec in self.specs:
                counts = window_counts(panes, spec, now)
                if has_data(counts) or scope in self.latest[spec.name]:
                    snapshots.append(build_snapshot(spec, scope, counts, now))
                    self.latest[spec.name].put(scope, counts, now)
        return snapshots

    def _evaluate_alerts(self, scopes: set[str], now: float) -> list[dict[str, Any]]:
        """cpl_spike for ``all`` and every campaign whose numbers changed, or that is
        pending or firing; skipped while this worker is reading a backlog."""
        self.alert_dirty |= scopes
        done = self.progress.messages_done
        done_last_tick, self._done_seen = done - self._done_seen, done
        if not self.progress.caught_up(self.lag, done_last_tick):
            return []  # reading a backlog: numbers are still moving
        rule = self.alerts.rule
        short, long = self.latest[rule.short_window], self.latest[rule.long_window]
        events = []
        due, self.alert_dirty = self.alert_dirty | self.alerts.watched(), set()
        for scope in due:
            if scope.startswith("channel:") or scope not in long:
                continue
            event = self.alerts.observe(scope, reading_from(short.get(scope, {}), long[scope]), now)
            if event is not None:
                events.append(event)
        return events

    async def _announce(self, alert: dict[str, Any]) -> None:
        """Kafka (durable), Redis pub/sub (at most once), the gauge, and the log."""
        firing = alert["state"] == "firing"
        self.metrics.set_alert(alert["alert"], alert["scope"], firing)
        log.warning("alert %s %s for %s: CPL %s vs baseline %s", alert["alert"], alert["state"],
                    alert["scope"], alert["current_cpl"], alert["baseline_cpl"])  # fmt: skip
        body = orjson.dumps(alert)
        await self.alerts_topic.send(key=alert["scope"].encode(), value=body)
        if self.redis is not None:
            try:
                await self.redis.publish_alert(alert)
            except PublishError as exc:
                self._redis_failed(exc)

    def active_alerts(self) -> list[dict[str, Any]]:
        return [
            {"alert": "cpl_spike", "scope": a.scope, "reason": a.reason, "started_at": a.started_at}
            for a in self.alerts.active.values()
        ]

    def _set_gauges(self) -> None:
        for window, by_scope in self.latest.items():
            self.metrics.set_kpis(window, by_scope.counts)

    def redis_target(self) -> RedisPublisher:
        """The Redis client and key prefix (made on first use: ticks and /kpis share it)."""
        if self.redis is None:
            s = self.settings
            client = connect(s.redis_url, redis_client_kwargs(s), retries=2)
            self.redis = RedisPublisher(client, s.redis_prefix, s.kpi_ttl)
        return self.redis

    async def _to_redis(
        self, scopes: set[str], snapshots: list[dict[str, Any]], now: float
    ) -> None:
        redis = self.redis_target()
        if not self.redis_ok:
            scopes = scopes | self.redis_backlog
            snapshots = [
                by_scope[s] for by_scope in self.latest.values() for s in scopes if s in by_scope
            ]
        try:
            await redis.publish(snapshots, now)
        except PublishError as exc:
            self._redis_failed(exc)
            self.redis_backlog |= scopes
            return
        self.redis_ok = True
        self.redis_error = self._redis_error_kind = None
        self.redis_backlog = set()
        self.metrics.redis_up.set(1)

    def _redis_failed(self, exc: PublishError) -> None:
        """Logged once per kind of failure (not per call that met it) until Redis works."""
        if exc.kind != self._redis_error_kind:
            log.warning("%s; will republish when Redis is back", exc)
            self._redis_error_kind = exc.kind
        self.redis_error = str(exc)
        self.redis_ok = False
        self.metrics.publish_failures.labels("redis").inc()
        self.metrics.redis_up.set(0)

    async def _evict(self, now: float) -> None:
        horizon = self.settings.horizon
        oldest = {size: oldest_kept(size, now, horizon) for size in self.pane_sizes}
        for scope in list(self.index):  # not its items: 100,000 fresh tuples every minute
            groups = self.index.get(scope)
            if groups is None:  # forgotten over an await below (a revocation)
                continue
            stale = {
                (size, block)
                for size, block in groups
                if group_last_start(size, block) < oldest[size]
            }
            groups.discard_all(stale)
            if stale:
                state = self.merged_groups(groups.partition)
                for size, block in stale:
                    state.drop_group(scope, size, block)
                await state.flush()
                if not groups and scope.startswith("campaign:"):  # its totals go with it
                    await self.campaign_channels.drop(scope.partition(":")[2])
