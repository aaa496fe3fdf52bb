"""The funnelpulse Faust application, built by ``create_app(settings)``: wiring only.

Each stage is its own module with a narrow input (README "How it works"):

1. ``intake`` — the seven input topics and the route topic: validate, dead-letter
   (``dead_letters``), forward funnel events by lead and events away from their
   campaign's home partition by campaign (``routing``), count the rest into partial
   panes (``partial_counts``, ``batch``, ``counting``);
2. ``funnel`` — lead and customer state, funnel events counted into its partial panes;
3. ``partial_snapshots`` — a timer sends absolute partial snapshots, keyed by scope;
4. ``merge`` — the scope's owner keeps the newest per source;
5. ``publisher`` — a tick sums panes into windows: Redis, Prometheus, the kpis topic,
   alerts; ``web`` serves ``/kpis``, ``/alerts``, ``/healthz``, ``/metrics``.

Between Faust and the stages sits the exactly-once plumbing (``exactly_once``);
``progress`` measures what the stages processed against the log ends; ``idle_release``
hands back what a burst left in memory once it is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from typing import Any, cast

import faust
from prometheus_client import CollectorRegistry

from funnelpulse.security import faust_credentials, kafka_client_kwargs
from funnelpulse.settings import Settings
from metrics.prometheus import Metrics
from metrics.windows import PANE_SIZES, window_specs

from .assignment import AssignmentCheck
from .batch import message_batches
from .campaign_channels import CampaignChannels, ChannelTally
from .dead_letters import DeadLetters
from .events import Limits
from .exactly_once.batches import BatchLimits
from .exactly_once.delivery import exit_uncommitted
from .exactly_once.order import KafkaRecords, OffsetGuard
from .exactly_once.ownership import Ownership
from .funnel import Funnel
from .graceful_stop import GracefulApp
from .idle_release import CHECK_EVERY as IDLE_CHECK_EVERY
from .idle_release import IdleRelease
from .intake import Forwarder, Intake
from .local_store import rocks_stores
from .merge import Merge
from .pane_groups import PaneGroups
from .partial_counts import PartialCounts
from .partial_snapshots import PartialSnapshots, ResendPace
from .peers import advertised_url
from .progress import Progress
from .publisher import Assignment, KpiPublisher, Outputs
from .restore import RestoreProgress
from .rocks_memory import MIB
from .routing import HomePartitions
from .stage import Stage
from .tables import Tables, declare_tables
from .topics import DEAD_LETTER_MAX_BYTES, TABLE_PARTITIONS, TopicNames

log = logging.getLogger("funnelpulse")

# A crashed worker's partitions wait for its group session to expire before they move
# (Faust's default: 60 s). Heartbeats go from the consumer thread; a survivor learns that
# the group is rebalancing only from a heartbeat's answer, so Faust's 3 s interval added
# up to 3 s (1.5 on average) to every takeover after the session had expired. 6 s is the
# broker's default floor (group.min.session.timeout.ms): 10 s held a takeover by a warm
# standby at 14.1 s (13.4-16.9) against the 15 s target, 10 s of it waiting out the session.
# The trap: heartbeats come from the consumer thread, so a main loop that holds the GIL
# does not starve them, but a process stopped (SIGSTOP, a swapped-out host) for 6 s is
# dropped from the group and rejoins.
SESSION_TIMEOUT = 6.0
HEARTBEAT_INTERVAL = 1.0
REVOKE_WAIT = SESSION_TIMEOUT / 2  # a revocation waits this long for the batch under way
STOP_WAIT = 20.0  # a stop waits this long for the batch under way (k8s grace period: 90 s)
METADATA_MAX_AGE_MS = 30_000  # how soon the group notices a new topic (Faust: 5 min)
# bytes fetched ahead per partition and held by aiokafka until Faust takes them: Faust's
# 1 MiB × ~36 partitions was 10-32 MiB of a 10,000-campaign worker's heap (tracemalloc),
# 256 KiB still 7-12 MiB of raw batches at the drain's peak. 64 KiB took the 2,000-campaign
# drain's peak from 250 to 231 MB with the 16 MiB RocksDB budget, at the same drain rate
# (3,908 vs 4,105 events/s): a fetch round trip is a few ms while records wait.
CONSUMER_FETCH_BYTES = 64 * 1024
STREAM_BUFFER = 100  # messages fetched ahead per agent (below)


class FunnelPulse:
    """Owns the Faust app and one object per stage; no import-time globals."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        group_member: str | None = None,
    ) -> None:
        """``group_member``: the consumer's static group identity (``funnelpulse/data_dir.py``:
        kept in the data folder, so a restarted worker takes its partitions straight back);
        ``None`` joins as a new member each time."""
        s = self.settings = settings
        self.clock = clock
        self.group_member = group_member
        self.names = TopicNames.from_settings(settings)
        self.specs = window_specs(settings.windows)
        self.pane_sizes = PANE_SIZES  # minute panes (25 h) and hourly ones (the horizon)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.max_campaign_series)
        self.app = self._make_app()
        self._declare_topics()
        self.tables = self._declare_tables()
        # a campaign's gauges carry its dominant channel: tallied by the counting stages,
        # totalled by the campaign's merge partition (campaign_channels.py)
        self.channel_tally = ChannelTally()
        self.campaign_channels = CampaignChannels(self.tables.channels, s.partitions)
        self.metrics.label_campaigns(self.campaign_channels.label)
        self.guard = OffsetGuard(KafkaRecords(kafka_client_kwargs(s), s.app_id))
        self.assignment = AssignmentCheck(
            self._fed_by(), self._assigned, self._assigned_actives, self._rejoin_once_known
        )
        self.ownership = Ownership(self._state_whole, self._assigned)
        self.restore = RestoreProgress(  # /healthz: how far the tables' restore has got
            lambda: cast(Any, self.app.tables).recovery, lambda: not self._state_whole(), s.store
        )
        n = self.names
        self.progress = Progress(
            lambda: self.app.consumer,
            self.guard,
            watched={*n.inputs.values(), n.funnel, n.merge, n.route},
            inputs=n.inputs.values(),
            state_whole=self._state_whole,
            kafka_options=kafka_client_kwargs(s),
            backlog=s.batch_max_messages,
        )
        self.intake_counts = self._counts(Stage.INTAKE, self.tables.partials, self.tables.dedup)
        self.funnel_counts = self._counts(
            Stage.FUNNEL, self.tables.funnel_partials, self.tables.funnel_dedup,
            lead_tables=(self.tables.leads, self.tables.customers),
        )  # fmt: skip
        channels = s.channel_table()
        self.intake = Intake(
            self.intake_counts,
            self.names,
            funnel=Forwarder(self.funnel_topic),
            funnel_partitions=s.funnel_partitions,
            route=Forwarder(self.route_topic),
            homes=HomePartitions(s.partitions),
            dead_letters=DeadLetters(self.dead_letter, self.metrics),
            limits=lambda now: Limits(now, s.max_future, s.horizon, s.fx_rates, channels=channels),
            unknown_channel=self.metrics.count_unknown_channel,
            clock=clock,
            progress=self.progress,
        )
        self.funnel = Funnel(self.funnel_counts, clock, self.progress)
        self.snapshots = PartialSnapshots(
            [self.intake_counts, self.funnel_counts], self.merge_topic, s.partitions,
            self.channel_tally, ResendPace(self._merged_through), self._durable_state,
        )  # fmt: skip
        self.publisher = KpiPublisher(
            s,
            specs=self.specs,
            metrics=self.metrics,
            clock=clock,
            merged=self.tables.merged,
            merged_groups=lambda partition: self.merge.groups(partition),
            outputs=Outputs(self.kpis_topic, self.alerts_topic),
            campaign_channels=self.campaign_channels,
            progress=self.progress,
            assignment=Assignment(
                lambda: self.app.assignor.assigned_actives(), lambda: self.recovering
            ),
            state_sizes=self.state_sizes,
        )
        self.merge = Merge(self.tables.merged, self.publisher.merge, self.metrics, self.progress,
                           self.campaign_channels)  # fmt: skip
        self.idle_release = IdleRelease(
            lambda: self.progress.messages_done,
            lambda: self.recovering,
            lambda: rocks_stores(self.tables.by_name().values()),
        )
        self._register()

    # -- wiring -----------------------------------------------------------------------
    def _make_app(self) -> faust.App:
        s = self.settings
        app = GracefulApp(
            s.app_id,
            broker=f"kafka://{s.kafka_bootstrap_servers.replace(',', ';kafka://')}",
            store=f"{s.store}://",  # memory or rocksdb (streams/local_store.py)
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
            broker_heartbeat_interval=HEARTBEAT_INTERVAL,
            consumer_group_instance_id=self.group_member,
            producer_acks=-1,
            producer_max_request_size=DEAD_LETTER_MAX_BYTES,  # a 1 MiB message + headers
            broker_credentials=faust_credentials(s),  # TLS context built by us, never implied
            stream_wait_empty=False,
            # messages an agent may have fetched ahead of its batch. Faust's 4,096 let a
            # lagging merge stage hold ~4,000 snapshot messages (~16 KB each) in memory;
            # a full batch (1,000) could hold ~15 MB of 100-event messages per stage
            # (estimated: ~15 KB a message). Measured: 100 took the 2,000-campaign
            # drain's peak from 221 to 190 MB, at the same drain rate (bench, 3 runs)
            stream_buffer_maxsize=STREAM_BUFFER,
            # records one fetch hands to Faust: Faust's None decoded every record fetched
            # ahead (13,000-17,000, 16-18 MiB, in the 10,000-campaign drain, tracemalloc),
            # held while Faust fed them one by one into the agents' full buffers
            broker_max_poll_records=s.batch_max_messages,
            consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
            # a topic that appears after the group formed (a changelog Faust creates, an
            # input topic made later) or a partition count that changes is noticed, and
            # the group rebalances, within this age instead of Faust's five minutes
            consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
            loghandlers=[],
        )
        app.before_stop = self._finish_batch
        return app

    async def _land_acked(self, why: str) -> None:
        """The changelog records sent so far are acked and on disk before Faust closes the
        databases (streams/local_store.py); an ack later than ``REVOKE_WAIT`` is left to
        the changelog (the restart or the next owner replays it)."""
        await self.app.producer.flush()
        stores = rocks_stores(self.tables.by_name().values())
        try:
            await asyncio.wait_for(asyncio.gather(*(s.settled() for s in stores)), REVOKE_WAIT)
        except TimeoutError:
            log.warning("changelog acks still awaited %.0f s after %s", REVOKE_WAIT, why)

    async def _finish_batch(self) -> None:
        """Before Faust closes the tables on a stop (``graceful_stop.py``)."""
        self.assignment.cancel()  # no more asking the group for a new assignment
        if not await self.ownership.stop(STOP_WAIT):
            log.warning("a batch was still under way %.0f s after the stop began", STOP_WAIT)
        await self._land_acked("the stop")

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

    def _declare_tables(self) -> Tables:
        # late-bound: the stages that react to a recovery are built after their tables
        def later(hook: Callable[[], Callable[[], Awaitable[None]]]) -> Any:
            return lambda: hook()()

        recovered = {
            "partials": later(lambda: self.intake_counts.on_partials_recovered),
            "dedup": later(lambda: self.intake_counts.on_dedup_recovered),
            "funnel-partials": later(lambda: self.funnel_counts.on_partials_recovered),
            "funnel-dedup": later(lambda: self.funnel_counts.on_dedup_recovered),
            "merged": later(lambda: self._on_merged_recovered),
        }
        s = self.settings
        on_disk = s.rocksdb_memory_mb * MIB if s.store == "rocksdb" else None
        return declare_tables(
            self.app, s.partitions, s.funnel_partitions, recovered, rocksdb_memory=on_disk
        )

    def _counts(self, stage: Stage, partials: Any, dedup: Any, **extra: Any) -> PartialCounts:
        s = self.settings
        return PartialCounts(
            stage, partials, dedup, horizon=s.horizon, pane_sizes=self.pane_sizes,
            max_future=s.max_future, dedup_horizon=s.dedup_horizon,
            dedup_max_ids=s.dedup_max_ids, metrics=self.metrics, channels=self.channel_tally,
            **extra,
        )  # fmt: skip

    def _register(self) -> None:
        stages = ((self.inputs, Stage.INTAKE, self.intake.handle),
                  (self.funnel_topic, Stage.FUNNEL, self.funnel.handle),
                  (self.merge_topic, Stage.MERGE, self.merge.handle))  # fmt: skip
        for topic, stage, handle in stages:
            self.app.agent(topic, name=stage.value)(self._agent(handle))
        self.app.timer(self.settings.snapshot_interval, name="emit-snapshots")(
            self.snapshots.send_changed
        )
        self.app.timer(self.settings.publish_interval, name="publish")(self.publisher.tick)
        self.app.task(self.progress.connect)  # the lag's client, before the first tick
        self.app.timer(IDLE_CHECK_EVERY, name="release-idle-memory")(self.idle_release.check)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_rebalance_complete.connect(self._on_restored)
        from .web import register_views

        register_views(self)

    def _agent(
        self, handle: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> Callable[[faust.StreamT[bytes]], Awaitable[None]]:
        async def agent(stream: faust.StreamT[bytes]) -> None:
            # closed however the loop ends: a batch given up on is then neither under way
            # nor acked (``exactly_once/ownership.py``)
            async with aclosing(self._batches(stream)) as batches:
                async for messages in batches:
                    try:
                        await handle(messages)
                    except Exception as exc:
                        # Its state may be half-written and its messages are not acked:
                        # restarted by Faust, the agent would never see them again and
                        # Faust's commit would stall at them (or step over a single one).
                        # A restart of the process reads them again, as after kill -9.
                        exit_uncommitted("a batch failed", exc)

        return agent

    def _batches(self, stream: faust.StreamT[bytes]) -> AsyncGenerator[list[Any], None]:
        s = self.settings
        self.guard.consumer = self.app.consumer
        self.progress.streams.append(stream)
        limits = BatchLimits(s.batch_max_messages, s.batch_max_bytes, self._linger)
        batches = message_batches(stream, limits)
        return self.ownership.gate(batches, self.guard)

    def _linger(self) -> float:
        """How long the next batch may wait to fill (``exactly_once/batches.py``)."""
        s = self.settings
        return s.batch_wait_backlog if self.progress.behind else s.batch_wait

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """The rebalance goes on once the batch under way is done and its changelog
        records are on the broker (``exactly_once/ownership.py``)."""
        self.guard.forget(args[0])  # the revoked partitions
        if not await self.ownership.finished(REVOKE_WAIT):
            log.warning("a batch was still under way %.0f s after a revocation", REVOKE_WAIT)
        await self._land_acked("a revocation")
        for counts in (self.intake_counts, self.funnel_counts):
            counts.release_indexes()

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Input topics' partition counts from the group's metadata, at every assignment;
        and the stores forget what they kept of the partitions Faust has just closed."""
        self.assignment.on_assigned()  # whole, or batches wait (streams/assignment.py)
        for store in rocks_stores(self.tables.by_name().values()):
            store.forget_revoked()
        self.restore.on_assigned()  # Faust has registered the partitions to restore
        consumer = self.app.consumer
        counts = {topic: consumer.topic_partitions(topic) for topic in self.names.inputs.values()}
        self.intake.plan_routes(counts, self.settings.partitions)

    async def _on_restored(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        self.restore.on_restored()

    @asynccontextmanager
    async def _durable_state(self) -> AsyncIterator[None]:
        """Inside, the tables hold only what whole batches wrote and the broker has: the
        batches paused (``Ownership.paused``), every record sent so far acknowledged."""
        async with self.ownership.paused():
            await self.app.producer.flush()
            yield

    async def _on_merged_recovered(self) -> None:
        if not self.assignment.complete:  # indexed at the whole assignment's recovery
            log.info("index not rebuilt: the assignment lacks %s", self.assignment.describe())
            return
        self.publisher.rebuild_index()

    def _state_whole(self) -> bool:
        """Neither rebalancing nor restoring tables, and every table partition the stages
        need held here: state is whole and ours to change."""
        return not (self.app.rebalancing or self.app.in_recovery) and self.assignment.complete

    def _assigned(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    def _assigned_actives(self) -> set[tuple[str, int]]:
        """Active partitions by Faust's assignor, the tables' changelogs among them."""
        return {(tp.topic, tp.partition) for tp in self.app.assignor.assigned_actives()}

    def _fed_by(self) -> dict[str, set[str]]:
        """Each table's changelog topic → the internal topics co-partitioned with it: a
        worker reading partition p of one of them needs the table's partition p."""
        n = self.names
        feeders = {"input": {n.merge, n.route}, "funnel": {n.funnel}}
        fed_by = {}
        for field, table in self.tables.by_name().items():
            kind = TABLE_PARTITIONS[field.replace("_", "-")]  # "input" or "funnel"
            fed_by[table.changelog_topic.get_topic_name()] = feeders[kind]
        return fed_by

    async def _rejoin_once_known(self, topics: Collection[str]) -> bool:
        """Refreshes the consumer's metadata; once it has every topic of ``topics``, asks
        the group for a new assignment (True). Faust has no call for this: its aiokafka
        consumer lives in Faust's consumer thread, where its client and group coordinator
        must be called (private attributes of Faust 0.15.3 and aiokafka 0.14)."""
        thread = cast(Any, self.app.consumer)._thread
        consumer = thread._ensure_consumer()

        async def refresh() -> bool:
            await consumer._client.force_metadata_update()
            if all(consumer._client.cluster.partitions_for_topic(t) for t in topics):
                consumer._coordinator.request_rejoin()
                return True
            return False

        return bool(await thread.call_thread(refresh))

    def _merged_through(self, partition: int) -> int | None:
        """The last offset of merge partition ``partition`` the merge stage here has
        processed (-1: none yet); None when another worker consumes it."""
        key = (self.names.merge, partition)
        if key not in self._assigned():
            return None
        return self.progress.processed.get(key, -1)

    # -- what the publisher and the web views read ------------------------------------
    def limits(self, now: float) -> Limits:
        """What the clock allows an event now (the collector validates with it too)."""
        return self.intake.limits(now)

    @property
    def merged(self) -> Any:
        return self.tables.merged

    def merged_groups(self, partition: int) -> PaneGroups[Any]:
        return self.merge.groups(partition)

    async def consumer_lag(self) -> dict[str, int]:
        return await self.progress.measure_lag()

    def caught_up(self, lag: dict[str, int], done_last_tick: int) -> bool:
        return self.progress.caught_up(lag, done_last_tick)

    @property
    def messages_done(self) -> int:
        return self.progress.messages_done

    @property
    def last_progress(self) -> float:
        return self.progress.last_progress

    @property
    def recovering(self) -> bool:
        """Faust is restoring tables from their changelogs: alive, not ready."""
        return bool(self.app.in_recovery)

    @property
    def resending(self) -> int:
        """Groups of recovered partials not sent to the merge stage again yet."""
        return self.intake_counts.resending + self.funnel_counts.resending

    @property
    def reading_stored(self) -> int:
        """Recovered partitions whose stored partial groups are still being read."""
        return len(self.intake_counts.walks) + len(self.funnel_counts.walks)

    def state_sizes(self) -> dict[str, int]:
        counts = (self.intake_counts, self.funnel_counts)
        return {k: v for c in counts for k, v in c.index_sizes().items()} | self.tables.sizes()


def create_app(
    settings: Settings, clock: Callable[[], float] = time.time, group_member: str | None = None
) -> FunnelPulse:
    return FunnelPulse(settings, clock, group_member=group_member)
