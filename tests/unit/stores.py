"""Helpers of the store tests: a real Faust RocksDB store in a temporary directory, and a
changelog producer whose sends the test acknowledges."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import faust
from faust.assignor.client_assignment import ClientAssignment
from faust.types import TP


class Changelog:
    """Stands for the producer: records sent, each with a future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, Any, asyncio.Future[Any]]] = []
        self.next_offset: dict[int, int] = {}

    async def send(self, table: Any, partition: int, key: str, value: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, key, value, future))
        return future

    def ack(self, count: int | None = None) -> None:
        """Acks the oldest ``count`` unacked records (all by default), in send order."""
        pending = [s for s in self.sent if not s[3].done()]
        for partition, _key, _value, future in pending[:count]:
            offset = self.next_offset.get(partition, 0)
            self.next_offset[partition] = offset + 1
            future.set_result(SimpleNamespace(offset=offset))


def rocks_table(
    app: faust.App, name: str = "t", actives: Iterable[int] = range(4), **options: Any
) -> Any:
    """A RocksDB table of 4 partitions; ``actives`` are assigned to this worker (the
    store opens no other)."""
    table = app.Table(name, partitions=4, options={"write_buffer_size": 1 << 20}, **options)
    assign(app, table, actives=actives)
    return table


def assign(
    app: faust.App, table: Any, actives: Iterable[int] = (), standbys: Iterable[int] = ()
) -> None:
    """Sets the table's changelog partitions in the app's assignor, as a rebalance does."""
    topic = table.changelog_topic.get_topic_name()
    current = app.assignor._assignment
    app.assignor._assignment = ClientAssignment(
        actives={**current.actives, topic: sorted(actives)},
        standbys={**current.standbys, topic: sorted(standbys)},
    )


def tp(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
