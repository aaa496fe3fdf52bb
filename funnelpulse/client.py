"""A small producer client for the input topics: ``FunnelPulseProducer`` (asyncio, on
aiokafka) and ``FunnelPulseProducerSync`` (the same from plain threads).

It sends events the way the worker counts them cheapest: JSON-array batches per (type,
campaign), keyed by the campaign id. aiokafka's default partitioner hashes the key with
murmur2, which is how the worker places a campaign's home partition
(``streams/routing.py``), so a batch is counted where it lands, without a hop. Funnel
events without a campaign are keyed by lead (or customer), as ``funnelpulse replay``
does. A batch goes out when it holds ``max_batch_events`` or ``max_batch_bytes``, when it
is ``linger`` old, or on ``flush()``.

Every event is checked before it is queued, by the worker's own validator
(``streams.events``) with this client's settings: a bad event raises ``InvalidEvent``
with the worker's reason code, and never reaches the topic. An event without
``event_id`` gets a uuid4, written into the caller's dict.

The trap is the retry. The worker counts an ``event_id`` once (per type, within the
dedup horizon), so a retry must carry the same id: a batch whose delivery fails is kept
as it was encoded and sent again, byte for byte, by the next ``flush()`` (or linger);
and sending the same dict again after an error re-sends its assigned id. A new dict is
a new event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.events import MAX_EVENT_BYTES, BadEvent, EventType, Limits, Reason, parse_checked
from streams.topics import TopicNames

from .replay import message_key
from .security import kafka_client_kwargs
from .settings import Settings

T = TypeVar("T")
MAX_MESSAGE_BYTES = 512 * 1024  # well under the worker's 1 MiB message limit


class InvalidEvent(ValueError):
    """The worker would dead-letter this event; ``reason`` is its ``error.reason`` code."""

    def __init__(self, kind: EventType, reason: Reason, detail: str, event: Any) -> None:
        super().__init__(f"invalid {kind.value} event: {reason.value}: {detail}")
        self.kind, self.reason, self.detail, self.event = kind, reason, detail, event


class DeliveryError(RuntimeError):
    """Kafka did not take a batch; it stays queued, with its event ids, for the next
    ``flush()``."""

    def __init__(self, topic: str, events: int, cause: BaseException) -> None:
        super().__init__(f"{events} events to {topic} not delivered ({cause!r}); kept to retry")
        self.topic, self.events, self.cause = topic, events, cause


class Sender(Protocol):
    """What the client needs of ``AIOKafkaProducer`` (tests pass a fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Any: ...


@dataclass
class Batch:
    """Events of one topic and key, each already encoded: a retry sends the same bytes."""

    topic: str
    key: bytes | None
    started: float
    events: list[bytes] = field(default_factory=list)
    size: int = 2  # the brackets

    def add(self, encoded: bytes) -> None:
        self.size += len(encoded) + (1 if self.events else 0)  # and its comma
        self.events.append(encoded)

    def value(self) -> bytes:
        return b"[" + b",".join(self.events) + b"]"


class FunnelPulseProducer:
    """``async with FunnelPulseProducer(settings) as fp: await fp.send("click", {...})``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        max_batch_events: int = 1000,
        max_batch_bytes: int = MAX_MESSAGE_BYTES,
        linger: float = 0.05,
        sender: Sender | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= max_batch_events <= 10_000:
            raise ValueError("max_batch_events must be in 1..10000 (the worker's batch limit)")
        if not MAX_EVENT_BYTES + 2 <= max_batch_bytes <= 1024 * 1024:
            raise ValueError(f"max_batch_bytes must be in {MAX_EVENT_BYTES + 2}..1048576")
        self.settings = s = settings or Settings()
        self.topics = TopicNames.from_settings(s).inputs
        self.max_events, self.max_bytes, self.linger = max_batch_events, max_batch_bytes, linger
        self.clock = clock
        self._channels = s.channel_table()
        self._sender = sender  # made at start(): aiokafka binds it to the running loop
        self._open: dict[tuple[EventType, bytes | None], Batch] = {}
        self._retry: list[Batch] = []  # failed deliveries, sent again first, unchanged
        self._lock = asyncio.Lock()
        self._lingering: asyncio.Task[None] | None = None
        self._background_error: DeliveryError | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> FunnelPulseProducer:
        """Settings from ``FUNNELPULSE_*`` / ``KAFKA_BOOTSTRAP_SERVERS``, as the worker's."""
        return cls(Settings.from_env(os.environ if env is None else env), **options)

    async def start(self) -> None:
        if self._sender is None:
            options = kafka_client_kwargs(self.settings)
            self._sender = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
        await self._sender.start()
        self._lingering = asyncio.create_task(self._linger_loop(), name="funnelpulse-linger")

    async def stop(self) -> None:
        """Sends what is queued, then stops; raises ``DeliveryError`` if that fails."""
        if self._lingering is not None:
            self._lingering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lingering
            self._lingering = None
        try:
            await self.flush()
        finally:
            if self._sender is not None:
                await self._sender.stop()

    async def __aenter__(self) -> FunnelPulseProducer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def pending(self) -> int:
        """Events queued or kept for a retry, not yet acknowledged by Kafka."""
        batches = [*self._retry, *self._open.values()]
        return sum(len(batch.events) for batch in batches)

    async def send(self, kind: EventType | str, event: dict[str, Any]) -> str:
        """Validates and queues one event; returns its ``event_id`` (assigned when absent).
        Raises ``InvalidEvent`` (not queued), or ``DeliveryError`` when a batch could not
        be delivered (this event is queued all the same; the batch is kept to retry)."""
        event_type = _event_type(kind)
        encoded = self.check(event_type, event)
        key = message_key(event)
        slot = (event_type, key.encode() if key is not None else None)
        full = self._open.get(slot)
        ready = []
        if full is not None and full.size + 1 + len(encoded) > self.max_bytes:
            ready.append(self._open.pop(slot))
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = Batch(self.topics[event_type], slot[1], self.clock())
        batch.add(encoded)
        if len(batch.events) >= self.max_events:
            ready.append(self._open.pop(slot))
        if ready:  # the event is queued whatever happens to this delivery
            await self._deliver(ready)
        self._raise_background_error()
        return str(event["event_id"])

    async def send_many(self, kind: EventType | str, events: Iterable[dict[str, Any]]) -> list[str]:
        return [await self.send(kind, event) for event in events]

    def check(self, kind: EventType, event: dict[str, Any]) -> bytes:
        """The event's JSON if the worker would accept it now (its own validator reads the
        JSON the worker will read); assigns ``event_id``."""
        if not isinstance(event, dict):
            raise InvalidEvent(kind, Reason.NOT_AN_OBJECT, "an event is a dict", event)
        if event.get("event_id") is None:
            event["event_id"] = str(uuid.uuid4())
        try:
            encoded = orjson.dumps(event, default=_decimal)
        except TypeError as exc:  # not JSON (a set, bytes, ...), or nested too deep
            raise InvalidEvent(kind, Reason.WRONG_TYPE, f"not JSON: {exc}", event) from None
        if len(encoded) > MAX_EVENT_BYTES:
            detail = f"event is {len(encoded)} bytes; at most {MAX_EVENT_BYTES}"
            raise InvalidEvent(kind, Reason.TOO_LARGE, detail, event)
        s = self.settings
        limits = Limits(self.clock(), s.max_future, s.horizon, s.fx_rates, channels=self._channels)
        try:
            parse_checked(orjson.loads(encoded), kind, limits)
        except BadEvent as bad:
            raise InvalidEvent(kind, bad.reason, bad.detail, event) from None
        return encoded

    async def flush(self) -> None:
        """Sends every queued batch; raises ``DeliveryError`` (the batches stay queued)."""
        self._background_error = None
        batches, self._open = list(self._open.values()), {}
        await self._deliver(batches)

    async def _deliver(self, batches: list[Batch]) -> None:
        async with self._lock:
            todo, self._retry = [*self._retry, *batches], []
            for i, batch in enumerate(todo):
                try:
                    await self._started().send_and_wait(batch.topic, batch.value(), key=batch.key)
                except (KafkaError, OSError) as exc:
                    self._retry.extend(todo[i:])
                    raise DeliveryError(batch.topic, len(batch.events), exc) from exc

    async def _linger_loop(self) -> None:
        while True:
            await asyncio.sleep(self.linger)
            now = self.clock()
            due = [slot for slot, b in self._open.items() if now - b.started >= self.linger]
            if not due and not self._retry:
                continue
            try:
                await self._deliver([self._open.pop(slot) for slot in due])
            except DeliveryError as error:  # kept; said at the next send or flush
                self._background_error = error

    def _started(self) -> Sender:
        if self._sender is None:
            raise RuntimeError("FunnelPulseProducer is not started: await start(), or async with")
        return self._sender

    def _raise_background_error(self) -> None:
        error, self._background_error = self._background_error, None
        if error is not None:
            raise error


def _decimal(value: Any) -> str:
    """A ``Decimal`` amount goes out as a numeric string, exact (the worker takes both)."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _event_type(kind: EventType | str) -> EventType:
    try:
        return EventType(kind)
    except ValueError:
        known = ", ".join(k.value for k in EventType)
        raise ValueError(f"unknown event type {kind!r}: one of {known}") from None


class FunnelPulseProducerSync:
    """``FunnelPulseProducer`` for code without an event loop: it runs one of its own in a
    thread. ``with FunnelPulseProducerSync(settings) as fp: fp.send("click", {...})``."""

    def __init__(self, settings: Settings | None = None, *, timeout: float = 60.0, **options: Any):
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="funnelpulse-producer", daemon=True
        )
        self._thread.start()
        self._async = FunnelPulseProducer(settings, **options)
        self._call(self._async.start())

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(self.timeout)

    def send(self, kind: EventType | str, event: dict[str, Any]) -> str:
        return self._call(self._async.send(kind, event))

    def send_many(self, kind: EventType | str, events: Iterable[dict[str, Any]]) -> list[str]:
        return self._call(self._async.send_many(kind, list(events)))

    def flush(self) -> None:
        self._call(self._async.flush())

    @property
    def pending(self) -> int:
        return self._async.pending

    def close(self) -> None:
        """Sends what is queued and stops the thread (``DeliveryError`` if sending fails)."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._async.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout)
            self._loop.close()

    def __enter__(self) -> FunnelPulseProducerSync:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = [
    "DeliveryError",
    "FunnelPulseProducer",
    "FunnelPulseProducerSync",
    "InvalidEvent",
]
