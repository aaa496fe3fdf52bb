"""Batches of stream messages whose linger follows the backlog.

A batch amortises what is paid once per batch: one changelog record per touched pane
group, one dedup record, one merge snapshot per touched pane. Faust's
``Stream.take_events(max, within)`` fixes how long a batch may wait to fill when the
generator starts. Caught up, that wait must stay short: every message waits for it
before it is counted (produce → Redis latency). Reading a backlog, the messages are
already in Kafka, so a longer wait costs no freshness and lets a batch fill up; with
20 ms a batch of single-event messages held ~100 of them, and single-event drains paid
~2 changelog records per event (docs/BENCHMARKS.md, notes in the issue-5 log).

So the wait is asked for anew before each batch (``linger``), and a batch is also
closed by its size in bytes: under a backlog of 100-event messages a count cap alone
would build batches of 100,000 events and their decoded objects at once.

The messages are acked only when the consumer asks for the next batch, as with
``take_events``: a committed offset never runs ahead of the state its batch produced.

The trap: a generator is also resumed when it is *closed* — the agent crashed on the
batch, or was cancelled while stopping — and an ack in a ``finally`` then acked a batch
whose counts never reached the changelog. Faust committed those offsets at shutdown and
the restarted worker never read them again (the SIGTERM fault test, 1,149 USD of spend
short after a batch failed under Faust's closing stores). Only the consumer's coming
back for the next batch acks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchLimits:
    """What closes a batch: ``max_messages`` or ``max_bytes`` of message values, or
    ``linger()`` seconds after the previous batch was handed over."""

    max_messages: int
    max_bytes: int
    linger: Callable[[], float]


async def take_batches(stream: Any, limits: BatchLimits) -> AsyncGenerator[list[Any], None]:
    """The stream's events (``faust.EventT``) a batch at a time, acked after use."""
    events: list[Any] = []
    size = 0
    closed = asyncio.Event()  # the batch reached a cap: hand it over now
    room = asyncio.Event()  # cleared from a full or handed-over batch until it is acked
    room.set()

    async def collect(value: Any) -> Any:
        nonlocal size
        event = stream.current_event  # this message's: the stream waits for us
        if event is None:
            raise RuntimeError("a batched stream value without its event")
        await room.wait()
        events.append(event)
        size += len(event.message.value or b"")
        if len(events) >= limits.max_messages or size >= limits.max_bytes:
            room.clear()
            closed.set()
        return value

    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False  # acked below, once the batch is done
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))  # the stream runs collect in the background
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(closed, timeout=limits.linger())
            if not events:
                continue
            room.clear()
            batch = list(events)
            yield batch  # closed here: the batch is left unacked, for the restart
            events.clear()
            size = 0
            for event in batch:
                await stream.ack(event)
            closed.clear()
            room.set()
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(collect)
