"""Rejected input goes to the dead-letter topic, unchanged, with the reason in headers.

Nothing is dropped silently and nothing crashes the worker: a bad event becomes a record
with ``error.reason`` / ``error.detail`` and its source coordinates (SPEC §1), counted in
``marketing_events_rejected_total{reason}``; a bug met while handling a message becomes
an ``internal_error`` dead letter of that message. The send is awaited
(``exactly_once.delivery``): a dead letter that never reached the broker would be a
silently dropped event once the input offset is committed.
"""

from __future__ import annotations

from typing import Any

from metrics.prometheus import Metrics

from .codec import dead_letter_headers
from .events import Reason, Rejected
from .exactly_once.delivery import require_delivery


class DeadLetters:
    def __init__(self, topic: Any, metrics: Metrics) -> None:
        self.topic = topic
        self.metrics = metrics

    async def send(self, rejected: Rejected, topic: str, partition: int, offset: int) -> None:
        self.metrics.rejected.labels(rejected.reason.value).inc()
        sent = await self.topic.send(
            value=rejected.raw, headers=dead_letter_headers(rejected, topic, partition, offset)
        )
        require_delivery(sent, f"the dead letter of {topic}[{partition}]@{offset}")

    async def internal(
        self, value: bytes | None, topic: str, partition: int, offset: int, exc: Exception
    ) -> None:
        """A message a bug kept from being handled: dead-lettered whole, with the error."""
        detail = f"{type(exc).__name__}: {exc}"[:500]
        await self.send(Rejected(Reason.INTERNAL_ERROR, detail, value or b"", None),
                        topic, partition, offset)  # fmt: skip
