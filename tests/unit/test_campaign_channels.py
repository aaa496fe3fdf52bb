"""The channel a campaign's gauges carry (streams/campaign_channels.py): tallied per batch,
grouped by the campaign's merge partition, totalled by its owner, the dominant one."""

from __future__ import annotations

from typing import Any

import pytest

from streams.campaign_channels import CampaignChannels, ChannelTally, campaign_partition, dominant


class FakeTable:
    """A table with a plain dict store; changelog writes are recorded, not sent."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, Any]]:
    records: list[tuple[int, str, Any]] = []

    async def fake_send(table: Any, partition: int, key: str, value: Any) -> None:
        records.append((partition, key, value))

    monkeypatch.setattr("streams.table_state.send_changelog", fake_send)
    return records


def test_the_dominant_channel_has_most_events_ties_alphabetical() -> None:
    assert dominant({"email": 3, "paid_search": 5}) == "paid_search"
    assert dominant({"video": 2, "display": 2}) == "display"
    assert dominant({}) == ""


def test_a_batch_is_tallied_per_campaign_and_grouped_by_its_merge_partition() -> None:
    tally = ChannelTally()
    tally.add({("click", "email", "a"): 3, ("open", "email", "a"): 2, ("click", "video", "b"): 1})
    tally.add({("signup", "display", "a"): 1})
    taken = tally.take(partitions=4)
    assert taken[campaign_partition("a", 4)]["a"] == {"email": 5, "display": 1}
    assert taken[campaign_partition("b", 4)]["b"] == {"video": 1}
    assert tally.take(partitions=4) == {}


async def test_the_owner_keeps_running_totals_and_labels_by_them(
    sent: list[tuple[int, str, Any]],
) -> None:
    table = FakeTable()
    owner = CampaignChannels(table, partitions=4)
    part = campaign_partition("a", 4)
    await owner.add(part, {"a": {"email": 3}})
    await owner.add(part, {"a": {"paid_social": 2}})
    assert owner.label == {"a": "email"}  # one batch on another channel changes nothing
    await owner.add(part, {"a": {"paid_social": 2}})
    assert owner.label == {"a": "paid_social"}
    assert [(p, key) for p, key, _ in sent] == [(part, f"{part}|a")] * 3

    restarted = CampaignChannels(table, partitions=4)  # the table as Faust recovered it
    restarted.load({part})
    assert restarted.label == {"a": "paid_social"}
    restarted.forget({part})
    assert restarted.label == {}


async def test_an_expired_campaign_loses_its_totals(sent: list[tuple[int, str, Any]]) -> None:
    table = FakeTable()
    owner = CampaignChannels(table, partitions=4)
    part = campaign_partition("gone", 4)
    await owner.add(part, {"gone": {"email": 1}})
    await owner.drop("gone")
    assert owner.label == {} and table.data == {}
    assert sent[-1] == (part, f"{part}|gone", None)  # a tombstone
    await owner.drop("never-seen")
    assert len(sent) == 2
