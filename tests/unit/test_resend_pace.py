"""The re-send after a recovery goes a share at a time, the next share only once the merge
stage has taken the last: a merge partition is first in, first out, and new counts must
not queue behind a re-send that grows with the history (streams/partial_snapshots.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from streams.campaign_channels import ChannelTally
from streams.partial_counts import RESEND_GROUPS
from streams.partial_snapshots import PartialSnapshots, ResendPace


def delivered(offset: int) -> asyncio.Future[Any]:
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    sent.set_result(SimpleNamespace(offset=offset))
    return sent


async def test_the_next_share_waits_for_delivery_then_for_the_merge_stage() -> None:
    merged: dict[int, int] = {0: -1}
    pace = ResendPace(merged.get)
    assert pace.budget() == RESEND_GROUPS  # nothing in flight
    in_flight: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pace.carried(0, in_flight)
    assert pace.budget() == 0  # not even delivered
    in_flight.set_result(SimpleNamespace(offset=41))
    assert pace.budget() == 0  # delivered, not merged
    merged[0] = 40
    assert pace.budget() == 0
    merged[0] = 41
    assert pace.budget() == RESEND_GROUPS and not pace.last_sent


async def test_a_merge_partition_of_another_worker_waits_for_delivery_only() -> None:
    pace = ResendPace(lambda _partition: None)
    pace.carried(3, delivered(7))
    assert pace.budget() == RESEND_GROUPS


async def test_a_failed_or_cancelled_send_does_not_hold_the_resend_forever() -> None:
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[Any] = loop.create_future()
    failed.set_exception(RuntimeError("broker gone"))
    cancelled: asyncio.Future[Any] = loop.create_future()
    cancelled.cancel()
    pace = ResendPace(lambda _partition: -1)
    pace.carried(0, failed)
    pace.carried(1, cancelled)
    assert pace.budget() == RESEND_GROUPS
    failed.exception()  # retrieved: no "never retrieved" warning


class FakeCounts:
    """The calls PartialSnapshots makes of a counting stage, and the groups it reads."""

    def __init__(self, resend: set[tuple[str, int, int]]) -> None:
        self.resend, self.budgets = set(resend), []
        self.stage = SimpleNamespace(source=lambda partition: f"intake-{partition}")

    @property
    def resending(self) -> int:
        return len(self.resend)

    @property
    def changed(self) -> bool:
        return bool(self.resend)

    def take_changed(self, budget: int) -> tuple[dict[int, Any], dict[int, Any]]:
        self.budgets.append(budget)
        share = set(sorted(self.resend)[:budget])
        self.resend -= share
        return {}, ({0: share} if share else {})

    def read_stored(self) -> None:
        pass  # no recovery walk: the re-send is given

    def marks_due(self) -> bool:
        return False

    async def store_marks(self) -> None:
        pass

    def sent_through(self) -> dict[int, dict[str, int]]:
        return {}

    def snapshot_sent(self, through: dict[int, dict[str, int]], sends: list[Any]) -> None:
        pass

    def groups(self, partition: int) -> Any:
        return SimpleNamespace(
            group=lambda scope, size, block: {block: [[1], {"0": 1}]}, close=lambda: None
        )


class FakeTopic:
    def __init__(self) -> None:
        self.sent: dict[int, list[asyncio.Future[Any]]] = defaultdict(list)

    async def send(self, *, value: bytes, partition: int) -> asyncio.Future[Any]:
        sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent[partition].append(sent)
        return sent


async def test_snapshots_send_one_share_then_wait_for_the_merge_stage() -> None:
    resend = {(f"campaign:c{i}", 60, 0) for i in range(RESEND_GROUPS + 5)}
    counts, topic = FakeCounts(resend), FakeTopic()
    merged: dict[int, int] = defaultdict(lambda: -1)
    snapshots = PartialSnapshots(
        [counts],
        topic,
        4,
        ChannelTally(),
        ResendPace(lambda p: merged[p]),  # type: ignore[list-item]
    )
    await snapshots.send_changed()
    assert counts.budgets == [RESEND_GROUPS] and counts.resending == 5
    await snapshots.send_changed()  # the share is not even delivered: nothing more
    assert counts.budgets[-1] == 0 and counts.resending == 5
    offsets = {}
    for partition, futures in topic.sent.items():
        for offset, sent in enumerate(futures):
            sent.set_result(SimpleNamespace(offset=offset))
        offsets[partition] = len(futures) - 1
    await snapshots.send_changed()  # delivered, but the merge stage has not taken it
    assert counts.budgets[-1] == 0
    merged.update(offsets)
    await snapshots.send_changed()
    assert counts.budgets[-1] == RESEND_GROUPS and counts.resending == 0
