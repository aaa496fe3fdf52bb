"""``funnelpulse replay``: a JSON Lines file of events → the input topics, with progress.

Recorded traffic, exports from an ad platform or a hand-written incident reproduction
should reach the worker exactly as live producers would send it: each event on the topic
its ``type`` names, keyed by campaign, in the cheap JSON-array batches. Planning (lines →
messages) is a pure generator, so grouping, batch limits and bad-line handling are unit
tested without a broker; the async part only produces, throttles and reports.

Lines are sent byte for byte (never re-encoded): the worker validates every event and
dead-letters the bad ones, as it would for any producer. Replay only refuses what it
cannot route or could not send: a line that is not a JSON object, lacks a known ``type``,
or is over the worker's 64 KiB event limit is reported with its line number and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from streams.events import MAX_EVENT_BYTES, EventType
from streams.topics import TopicNames

from .security import kafka_client_kwargs
from .settings import Settings

MAX_MESSAGE_BYTES = 512 * 1024  # well under the worker's and the producer's 1 MiB
MAX_PENDING_EVENTS = 10_000  # open batches are flushed, oldest first, beyond this
MAX_REPORTED_LINES = 100  # skipped lines named on stderr; all of them are counted
KEY_FIELDS = ("campaign_id", "lead_id", "customer_id")
_KNOWN = ", ".join(kind.value for kind in EventType)
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Parsed:
    """One routable event: its topic type, its message key and its line's exact bytes."""

    kind: EventType
    key: str | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Skipped:
    line: int  # 1-based
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to produce: a JSON array of ``events`` events, or one object."""

    kind: EventType
    key: str | None
    value: bytes
    events: int


def _json_kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _kind_of(doc: dict[str, Any]) -> EventType | str:
    """The event type, or why there is none."""
    declared = doc.get("type")
    if declared is None:
        return 'no "type" field (it names the topic)'
    if not isinstance(declared, str):
        return f'"type" must be a string, not {_json_kind(declared)}'
    try:
        return EventType(declared)
    except ValueError:
        return f'unknown type "{declared[:40]}" (known: {_KNOWN})'


def message_key(doc: Mapping[str, Any]) -> str | None:
    """``campaign_id``, else ``lead_id``, else ``customer_id``; None leaves it to Kafka."""
    for field in KEY_FIELDS:
        value = doc.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def parse_line(number: int, line: bytes | str) -> Parsed | Skipped | None:
    """One line → a routable event, a reason to skip it, or None when it is blank."""
    raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    raw = raw.strip()
    if number == 1:
        raw = raw.removeprefix(_BOM).strip()
    if not raw:
        return None
    if len(raw) > MAX_EVENT_BYTES:
        return Skipped(number, f"line is {len(raw)} bytes, over the 64 KiB event limit")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Skipped(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(doc, dict):
        return Skipped(number, f"not a JSON object but {_json_kind(doc)}")
    kind = _kind_of(doc)
    if not isinstance(kind, EventType):  # an EventType is a str too: test for it
        return Skipped(number, kind)
    return Parsed(kind, message_key(doc), raw)


class _Batches:
    """Open batches per (type, key); each leaves whole, so a key's events stay in order."""

    def __init__(self, size: int, max_bytes: int, max_pending: int) -> None:
        self.size, self.max_bytes, self.max_pending = size, max_bytes, max_pending
        self.open: dict[tuple[EventType, str | None], list[bytes]] = {}
        self.bytes: dict[tuple[EventType, str | None], int] = {}
        self.pending = 0

    def add(self, event: Parsed) -> list[Message]:
        group = (event.kind, event.key)
        out = []
        if group in self.open and self.bytes[group] + len(event.raw) + 2 > self.max_bytes:
            out.append(self._close(group))
        self.open.setdefault(group, []).append(event.raw)
        self.bytes[group] = self.bytes.get(group, 1) + len(event.raw) + 1  # "[" + raw + ","
        self.pending += 1
        if len(self.open[group]) >= self.size:
            out.append(self._close(group))
        while self.pending > self.max_pending:
            out.append(self._close(next(iter(self.open))))
        return out

    def drain(self) -> list[Message]:
        return [self._close(group) for group in list(self.open)]

    def _close(self, group: tuple[EventType, str | None]) -> Message:
        events = self.open.pop(group)
        del self.bytes[group]
        self.pending -= len(events)
        return Message(group[0], group[1], b"[" + b",".join(events) + b"]", len(events))


