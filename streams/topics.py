"""Topic names and their creation (SPEC §1, §3), all derived from the settings.

The worker creates every topic it uses with explicit partition counts, because the
local broker (and many production clusters) disable auto-creation, and because all input
topics must share one partition count for Faust to co-assign their partitions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from funnelpulse.security import kafka_client_kwargs
from funnelpulse.settings import Settings

from .events import TOPIC_SUFFIX, EventType

# A rejected message is dead-lettered unchanged up to the 1 MiB a message may have, plus
# its error headers: more than the broker's default ~1 MB record limit, so the dead-letter
# topic (and the worker's producer, see streams.app) allow 2 MiB.
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024
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

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        prefix = settings.topic_prefix
        return cls(
            inputs={kind: f"{prefix}{suffix}" for kind, suffix in TOPIC_SUFFIX.items()},
            dead_letter=f"{prefix}dead-letter",
            kpis=f"{prefix}kpis",
            alerts=f"{prefix}alerts",
            funnel=f"{settings.app_id}-funnel",
            merge=f"{settings.app_id}-merge",
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
        NewTopic(names.merge, parts, rf, topic_configs={"retention.ms": str(86400_000)}),
    ]
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates the missing topics; returns the names created."""
    names = TopicNames.from_settings(settings)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(names, settings) if spec.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(missing)
        return [spec.name for spec in missing]
    finally:
        await admin.close()
