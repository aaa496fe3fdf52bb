"""A batch's dedup records are on the broker before any of its pane records is sent
(``batch.PartitionWork.send_firsts``), and the partial snapshots read the panes only
where every record is acknowledged (``partial_snapshots.PartialSnapshots``)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from metrics.prometheus import Metrics
from streams.batch import Batch
from streams.campaign_channels import ChannelTally
from streams.events import Event, EventType
from streams.partial_counts import PartialCounts
from streams.partial_snapshots import PartialSnapshots
from streams.stage import Stage

from .stores import Changelog

NOW = 1_800_000_000.0
CLICKS = 1  # the clicks topic's index in the replay marks


def counts() -> PartialCounts:
    return PartialCounts(
        Stage.INTAKE, SimpleNamespace(data={}), SimpleNamespace(data={}),
        horizon=86_400.0, pane_sizes=[60, 3600], max_future=60.0, dedup_horizon=3600.0,
        dedup_max_ids=1000, metrics=Metrics(CollectorRegistry(), 10), channels=ChannelTally(),
    )  # fmt: skip


def click(n: int) -> Event:
    return Event(EventType.CLICK, f"e{n}", NOW - 60, "spring", "email")


async def test_no_pane_record_leaves_before_the_batch_dedup_record_is_acknowledged(
    changelog: Changelog,
) -> None:
    partial = counts()
    batch = Batch(NOW, lambda p: partial.open_partition(p, NOW))
    for offset in (4, 5):
        batch.groups[(0, CLICKS)].append((offset, [(0, click(offset))], None))
    assert partial.count(batch) == []
    finishing = asyncio.create_task(partial.finish(batch, {"intake": 2}))
    await asyncio.sleep(0.05)
    sent = [key for _partition, key, _value, _future in changelog.sent]
    assert sent == ["0|1:5"]  # the dedup record only (one pass: named by its last offset)
    assert not finishing.done()
    changelog.ack()
    await asyncio.wait_for(finishing, 1)
    keys = [key for _partition, key, _value, _future in changelog.sent]
    assert keys[0] == "0|1:5" and len(keys) > 1
    assert all(key.startswith("0|") and key.count("|") == 3 for key in keys[1:])  # panes
    assert partial.pending[0]  # and the panes wait for the next snapshot


async def test_snapshots_are_read_inside_the_durable_context() -> None:
    partial = counts()
    inside: list[bool] = []
    state = {"durable": False}

    @asynccontextmanager
    async def durable() -> Any:
        state["durable"] = True
        yield
        state["durable"] = False

    class Topic:
        async def send(self, value: bytes, partition: int) -> Any:
            inside.append(state["durable"])
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_result(SimpleNamespace(offset=0))
            return future

    partial.pending[0].add(("all", 60, 0))
    partial.partials.data["0|all|60|0"] = b"[[0,[1,2],[1,7]]]"
    snapshots = PartialSnapshots([partial], Topic(), 4, ChannelTally(), durable=durable)
    await snapshots.send_changed()
    assert inside == [True] and not state["durable"]


async def test_an_idle_tick_neither_pauses_the_batches_nor_flushes() -> None:
    """Nothing changed, nothing to re-send: the durable context (a pause of every batch
    and a producer flush) is not entered on the snapshot timer's 100 ms ticks."""
    partial = counts()
    entered: list[str] = []

    @asynccontextmanager
    async def durable() -> Any:
        entered.append("durable")
        yield

    snapshots = PartialSnapshots([partial], None, 4, ChannelTally(), durable=durable)
    await snapshots.send_changed()
    assert entered == [] and not partial.changed
    partial.pending[0].add(("all", 60, 0))
    assert partial.changed
