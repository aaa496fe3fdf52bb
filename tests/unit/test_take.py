"""Batches close on a message count, a byte size or the linger asked for before each
batch, and their events are acked only once the next batch is asked for
(streams/take.py). The stream here plays Faust's part: it runs its processors on each
value in a background task and waits while a processor waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace
from typing import Any

from streams.exactly_once.batches import BatchLimits, take_batches


class Channel:
    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration  # values come through the played stream's queue


class PlayedStream:
    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.enable_acks = True
        self._processors: list[Any] = []
        self.current_event: Any = None
        self.should_stop = False
        self.acked: list[bytes] = []
        self.channel = Channel()
        self._drainer: asyncio.Task[None] | None = None

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, _channel: Any) -> None:
        self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            value = await self.incoming.get()
            self.current_event = SimpleNamespace(message=SimpleNamespace(value=value))
            for processor in self._processors:
                value = await processor(value)

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.should_stop

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.value)

    def send(self, *values: bytes) -> None:
        for value in values:
            self.incoming.put_nowait(value)


def values(batch: list[Any]) -> list[bytes]:
    return [event.message.value for event in batch]


async def test_a_batch_closes_at_the_message_cap_without_waiting_for_the_linger() -> None:
    stream = PlayedStream()
    stream.send(*[b"m%d" % i for i in range(7)])
    batches = take_batches(stream, BatchLimits(3, 1 << 20, lambda: 10.0))
    started = time.monotonic()
    first = await anext(batches)
    second = await anext(batches)
    assert (values(first), values(second)) == ([b"m0", b"m1", b"m2"], [b"m3", b"m4", b"m5"])
    assert time.monotonic() - started < 5  # the 10 s linger never ran out
    assert stream.acked == [b"m0", b"m1", b"m2"]  # the first, once the second was asked for
    await batches.aclose()


async def test_a_batch_closes_at_the_byte_cap() -> None:
    stream = PlayedStream()
    stream.send(b"x" * 600, b"y" * 600, b"z")
    batches = take_batches(stream, BatchLimits(1000, 1000, lambda: 10.0))
    assert values(await asyncio.wait_for(anext(batches), 5)) == [b"x" * 600, b"y" * 600]
    await batches.aclose()


async def test_the_linger_is_asked_for_before_each_batch() -> None:
    stream = PlayedStream()
    lingers = iter([0.05, 0.3])
    batches = take_batches(stream, BatchLimits(1000, 1 << 20, lambda: next(lingers)))
    stream.send(b"a")
    started = time.monotonic()
    assert values(await anext(batches)) == [b"a"]
    short = time.monotonic() - started
    stream.send(b"b")
    started = time.monotonic()
    assert values(await anext(batches)) == [b"b"]
    long = time.monotonic() - started
    assert short < 0.25 <= long
    await batches.aclose()


async def test_messages_arriving_during_a_batch_wait_for_the_next_one() -> None:
    stream = PlayedStream()
    batches = take_batches(stream, BatchLimits(1000, 1 << 20, lambda: 0.05))
    stream.send(b"a")
    first = await anext(batches)
    stream.send(b"b", b"c")
    await asyncio.sleep(0.1)  # the consumer is still on the first batch
    assert values(first) == [b"a"] and stream.acked == []
    assert values(await anext(batches)) == [b"b", b"c"]
    assert stream.acked == [b"a"]
    await batches.aclose()
    assert stream.enable_acks and stream._processors == []  # the stream as it was


async def test_a_batch_its_consumer_gave_up_on_is_not_acked() -> None:
    """Closed on a batch (the agent crashed on it, or was cancelled while stopping), the
    generator acks none of its events: their offsets stay uncommitted, for the restart."""
    stream = PlayedStream()
    batches = take_batches(stream, BatchLimits(1000, 1 << 20, lambda: 0.05))
    stream.send(b"a", b"b")
    assert values(await anext(batches)) == [b"a", b"b"]
    await batches.aclose()
    assert stream.acked == []
    assert stream.enable_acks and stream._processors == []


async def test_a_batch_whose_handling_raised_is_not_acked() -> None:
    stream = PlayedStream()
    batches = take_batches(stream, BatchLimits(1000, 1 << 20, lambda: 0.05))
    stream.send(b"a")
    await anext(batches)
    with contextlib.suppress(RuntimeError):
        await batches.athrow(RuntimeError("the handler failed"))
    assert stream.acked == []
