"""Which partition owns a campaign: where its events are deduplicated and counted.

A repeated ``event_id`` is counted once only if every copy meets the same dedup index,
and copies do not all arrive on one partition: collectors re-batch a failed event with
other events under another key, batches mix campaigns, producers key by lead or by
nothing. So each campaign has a *home* partition, and an event that arrives elsewhere is
forwarded there through the internal route topic (Kafka Streams' ``repartition()``,
Faust's ``group_by``), where the intake stage counts it in the home partition's tables.

The home is the partition Kafka's default partitioner picks for the campaign id as the
message key (murmur2, as the Java client, aiokafka, kafka-python and Faust do): input
keyed by campaign is already home and pays one dict lookup per event. librdkafka-based
clients (confluent-kafka) hash keys with CRC32 by default; they are exact too, but pay
the hop unless they set ``partitioner=murmur2_random``.

The trap: "home" means "the partition of the tables", which is the input partition of
the same number only when the input topic has as many partitions as the tables — Faust
co-assigns partitions of equal-sized topics, and nothing else. An input topic of another
size (made by hand, or enlarged later) is never counted in place: every event of it is
routed (``RoutePlan``), and the route topic itself must have the tables' size, which
``streams.topics.check_partition_counts`` makes a start-up error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

CACHE_LIMIT = 200_000  # campaign ids remembered; the id is attacker-controlled input


class HomePartitions:
    """campaign id → home partition, as Kafka's default partitioner places that key."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def of(self, campaign: str) -> int:
        home = self._cache.get(campaign)
        if home is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            home = (murmur2(campaign.encode()) & 0x7FFFFFFF) % self.partitions
            self._cache[campaign] = home
        return home


@dataclass(frozen=True)
class RoutePlan:
    """The input topics whose partition p is table partition p (counted in place)."""

    copartitioned: frozenset[str] = frozenset()  # none known yet: route everything

    @classmethod
    def from_counts(cls, counts: Mapping[str, int | None], partitions: int) -> RoutePlan:
        return cls(frozenset(topic for topic, n in counts.items() if n == partitions))

    def in_place(self, topic: str, partition: int, home: int) -> bool:
        return partition == home and topic in self.copartitioned