def plan(
    lines: Iterable[bytes | str],
    batch: int = 100,
    single: bool = False,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_pending: int = MAX_PENDING_EVENTS,
) -> Iterator[Message | Skipped]:
    """Lines → messages to produce and lines skipped, lazily, in file order.

    Batches hold up to ``batch`` events of one type and key (and at most ``max_bytes``);
    ``single`` sends each event as its own JSON object instead. Never raises on content.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    batches = _Batches(batch, max_bytes, max_pending)
    for number, line in enumerate(lines, start=1):
        parsed = parse_line(number, line)
        if parsed is None:
            continue
        if isinstance(parsed, Skipped):
            yield parsed
        elif single:
            yield Message(parsed.kind, parsed.key, parsed.raw, 1)
        else:
            yield from batches.add(parsed)
    yield from batches.drain()


@dataclass
class Totals:
    sent: int = 0  # events acknowledged by Kafka
    messages: int = 0
    skipped: int = 0
    queued: int = 0  # events handed to the producer

    def summary(self) -> str:
        return (
            f"replay: sent {self.sent} events in {self.messages} messages, "
            f"skipped {self.skipped} lines"
        )


class Progress:
    """An in-place ``\\r`` line on a terminal; a plain line every few seconds elsewhere."""

    def __init__(self, stream: TextIO, total_bytes: int | None, quiet: bool) -> None:
        self.stream, self.total_bytes, self.quiet = stream, total_bytes, quiet
        self.tty = stream.isatty()
        self.every = 0.25 if self.tty else 5.0
        self.started = self.last = time.monotonic()
        self.drawn = False
        self.reported = 0

    def update(self, events: int, bytes_read: int) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < self.every:
            return
        self.last = now
        rate = events / max(now - self.started, 1e-9)
        if self.total_bytes:
            done = f"{min(100.0, 100 * bytes_read / self.total_bytes):.0f}% of the file"
        else:
            done = f"{bytes_read / 1e6:,.1f} MB read"
        line = f"replay: {events:,} events, {rate:,.0f}/s, {done}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def skipped(self, item: Skipped) -> None:
        self.reported += 1
        if self.reported > MAX_REPORTED_LINES:
            return
        text = f"replay: line {item.line}: {item.reason}"
        if self.reported == MAX_REPORTED_LINES:
            text += " (further skipped lines are counted, not shown)"
        self.say(text)

    def say(self, text: str) -> None:
        self.end()
        print(text, file=self.stream, flush=True)

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.drawn = False


class CountingReader:
    """The lines of a binary stream, counting the bytes read for the progress line."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.bytes_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.stream:
            self.bytes_read += len(line)
            yield line


class MissingTopic(RuntimeError):
    """The broker does not know a topic (and, like the local one, does not auto-create)."""


class Sender:
    """Produces messages and settles their acknowledgements as they come back."""

    def __init__(
        self, producer: AIOKafkaProducer, topics: Mapping[EventType, str], totals: Totals
    ) -> None:
        self.producer, self.topics, self.totals = producer, topics, totals
        self.inflight: deque[tuple[asyncio.Future[Any], int]] = deque()

    async def send(self, message: Message) -> None:
        topic = self.topics[message.kind]
        key = message.key.encode() if message.key is not None else None
        try:
            future = await self.producer.send(topic, message.value, key=key)
        except UnknownTopicOrPartitionError:
            raise MissingTopic(
                f"topic {topic} does not exist (the worker creates its topics at start)"
            ) from None
        self.inflight.append((future, message.events))
        self.totals.queued += message.events
        self._settle()

    def _settle(self) -> None:
        while self.inflight and self.inflight[0][0].done():
            future, events = self.inflight.popleft()
            future.result()  # a failed delivery raises its KafkaError here
            self.totals.sent += events
            self.totals.messages += 1

    async def finish(self) -> None:
        await self.producer.flush()
        while self.inflight:
            await self.inflight[0][0]
            self._settle()


@dataclass(frozen=True)
class Options:
    path: str  # "-" is stdin
    batch: int = 100
    single: bool = False
    rate: float | None = None  # events per second
    quiet: bool = False


async def _throttle(rate: float | None, started: float, queued: int) -> None:
    if rate:
        delay = started + queued / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def send_all(
    reader: CountingReader,
    settings: Settings,
    options: Options,
    totals: Totals,
    progress: Progress,
) -> None:
    """Plans and produces everything; raises KafkaError or MissingTopic on failure."""
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        acks="all",
        linger_ms=20,
        request_timeout_ms=15_000,
    )
    try:
        await producer.start()
        sender = Sender(producer, TopicNames.from_settings(settings).inputs, totals)
        started = time.monotonic()
        for item in plan(reader, options.batch, options.single):
            if isinstance(item, Skipped):
                totals.skipped += 1
                progress.skipped(item)
                continue
            await sender.send(item)
            progress.update(totals.queued, reader.bytes_read)
            await _throttle(options.rate, started, totals.queued)
        await sender.finish()
    finally:
        await producer.stop()


def _size(stream: BinaryIO) -> int | None:
    """The file's size for a percentage; None for pipes and terminals."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None


def _open(path: str) -> BinaryIO:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def run_replay(settings: Settings, options: Options) -> int:
    """The command: 0 when every routable event was sent, 1 on a Kafka failure,
    2 when the file cannot be read, 130 on Ctrl-C."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its retries are not news
    try:
        stream = _open(options.path)
    except OSError as exc:
        print(f"replay: cannot read {options.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    totals = Totals()
    with stream:
        progress = Progress(sys.stderr, _size(stream), options.quiet)
        reader = CountingReader(stream)
        try:
            asyncio.run(send_all(reader, settings, options, totals, progress))
        except (KafkaError, MissingTopic) as exc:
            progress.say(f"replay: Kafka failure: {exc or type(exc).__name__}")
            progress.say(totals.summary())
            return 1
        except OSError as exc:
            progress.say(f"replay: failed: {exc}")
            progress.say(totals.summary())
            return 1
        except KeyboardInterrupt:
            progress.say(f"{totals.summary()} (interrupted)")
            return 130
    progress.say(totals.summary())
    return 0
