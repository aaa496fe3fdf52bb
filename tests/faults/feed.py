"""A scenario streamed in at a pace while faults happen, remembering where each message landed.

The fault tests need traffic that keeps arriving while the worker is killed, the broker is
restarted or Redis is away, and they need to know, at any moment, which events the broker
holds (partition and offset of every message) to say how many were in flight. Phases are
kept in order as in the acceptance test (anonymous funnel events only after their sign-ups
have been counted), and a send that fails while the broker is down is tried again: a copy
that did land is an exact duplicate, which the worker's event_id dedup must absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.integration.recount import wait_for_counts
from tests.integration.scenario import LONGEST, Message, Scenario

TICK = 0.05
SEND_TIMEOUT = 20.0


@dataclass(frozen=True)
class Landed:
    topic: str
    partition: int
    offset: int
    events: int


def events_in(value: bytes) -> int:
    if value[:1] != b"[":
        return 1
    try:
        return max(1, len(orjson.loads(value)))
    except orjson.JSONDecodeError:
        return 1


def phase_goal(sc: Scenario, phase: int) -> dict[str, int]:
    """What Redis shows for ``all`` over the longest window once a phase is fully counted."""
    if phase == 1:
        return {"signups": sc.truth[("all", LONGEST)]["signups"]}
    return {"purchases": sc.purchases_by_phase[1] + sc.purchases_by_phase[2]}


def counted_barrier(
    redis: Redis, namespace: str, sc: Scenario, patience: float
) -> Callable[[int], Awaitable[None]]:
    async def wait(phase: int) -> None:
        deadline = time.monotonic() + patience
        while True:
            try:
                left = max(1.0, deadline - time.monotonic())
                key = f"{namespace}:kpi:{LONGEST}:all"
                return await wait_for_counts(redis, key, phase_goal(sc, phase), left)
            except RedisError:  # Redis is down on purpose: wait for it
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    return wait


class Feed:
    """Sends ``sc.messages`` at ``rate`` messages/s, never beyond ``ceiling`` messages."""

    def __init__(self, bootstrap: str, namespace: str, sc: Scenario, rate: float) -> None:
        self.bootstrap = bootstrap
        self.namespace = namespace
        self.phases = [[m for m in sc.messages if m.phase == p] for p in (1, 2, 3)]
        self.total = len(sc.messages)
        self.events_total = sum(events_in(m.value) for m in sc.messages)
        self.rate = rate
        self.ceiling = self.total
        self.sent = 0
        self.events_sent = 0
        self.resends = 0
        self.landed: list[Landed] = []
        self.finished_at: float | None = None
        self._client: AIOKafkaProducer | None = None

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    async def run(self, barrier: Callable[[int], Awaitable[None]]) -> None:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # broker outages are planned
        try:
            for number, messages in enumerate(self.phases, start=1):
                await self._send_phase(messages)
                if number < len(self.phases):
                    await barrier(number)
        finally:
            self.finished_at = time.monotonic()
            await self._close()

    async def _send_phase(self, messages: list[Message]) -> None:
        per_tick = max(1, round(self.rate * TICK))
        i = 0
        while i < len(messages):
            if self.sent >= self.ceiling:
                await asyncio.sleep(TICK)
                continue
            room = min(per_tick, self.ceiling - self.sent, len(messages) - i)
            chunk = messages[i : i + room]
            started = time.monotonic()
            await self._send_all(chunk)
            i += room
            await asyncio.sleep(max(0.0, TICK - (time.monotonic() - started)))

    async def _send_all(self, chunk: list[Message]) -> None:
        """Sends until the broker acknowledged every message; after a failure the producer
        is made anew (a client that lived through a broker restart may never recover)."""
        pending = list(chunk)
        while pending:
            try:
                producer = await self._producer()
                sent = await asyncio.wait_for(self._send_once(producer, pending), SEND_TIMEOUT)
            except Exception:  # the broker is away: nothing known to have landed
                sent = []
            landed = {id(m) for m, _ in sent}
            for m, result in sent:
                n = events_in(m.value)
                self.landed.append(Landed(result.topic, result.partition, result.offset, n))
                self.sent += 1
                self.events_sent += n
            pending = [m for m in pending if id(m) not in landed]
            if pending:
                self.resends += len(pending)
                await self._close()
                await asyncio.sleep(1.0)

    async def _send_once(self, producer: AIOKafkaProducer, pending: list[Message]) -> list[Any]:
        futures = []
        for m in pending:
            key = m.key.encode() if m.key else None
            futures.append(
                await producer.send(f"{self.namespace}.{m.topic_suffix}", m.value, key=key)
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        return [
            (m, r)
            for m, r in zip(pending, results, strict=True)
            if not isinstance(r, BaseException)
        ]

    async def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            client = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, linger_ms=5, request_timeout_ms=10_000
            )
            try:
                await asyncio.wait_for(client.start(), SEND_TIMEOUT)
            except BaseException:
                await client.stop()
                raise
            self._client = client
        return self._client

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), SEND_TIMEOUT)
