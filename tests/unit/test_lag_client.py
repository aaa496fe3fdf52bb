"""The lag's offsets client (streams/progress.py) is opened once, at the worker's start,
and learns the watched topics there, not in the first publish tick."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams import progress
from streams.progress import Progress


class FakeOffsetsClient:
    """Stands for aiokafka's consumer: records its start and end-offsets requests."""

    made: list[FakeOffsetsClient] = []

    def __init__(self, **options: Any) -> None:
        self.started = 0
        self.requests: list[list[tuple[str, int]]] = []
        FakeOffsetsClient.made.append(self)

    async def start(self) -> None:
        await asyncio.sleep(0.01)  # a connection: the first tick may come meanwhile
        self.started += 1

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.requests.append(sorted((tp.topic, tp.partition) for tp in tps))
        return dict.fromkeys(tps, 5)


async def test_the_offsets_client_opens_once_and_learns_the_watched_topics_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeOffsetsClient.made = []
    monkeypatch.setattr(progress, "AIOKafkaConsumer", FakeOffsetsClient)
    lag = Progress(lambda: None, SimpleNamespace(), watched=["merge", "clicks"],  # type: ignore[arg-type]
                   inputs=["clicks"], state_whole=lambda: True, kafka_options={},
                   backlog=10)  # fmt: skip
    first_tick = lag._end_offsets([TopicPartition("clicks", 3)])
    _, ends = await asyncio.gather(lag.connect(), first_tick)
    (client,) = FakeOffsetsClient.made
    assert client.started == 1
    assert client.requests[0] == [("clicks", 0), ("merge", 0)]  # connect's, first
    assert list(ends.values()) == [5]
