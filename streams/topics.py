"""Topic names and their creation (SPEC §1, §3), all derived from the settings.

The worker creates every topic it uses with explicit partition counts, because the
local broker (and many production clusters) disable auto-creation, and because all input
topics must share one partition count for Faust to co-assign their partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from funnelpulse.security import kafka_client_kwargs
from funnelpulse.settings import Settings

from .events import TOPIC_SUFFIX, EventType

log = logging.getLogger("funnelpulse")

# A rejected message is dead-lettered unchanged up to the 1 MiB a message may have, plus
# its error headers: more than the broker's default ~1 MB record limit, so the dead-letter
# topic (and the worker's producer, see streams.app) allow 2 MiB.
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024
INTERNAL_CONFIG = {"retention.ms": str(86400_000)}  # read within seconds; a day for incidents
VISIBLE_WITHIN = 60.0  # seconds a created topic may take to show in the broker's metadata
STATE_VERSION = 7  # in every table name: a change of state format starts from new tables
# (7: hourly panes replace the 15-minute ones, minute panes kept 25 h: metrics/windows.py)
# Each table and the partition count of its changelog: the intake's tables follow the
# input topics (FUNNELPULSE_PARTITIONS), the funnel's the funnel topic.
TABLE_PARTITIONS = {
    "partials": "input", "dedup": "input", "merged": "input", "funnel-partials": "funnel",
    "funnel-dedup": "funnel", "leads": "funnel", "customers": "funnel", "channels": "input",
}  # fmt: skip


def table_name(table: str) -> str:
    return f"{table}-v{STATE_VERSION}"


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table_name(table)}-changelog"


DEAD_LETTER_CONFIG = {
    "retention.ms": str(7 * 86400_000),
    "max.message.bytes": str(DEAD_LETTER_MAX_BYTES),
}


@dataclass(frozen=True)
class TopicNames:
    inputs: Mapping[EventType, str]
    dead_letter: str
    kpis: str
    alerts: str
    funnel: str
    merge: str
    route: str  # events forwarded to their campaign's home partition (streams/routing.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        """Prefix + suffix, or the name ``FUNNELPULSE_TOPIC_<SUFFIX>`` gives one topic (an
        existing ``clicks`` topic used as it is); internal topics follow the app id."""
        topic = settings.topic
        return cls(
            inputs={kind: topic(suffix) for kind, suffix in TOPIC_SUFFIX.items()},
            dead_letter=topic("dead-letter"),
            kpis=topic("kpis"),
            alerts=topic("alerts"),
            funnel=f"{settings.app_id}-funnel",
            merge=f"{settings.app_id}-merge",
            route=f"{settings.app_id}-route",
        )

    def type_of(self, topic: str) -> EventType:
        return self._by_name[topic]

    @property
    def _by_name(self) -> Mapping[str, EventType]:
        return {name: kind for kind, name in self.inputs.items()}


def topic_specs(names: TopicNames, settings: Settings) -> list[NewTopic]:
    rf, parts = settings.replication, settings.partitions
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    specs = [NewTopic(name, parts, rf) for name in names.inputs.values()]
    specs += [
        NewTopic(names.dead_letter, parts, rf, topic_configs=DEAD_LETTER_CONFIG),
        NewTopic(names.kpis, parts, rf, topic_configs=compacted),
        NewTopic(names.alerts, 1, rf),
        NewTopic(names.funnel, settings.funnel_partitions, rf),
        NewTopic(names.merge, parts, rf, topic_configs=INTERNAL_CONFIG),
        NewTopic(names.route, parts, rf, topic_configs=INTERNAL_CONFIG),
    ]
    return specs


async def wait_visible(admin: AIOKafkaAdminClient, topics: list[str], patience: float) -> None:
    """Returns once every topic answers a metadata request with a leader for each of its
    partitions.

    The trap: CreateTopics returns when the controller has the topic, before the brokers'
    metadata caches do. A consumer group that joins in between is assigned without the
    topic, and the client asks again only after its metadata age (Faust's default: five
    minutes) — seen as two fresh workers where neither got the merge stage's partitions,
    publishing nothing for minutes (``tests/integration/test_kpis_any_worker.py``, CI).
    """
    deadline = time.monotonic() + patience
    waiting = list(topics)
    while waiting:
        described = await admin.describe_topics(waiting)
        waiting = [
            d.get("topic", d.get("name")) for d in described
            if d["error_code"] or not d["partitions"]
            or any(part["leader"] < 0 for part in d["partitions"])
        ]  # fmt: skip
        if waiting and time.monotonic() > deadline:
            log.warning("topics not in the broker's metadata after %.0f s: %s", patience, waiting)
            return
        if waiting:
            await asyncio.sleep(0.2)


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition counts would break exactness: the worker stops."""


def check_partition_counts(
    names: TopicNames, settings: Settings, counts: Mapping[str, int]
) -> list[str]:
    """Raises for internal topics of the wrong size; returns warnings for input topics.

    The route and merge topics carry table partition p in their partition p, and a
    changelog's partition p *is* table partition p: of another size (a changed
    ``FUNNELPULSE_PARTITIONS`` over existing state, a topic made by hand) they would
    count events into the wrong partition. An input topic of another size is only
    slower: every event of it goes through the route topic (``streams/routing.py``).
    """
    parts, funnel = settings.partitions, settings.funnel_partitions
    wanted = {names.merge: parts, names.route: parts, names.funnel: funnel}
    for table, kind in TABLE_PARTITIONS.items():
        wanted[changelog_topic(settings.app_id, table)] = funnel if kind == "funnel" else parts
    wrong = [
        f"{topic} has {counts[topic]} partitions, {want} expected"
        for topic, want in sorted(wanted.items())
        if topic in counts and counts[topic] != want
    ]
    if wrong:
        raise TopicLayoutError(
            "internal topics do not match FUNNELPULSE_PARTITIONS="
            f"{parts} / FUNNELPULSE_FUNNEL_PARTITIONS={funnel}: {'; '.join(wrong)}. "
            "Their state was built for other counts: restore the settings, or give the "
            "worker a new FUNNELPULSE_APP_ID (it starts from empty state)"
        )
    return [
        f"input topic {topic} has {counts[topic]} partitions, not {parts}: every event "
        "of it is routed to its campaign's partition (exact, but slower)"
        for topic in names.inputs.values()
        if topic in counts and counts[topic] != parts
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates the missing topics; returns the names created.

    Raises ``TopicLayoutError`` when existing topics have partition counts that would
    break exactness, and logs the input topics that will be routed whole."""
    names = TopicNames.from_settings(settings)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(names, settings) if spec.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(missing)
            await wait_visible(admin, [spec.name for spec in missing], VISIBLE_WITHIN)
        ours = [t for t in existing if t.startswith(f"{settings.app_id}-")]
        described = await admin.describe_topics([*names.inputs.values(), *ours])
        counts = {d.get("topic", d.get("name")): len(d["partitions"]) for d in described
                  if not d["error_code"]}  # fmt: skip
        for warning in check_partition_counts(names, settings, counts):
            log.warning("%s", warning)
        return [spec.name for spec in missing]
    finally:
        await admin.close()
