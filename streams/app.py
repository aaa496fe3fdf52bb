"""The funnelpulse Faust application, built by ``create_app(settings)``.

Topology (see README "How it works"):

1. ``intake`` reads the seven input topics (keyed by campaign). Per message it validates
   every event, dead-letters the bad ones, forwards sign-ups, lead stages and purchases to
   the funnel topic (keyed by lead), and counts the rest into *partial* minute/coarse
   panes of this source partition, with replay marks.
2. ``funnel`` owns lead and customer state (first touch, once per stage, first purchase)
   and counts funnel events into its own partial panes.
3. A timer sends absolute partial snapshots to the merge topic keyed by scope; ``merge``
   keeps the newest per source, so ``all`` and ``channel:*`` are exact across workers.
4. A publish tick sums panes into rolling windows for the scopes this worker owns and
   writes Redis, Prometheus gauges and the ``kpis`` topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from funnelpulse.security import faust_credentials, kafka_client_kwargs
from funnelpulse.settings import Settings
from metrics.prometheus import Metrics

from .batch import Batch, PartitionWork, count_group, message_batches
from .codec import dead_letter_headers, decode_events, encode_events, funnel_key, partition_for
from .counting import Stores
from .dedup import Dedup, MessageDedup, cutoff_for_cap, rebuild, sweep
from .events import FUNNEL_TYPES, Event, EventType, Limits, Rejected, decode_message
from .exactly_once.batches import BatchLimits
from .exactly_once.delivery import require_delivery
from .exactly_once.order import KafkaRecords, OffsetGuard
from .exactly_once.ownership import Ownership
from .pane_groups import (
    MERGED,
    PARTIAL,
    GroupCache,
    GroupKey,
    PaneGroups,
    decode_group,
    group_last_start,
    split_group_key,
)
from .panes import granularities, oldest_kept, window_specs
from .partials import version
from .peers import advertised_url
from .publisher import KpiPublisher
from .routing import HomePartitions, RoutePlan
from .settled import settled
from .state import Lead
from .table_state import PartitionState, compact_json
from .topics import DEAD_LETTER_MAX_BYTES, TABLE_PARTITIONS, TopicNames, table_name

log = logging.getLogger("funnelpulse")

TOPIC_INDEX = {kind: i for i, kind in enumerate(EventType)}
FUNNEL_SOURCE = len(TOPIC_INDEX)  # the funnel topic's index in replay marks
ROUTE_SOURCE = FUNNEL_SOURCE + 1  # the route topic's (streams/routing.py)
# Pane keys are overwritten all the time: let the broker compact them soon, so that a
# restart replays live keys, not every write since the topic was made.
CHANGELOG_CONFIG = {"segment.ms": str(10 * 60_000), "min.cleanable.dirty.ratio": "0.2"}
EVICT_EVERY = 60.0
LATE_AFTER = 60.0
# A crashed worker's partitions wait for its group session to expire before they move
# (Faust's default: 60 s); aiokafka heartbeats from the consumer thread every 3 s.
SESSION_TIMEOUT = 10.0
REVOKE_WAIT = SESSION_TIMEOUT / 2  # a revocation waits this long for the batch under way
CONSUMER_FETCH_BYTES = 256 * 1024
LAG_SLACK = 50  # messages in flight that never count as a backlog
SNAPSHOT_PANES_PER_MESSAGE = 2000  # ~200 KB of JSON
FORWARDED_PER_MESSAGE = 1000  # ~120 KB: one batch may forward 100,000 events


def _marker(raw: list[int]) -> tuple[int, int, int]:
    return (raw[0], raw[1], raw[2])


def _lead_record(lead: Lead) -> bytes:
    """A lead as stored: its JSON bytes (a lead per sign-up: 300,000 in the memory
    benchmark, ~360 bytes each as Python lists and strings, ~180 as bytes)."""
    return compact_json(lead.to_json())


def _lead_from_record(raw: bytes) -> Lead:
    return Lead.from_json(orjson.loads(raw))


class FunnelPulse:
    """Owns the Faust app and everything wired into it; no import-time globals."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.names = TopicNames.from_settings(settings)
        self.specs = window_specs(settings.windows)
        self.pane_sizes = granularities(self.specs)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.max_campaign_series)
        self.app = self._make_app()
        self._declare_topics()
        self._declare_tables()
        self.pending: dict[tuple[str, int], set[tuple[str, int, int]]] = defaultdict(set)
        # whole groups to snapshot (after recovery): (source, partition) → group keys
        self.pending_groups: dict[tuple[str, int], set[GroupKey]] = defaultdict(set)
        # decoded pane groups between batches: intake ("i"), funnel ("f") and merge ("m")
        self.group_caches: dict[str, GroupCache[Any]] = {s: GroupCache() for s in "ifm"}
        self.publisher = KpiPublisher(self)
        self._last_evict: dict[tuple[str, int], float] = {}
        self.last_progress = time.monotonic()
        self.processed: dict[tuple[str, int], int] = {}
        self.messages_done = 0
        self._offsets_client: AIOKafkaConsumer | None = None
        self.watched_topics = {*self.names.inputs.values(), self.names.funnel,
                               self.names.merge, self.names.route}  # fmt: skip
        self.homes = HomePartitions(settings.partitions)
        self.route_plan = RoutePlan()  # set at each assignment, before a batch is read
        self._previous_ends: dict[Any, int] = {}  # end offsets at the previous lag reading
        self.behind = False  # more than a batch waits in Kafka (at the last lag reading)
        self.settled = False  # what waited at the previous reading is processed
        self.dedup_indexes: dict[tuple[str, int], Dedup] = {}
        self.guard = OffsetGuard(KafkaRecords(kafka_client_kwargs(settings), settings.app_id))
        self.applied: dict[tuple[str, int, int], int] = {}  # (stage, partition, topic) → offset
        self._applied_known = False
        self._streams: list[faust.StreamT[bytes]] = []  # the agents' streams, for their buffers
        self.ownership = Ownership(self._state_whole, self._assigned)
        self._register()

    # -- wiring -----------------------------------------------------------------------
    def _make_app(self) -> faust.App:
        s = self.settings
        return faust.App(
            s.app_id,
            broker=f"kafka://{s.kafka_bootstrap_servers.replace(',', ';kafka://')}",
            store="memory://",
            datadir=s.data_dir,
            web_port=s.web_port,
            web_bind=s.web_host,
            web_host=s.web_host,
            canonical_url=advertised_url(s.web_url, s.web_host, s.web_port),  # streams/peers.py
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=1,
            broker_session_timeout=SESSION_TIMEOUT,
            producer_acks=-1,
            producer_max_request_size=DEAD_LETTER_MAX_BYTES,  # a 1 MiB message + headers
            broker_credentials=faust_credentials(s),  # TLS context built by us, never implied
            stream_wait_empty=False,
            # messages an agent may have fetched ahead: a full batch. Faust's 4,096 let a
            # lagging merge stage hold ~4,000 snapshot messages (~16 KB each) in memory
            stream_buffer_maxsize=s.batch_max_messages,
            # bytes fetched ahead per partition and held by aiokafka until Faust takes them:
            # Faust's 1 MiB × ~36 partitions was 10-32 MiB of a 10,000-campaign worker's heap
            # (tracemalloc)
            consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
            loghandlers=[],
        )

    def _declare_topics(self) -> None:
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        s, n = self.settings, self.names
        # routed events are read with the inputs: one agent, so in-place and routed
        # events of a partition meet one dedup index, with no batch of another agent
        # interleaving its writes
        self.inputs = self.app.topic(*n.inputs.values(), n.route, **raw)
        self.funnel_topic = self.app.topic(n.funnel, partitions=s.funnel_partitions, **raw)
        self.merge_topic = self.app.topic(n.merge, partitions=s.partitions, **raw)
        self.route_topic = self.app.topic(n.route, partitions=s.partitions, **raw)
        self.dead_letter = self.app.topic(n.dead_letter, **raw)
        self.kpis_topic = self.app.topic(n.kpis, **raw)
        self.alerts_topic = self.app.topic(n.alerts, **raw)

    def _declare_tables(self) -> None:
        s = self.settings

        def table(name: str, **options: Any) -> Any:
            kind = TABLE_PARTITIONS[name]
            partitions = s.funnel_partitions if kind == "funnel" else s.partitions
            return self.app.Table(
                table_name(name),
                partitions=partitions,
                extra_topic_configs=CHANGELOG_CONFIG,
                **options,
            )

        # all but customers keep their records' bytes as they are (streams/pane_groups.py,
        # streams/dedup.py, leads): Faust restores them without decoding
        raw: dict[str, Any] = {"value_type": bytes}
        on_partials = {"on_recover": self._on_partials_recovered, **raw}
        on_dedup = {"on_recover": self._on_dedup_recovered, **raw}
        self.partials = table("partials", **on_partials)
        self.dedup = table("dedup", **on_dedup)
        self.funnel_partials = table("funnel-partials", **on_partials)
        self.funnel_dedup = table("funnel-dedup", **on_dedup)
        self.leads = table("leads", **raw)
        self.customers = table("customers")
        self.merged = table("merged", on_recover=self._on_merged_recovered, **raw)

    def _register(self) -> None:
        self.app.agent(self.inputs, name="intake")(self._intake)
        self.app.agent(self.funnel_topic, name="funnel")(self._funnel)
        self.app.agent(self.merge_topic, name="merge")(self._merge)
        self.app.timer(self.settings.snapshot_interval, name="emit-snapshots")(self._emit_snapshots)
        self.app.timer(self.settings.publish_interval, name="publish")(self.publisher.tick)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        from .web import register_views

        register_views(self)

    def _batches(self, stream: faust.StreamT[bytes]) -> AsyncIterator[list[Any]]:
        s = self.settings
        self.guard.consumer = self.app.consumer
        self._streams.append(stream)
        limits = BatchLimits(s.batch_max_messages, s.batch_max_bytes, self._linger)
        batches = message_batches(stream, limits)
        return self.ownership.gate(self.guard.in_order(batches))

    def _linger(self) -> float:
        """How long the next batch may wait to fill (``streams/take.py``)."""
        return self.settings.batch_wait_backlog if self.behind else self.settings.batch_wait

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """The rebalance goes on once the batch under way is done and its changelog
        records are on the broker (``streams/ownership.py``)."""
        self.guard.forget(args[0])  # the revoked partitions
        try:
            await asyncio.wait_for(self.ownership.idle(), REVOKE_WAIT)
        except TimeoutError:
            log.warning("a batch was still under way %.0f s after a revocation", REVOKE_WAIT)
        await self.app.producer.flush()

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Which input topics are co-partitioned with the tables, read from the group's
        metadata at every assignment: a topic enlarged while running is routed whole from
        the next batch on (``streams/routing.py``)."""
        consumer, parts = self.app.consumer, self.settings.partitions
        counts = {topic: consumer.topic_partitions(topic) for topic in self.names.inputs.values()}
        plan = RoutePlan.from_counts(counts, parts)
        if plan != self.route_plan:
            routed = sorted(set(counts) - plan.copartitioned)
            if routed:
                log.warning("input topics without %d partitions, routed whole: %s", parts,
                            ", ".join(f"{t} ({counts[t]})" for t in routed))  # fmt: skip
            self.route_plan = plan

    def _state_whole(self) -> bool:
        """Neither rebalancing nor restoring tables: state is whole and ours to change."""
        return not (self.app.rebalancing or self.app.in_recovery)

    def _assigned(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    # -- intake -----------------------------------------------------------------------
    async def _intake(self, stream: faust.StreamT[bytes]) -> None:
        async for messages in self._batches(stream):
            await self.handle_inputs(messages)

    async def handle_inputs(self, messages: Sequence[Any]) -> None:
        """One batch of input messages: validated one by one, counted per (partition,
        topic) group, written to the tables once."""
        now = self.clock()
        batch = Batch(now, lambda p: self._open_partition("i", p, now), self.limits(now))
        for msg in messages:
            try:
                await self._take_input(batch, msg)
            except Exception as exc:  # a bug must not stop the worker nor lose the message
                log.exception("intake failed on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
                await self._dead_letter_internal(
                    msg.value, msg.topic, msg.partition, msg.offset, exc
                )
            batch.done(msg.topic, msg.partition, msg.offset)
        await self._forward(self.funnel_topic, batch.funnel)
        await self._forward(self.route_topic, batch.routed)
        for msg, error in self._count_groups(batch, "i"):
            await self._dead_letter_internal(msg.value, msg.topic, msg.partition, msg.offset, error)
        await self._finish(batch, "i", "intake")

    async def _forward(self, topic: Any, by_partition: dict[int, list[Event]]) -> None:
        """Sends events to the partitions that own them, in chunks far below Kafka's
        message size limit (a batch may forward 100,000 events); delivery is awaited, as
        the input offsets are acked after this batch."""
        for partition, events in by_partition.items():
            for start in range(0, len(events), FORWARDED_PER_MESSAGE):
                chunk = events[start : start + FORWARDED_PER_MESSAGE]
                sent = await topic.send(value=encode_events(chunk), partition=partition)
                require_delivery(sent, f"a forward to {topic.get_topic_name()}[{partition}]")

    async def _take_input(self, batch: Batch, msg: Any) -> None:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        if topic == self.names.route:  # validated where they arrived, sent here to count
            routed = list(enumerate(decode_events(msg.value or b"[]")))
            batch.groups[(partition, ROUTE_SOURCE)].append((offset, routed, msg))
            return
        kind = self.names.type_of(topic)
        now = batch.now
        items = decode_message(msg.value, kind, batch.limits)
        counted: list[tuple[int, Event]] = []
        funnel: list[Event] = []
        newest, late = 0.0, 0
        for index, item in enumerate(items):
            if isinstance(item, Rejected):
                await self._send_dead_letter(item, topic, partition, offset)
                continue
            newest = max(newest, item.ts)
            late += item.ts < now - LATE_AFTER
            if item.type in FUNNEL_TYPES:
                funnel.append(item)
            else:
                counted.append((index, item))
        if newest:
            batch.tally.saw(topic, newest, late)
        parts = self.settings.funnel_partitions
        for event in funnel:
            batch.funnel[partition_for(funnel_key(event), parts)].append(event)
        in_place: list[tuple[int, Event]] = []
        home_of, plan = self.homes.of, self.route_plan
        for index, event in counted:  # campaign_id is required on every counted type
            home = home_of(event.campaign_id or "")
            if plan.in_place(topic, partition, home):
                in_place.append((index, event))
            else:
                batch.routed[home].append(event)
        if in_place:
            batch.groups[(partition, TOPIC_INDEX[kind])].append((offset, in_place, msg))

    def limits(self, now: float) -> Limits:
        s = self.settings
        return Limits(now, s.max_future, s.retention, s.fx_rates)

    def _open_partition(self, source: str, partition: int, now: float) -> PartitionWork:
        """The tables one batch may change in ``partition`` of the intake or funnel stage."""
        funnel = source == "f"
        dedup = MessageDedup(self._dedup_index(source, partition))
        work = PartitionWork(
            partials=self._partial_groups(source, partition),
            oldest=self._oldest_panes(now),
            dedup_table=PartitionState(self._dedup_table(source), partition),
            dedup=dedup,
            stores=Stores(dedup=dedup, leads={}, customers={}),
        )
        if funnel:
            leads: PartitionState[Lead] = PartitionState(
                self.leads, partition, _lead_record, _lead_from_record
            )
            customers: PartitionState[Any] = PartitionState(
                self.customers, partition, decode=_marker
            )
            work.stores = Stores(dedup=dedup, leads=leads, customers=customers)
            work.flushers = [leads, customers]
        return work

    # -- funnel -----------------------------------------------------------------------
    async def _funnel(self, stream: faust.StreamT[bytes]) -> None:
        async for messages in self._batches(stream):
            await self.handle_funnels(messages)

    async def handle_funnels(self, messages: Sequence[Any]) -> None:
        now = self.clock()
        batch = Batch(now, lambda p: self._open_partition("f", p, now))
        for msg in messages:
            try:
                events = list(enumerate(decode_events(msg.value or b"[]")))
                batch.groups[(msg.partition, FUNNEL_SOURCE)].append((msg.offset, events, msg))
            except Exception:
                log.exception("funnel failed on partition %s offset %s", msg.partition, msg.offset)
            batch.done(msg.topic, msg.partition, msg.offset)
        for msg, _exc in self._count_groups(batch, "f"):
            log.error("funnel message %s[%s]@%s not counted", msg.topic, msg.partition, msg.offset)
        await self._finish(batch, "f", "funnel")

    def _count_groups(self, batch: Batch, source: str) -> list[tuple[Any, Exception]]:
        """Counts each (partition, topic) group of the batch; returns messages that failed."""
        failed: list[tuple[Any, Exception]] = []
        for (partition, topic), items in batch.groups.items():
            work = batch.partition(partition)
            applied = self._applied_offset(source, partition, topic)
            try:
                for outcome in count_group(work, items, topic, applied, self.pane_sizes):
                    batch.tally.add(outcome)
            except Exception as exc:  # a bug: keep the worker and the messages
                log.exception("counting failed on partition %s of source %s", partition, topic)
                failed += [(msg, exc) for _off, _evs, msg in items]
            self.applied[(source, partition, topic)] = max(applied, items[-1][0])
        return failed

    def _applied_offset(self, source: str, partition: int, topic: int) -> int:
        """The highest source offset any pane of this partition holds (-1: none)."""
        if not self._applied_known:
            self._scan_partials()
        return self.applied.get((source, partition, topic), -1)

    def _scan_partials(self) -> None:
        self.applied.clear()
        for source, table in (("i", self.partials), ("f", self.funnel_partials)):
            for full, raw in list(table.data.items()):
                prefix, _, key = full.partition("|")
                partition = int(prefix)
                _scope, size, block = split_group_key(key)
                for value in decode_group(PARTIAL, raw, size, block).values():
                    for topic, offset in value[1].items():
                        applied = (source, partition, int(topic))
                        if offset > self.applied.get(applied, -1):
                            self.applied[applied] = offset
        self._applied_known = True

    def _partials(self, source: str) -> Any:
        return self.partials if source == "i" else self.funnel_partials

    def _partial_groups(self, source: str, partition: int) -> PaneGroups[Any]:
        return PaneGroups(self._partials(source), partition, PARTIAL, self.group_caches[source])

    def _oldest_panes(self, now: float) -> dict[int, float]:
        """Per pane size, the oldest pane start eviction would keep: older panes are not
        even written (an event 20 hours old adds to no minute pane, as no window reads
        it)."""
        cutoff = now - self.settings.max_future
        return {size: oldest_kept(self.specs, size, cutoff) for size in self.pane_sizes}

    async def _finish(self, batch: Batch, source: str, stage: str) -> None:
        """Writes what the batch changed, then the metrics; the offsets are acked after."""
        for partition, work in batch.parts.items():
            await self._maybe_evict(source, partition, work.partials, batch.now)
            await work.flush(batch.now)
            # looked up now: the snapshot timer swaps ``pending`` while a batch awaits
            self.pending[(source, partition)] |= work.touched
        tally, metrics = batch.tally, self.metrics
        metrics.count_events(tally.counted)
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
        routed = sum(n for (topic, _p), n in batch.per_topic.items() if topic == self.names.route)
        metrics.processed.labels(stage).inc(batch.messages - routed)
        if routed:
            metrics.processed.labels("route").inc(routed)
        self._done(batch.last_offsets, batch.messages)

    # -- dedup --------------------------------------------------------------------------
    def _dedup_table(self, source: str) -> Any:
        return self.dedup if source == "i" else self.funnel_dedup

    def _dedup_index(self, source: str, partition: int) -> Dedup:
        index = self.dedup_indexes.get((source, partition))
        if index is None:
            index = rebuild(PartitionState(self._dedup_table(source), partition))
            self.dedup_indexes[(source, partition)] = index
        return index

    async def _on_dedup_recovered(self) -> None:
        self.dedup_indexes.clear()  # rebuilt from the recovered tables on first use

    # -- shared counting tail ---------------------------------------------------------
    async def _maybe_evict(
        self, source: str, partition: int, state: PaneGroups[Any], now: float
    ) -> None:
        if now - self._last_evict.get((source, partition), 0.0) < EVICT_EVERY:
            return
        self._last_evict[(source, partition)] = now
        dedup_state: PartitionState[Any] = PartitionState(self._dedup_table(source), partition)
        index = self._dedup_index(source, partition)
        horizon_cut = now - self.settings.dedup_horizon
        cut = cutoff_for_cap(dedup_state, len(index), self.settings.dedup_max_ids, horizon_cut)
        dropped = await sweep(dedup_state, index, cut)
        if cut > horizon_cut:
            self.metrics.dedup_early.inc(dropped)
        oldest = self._oldest_panes(now)
        for scope, size, block in state.group_keys():  # a group goes when its newest pane can
            if group_last_start(size, block) < oldest[size]:
                state.drop_group(scope, size, block)

    # -- snapshots to the merge stage -------------------------------------------------
    async def _emit_snapshots(self) -> None:
        """Absolute partials of the panes changed since the last call, in a few messages:
        one per merge partition (scopes are owned by ``partition_for(scope)``), split so
        that a message stays far below Kafka's size limit after a full re-send."""
        pending, self.pending = self.pending, defaultdict(set)
        groups, self.pending_groups = self.pending_groups, defaultdict(set)
        merge_partitions = self.settings.partitions
        for source, partition in {*pending, *groups}:
            state = self._partial_groups(source, partition)
            by_scope: dict[str, list[list[Any]]] = defaultdict(list)
            for scope, size, block in groups.get((source, partition), ()):
                for start, value in state.group(scope, size, block).items():
                    by_scope[scope].append([size, start, version(value), value[0]])
            for scope, size, start in pending.get((source, partition), ()):
                value = state.get((scope, size, start))
                if value is not None:
                    by_scope[scope].append([size, start, version(value), value[0]])
            outgoing: dict[int, dict[str, list[list[Any]]]] = defaultdict(dict)
            sizes: dict[int, int] = defaultdict(int)
            for scope, panes in by_scope.items():
                dest = partition_for(scope, merge_partitions)
                outgoing[dest][scope] = panes
                sizes[dest] += len(panes)
                if sizes[dest] >= SNAPSHOT_PANES_PER_MESSAGE:
                    await self._send_snapshot(f"{source}{partition}", dest, outgoing.pop(dest))
                    sizes[dest] = 0
            state.close()
            for dest, scopes in outgoing.items():
                await self._send_snapshot(f"{source}{partition}", dest, scopes)

    async def _send_snapshot(self, src: str, dest: int, scopes: dict[str, Any]) -> None:
        body = orjson.dumps({"src": src, "scopes": scopes})
        sent = await self.merge_topic.send(value=body, partition=dest)
        require_delivery(sent, f"a snapshot of {src} to merge partition {dest}")

    async def _on_partials_recovered(self) -> None:
        """After recovery, re-send every partial: snapshots may have been lost in a crash.
        The applied high waters are re-read too: partitions may have moved."""
        self._applied_known = False
        for source, table in (("i", self.partials), ("f", self.funnel_partials)):
            for full in list(table.data):
                partition, _, key = full.partition("|")
                self.pending_groups[(source, int(partition))].add(split_group_key(key))

    # -- merge ------------------------------------------------------------------------
    async def _merge(self, stream: faust.StreamT[bytes]) -> None:
        async for messages in self._batches(stream):
            await self.handle_merges(messages)

    async def handle_merges(self, messages: Sequence[Any]) -> None:
        states: dict[int, PaneGroups[Any]] = {}
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            state = states.get(msg.partition)
            if state is None:
                state = states[msg.partition] = self.merged_groups(msg.partition)
            try:
                body = orjson.loads(msg.value or b"{}")
                for scope, panes in body["scopes"].items():
                    self.publisher.merge(state, msg.partition, body["src"], scope, panes)
            except Exception:
                log.exception("merge failed on partition %s offset %s", msg.partition, msg.offset)
            offsets[(msg.topic, msg.partition)] = msg.offset
        for state in states.values():  # the tick reads the store: all of it there before awaiting
            state.write_through()
        for state in states.values():
            await state.flush()
            state.close()
        self.metrics.processed.labels("merge").inc(len(messages))
        self._done(offsets, len(messages))

    def merged_groups(self, partition: int) -> PaneGroups[Any]:
        return PaneGroups(self.merged, partition, MERGED, self.group_caches["m"])

    async def _on_merged_recovered(self) -> None:
        self.publisher.rebuild_index()

    # -- health -----------------------------------------------------------------------
    async def consumer_lag(self) -> dict[str, int]:
        """Messages not yet *processed*, per topic, over this worker's partitions.

        Faust's read offset moves when a message enters a stream buffer, not when an
        agent is done with it, so the agents record what they processed themselves.
        """
        consumer = self.app.consumer
        committed: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
        lag: dict[str, int] = dict.fromkeys(self.names.inputs.values(), 0)
        tps = [tp for tp in consumer.assignment() if tp.topic in self.watched_topics]
        try:
            highs = await self._end_offsets(tps) if tps else {}
        except Exception as exc:  # broker unreachable: unknown, which is not "caught up"
            log.debug("end offsets unavailable: %r", exc)
            return {topic: -1 for topic in lag}
        if not self._state_whole():
            self.guard.hold()
        else:
            ends = {(tp.topic, tp.partition): h for tp, h in highs.items()}
            await self.guard.rewind_stuck(ends, self.buffered_partitions)
        positions = {}
        for tp, high in highs.items():
            key = (tp.topic, tp.partition)
            done = self.processed.get(key)
            if done is not None:
                position = done + 1
            else:  # nothing processed yet: where reading starts (a partition Faust never
                # delivered once looked caught up here: SIGTERM test, spend[2])
                start = committed.get(tp)
                position = start if start is not None else self.guard.next.get(key, high)
            positions[tp] = position
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, (high or 0) - position)
        self.settled = settled(self._previous_ends, positions)
        self.behind = sum(lag.values()) > self.settings.batch_max_messages
        self._previous_ends = {tp: high or 0 for tp, high in highs.items()}
        return lag

    def buffered_partitions(self) -> set[tuple[str, int]]:
        """Partitions with messages waiting in the agents' stream buffers (Faust's queues
        between its fetcher and each agent), read in place: a backlog, not a hole."""
        waiting: set[tuple[str, int]] = set()
        for stream in self._streams:
            queue = getattr(stream.channel, "queue", None)
            for event in list(getattr(queue, "_queue", ())):
                message = getattr(event, "message", None)
                if message is not None:
                    waiting.add((message.topic, message.partition))
        return waiting

    async def _end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        """End offsets from a group-less client in this loop: Faust's own call goes
        through its consumer thread and waits behind the fetch long-poll (~1.5 s)."""
        if self._offsets_client is None:
            client = AIOKafkaConsumer(**kafka_client_kwargs(self.settings), request_timeout_ms=5000)
            await client.start()
            self._offsets_client = client
        ends = await self._offsets_client.end_offsets(
            [TopicPartition(tp.topic, tp.partition) for tp in tps]
        )
        by_key = {(tp.topic, tp.partition): tp for tp in tps}
        return {by_key[(tp.topic, tp.partition)]: end for tp, end in ends.items()}

    def _done(self, offsets: dict[tuple[str, int], int], messages: int) -> None:
        self.processed.update(offsets)
        self.messages_done += messages
        self.last_progress = time.monotonic()

    @property
    def recovering(self) -> bool:
        """Faust is restoring tables from their changelogs: alive, not ready."""
        return bool(self.app.in_recovery)

    def caught_up(self, lag: dict[str, int], done_last_tick: int) -> bool:
        """Not reading a backlog: what waits is less than one tick's worth of work, and
        what waited at the previous tick has been processed (``streams/settled.py``).

        Live traffic always has a few messages in flight, so "zero lag" would almost never
        hold; a backlog (a burst, a restart) is what makes topics land far apart.
        """
        if any(v < 0 for v in lag.values()):
            return False  # end offsets unknown
        return self.settled and sum(lag.values()) <= max(LAG_SLACK, done_last_tick // 4)

    def state_sizes(self) -> dict[str, int]:
        sizes = {f"dedup_index_{s}{p}": len(ix) for (s, p), ix in self.dedup_indexes.items()}
        tables = {"partials": self.partials, "dedup": self.dedup, "leads": self.leads,
                  "customers": self.customers, "funnel_dedup": self.funnel_dedup,
                  "funnel_partials": self.funnel_partials, "merged": self.merged}  # fmt: skip
        return {**sizes, **{name: len(table.data) for name, table in tables.items()}}

    # -- dead letters -----------------------------------------------------------------
    async def _send_dead_letter(
        self, rejected: Rejected, topic: str, partition: int, offset: int
    ) -> None:
        self.metrics.rejected.labels(rejected.reason.value).inc()
        sent = await self.dead_letter.send(
            value=rejected.raw, headers=dead_letter_headers(rejected, topic, partition, offset)
        )
        require_delivery(sent, f"the dead letter of {topic}[{partition}]@{offset}")

    async def _dead_letter_internal(
        self, value: bytes | None, topic: str, partition: int, offset: int, exc: Exception
    ) -> None:
        from .events import Reason

        rejected = Rejected(
            Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500], value or b"", None
        )
        await self._send_dead_letter(rejected, topic, partition, offset)


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> FunnelPulse:
    return FunnelPulse(settings, clock)
