"""The home partition is where Kafka's default partitioner puts the campaign as a key,
and the partition-count rules that keep routing exact."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from funnelpulse.settings import Settings
from streams.routing import CACHE_LIMIT, HomePartitions, RoutePlan
from streams.topics import TopicLayoutError, TopicNames, changelog_topic, check_partition_counts


@given(st.text(min_size=1, max_size=128), st.integers(1, 64))
def test_home_is_where_a_producer_keyed_by_campaign_sends(campaign: str, partitions: int) -> None:
    every = list(range(partitions))
    expected = DefaultPartitioner()(campaign.encode(), every, every)
    assert HomePartitions(partitions).of(campaign) == expected


def test_the_cache_is_bounded() -> None:
    homes = HomePartitions(8)
    for i in range(CACHE_LIMIT + 10):
        homes.of(f"c{i}")
    assert len(homes._cache) <= CACHE_LIMIT
    assert homes.of("c1") == HomePartitions(8).of("c1")


def test_only_copartitioned_topics_count_in_place() -> None:
    plan = RoutePlan.from_counts({"clicks": 4, "opens": 6, "spend": None}, 4)
    assert plan.in_place("clicks", 2, home=2)
    assert not plan.in_place("clicks", 1, home=2)  # arrived away from home
    assert not plan.in_place("opens", 2, home=2)  # another size: partition 2 is not ours
    assert not plan.in_place("spend", 2, home=2)  # unknown: routed
    assert not RoutePlan().in_place("clicks", 0, home=0)  # before any assignment


def settings() -> Settings:
    return Settings.from_env({"FUNNELPULSE_APP_ID": "fp", "FUNNELPULSE_PARTITIONS": "4",
                              "FUNNELPULSE_FUNNEL_PARTITIONS": "2"})  # fmt: skip


def test_input_topics_of_another_size_are_a_warning() -> None:
    s = settings()
    names = TopicNames.from_settings(s)
    counts = {topic: 4 for topic in names.inputs.values()}
    assert check_partition_counts(names, s, counts) == []
    counts[names.inputs[next(iter(names.inputs))]] = 12
    (warning,) = check_partition_counts(names, s, counts)
    assert "12 partitions, not 4" in warning and "routed" in warning


@pytest.mark.parametrize(
    ("topic", "size"),
    [("fp-route", 8), ("fp-merge", 2), ("fp-funnel", 4), (changelog_topic("fp", "dedup"), 8),
     (changelog_topic("fp", "leads"), 4)],
)  # fmt: skip
def test_internal_topics_of_another_size_stop_the_worker(topic: str, size: int) -> None:
    s = settings()
    with pytest.raises(TopicLayoutError, match=f"{topic} has {size} partitions"):
        check_partition_counts(TopicNames.from_settings(s), s, {topic: size})
