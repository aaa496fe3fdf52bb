"""The funnel stage: sign-ups, lead stages and purchases, counted where their lead lives.

The intake forwards every funnel event to the funnel topic, partitioned by its lead (or
customer), whatever key it arrived with: lead state — first touch, each stage once,
a customer's first purchase — then lives on one partition, and so does the dedup of
funnel events. A lead stage or purchase that names no campaign is attributed to the
campaign of its lead's sign-up (``counting.py``), in the same batch that writes the
lead state (``partial_counts.PartialCounts`` with lead tables).

The messages here were validated by the intake: one that cannot be decoded is a bug,
logged with its coordinates, never a reason to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .batch import Batch
from .codec import decode_events
from .intake import FUNNEL_SOURCE
from .partial_counts import PartialCounts
from .progress import Progress

log = logging.getLogger("funnelpulse")


class Funnel:
    def __init__(
        self, counts: PartialCounts, clock: Callable[[], float], progress: Progress
    ) -> None:
        self.counts, self.clock, self.progress = counts, clock, progress

    async def handle(self, messages: Sequence[Any]) -> None:
        now = self.clock()
        batch = Batch(now, lambda p: self.counts.open_partition(p, now))
        for msg in messages:
            try:
                events = list(enumerate(decode_events(msg.value or b"[]")))
                batch.groups[(msg.partition, FUNNEL_SOURCE)].append((msg.offset, events, msg))
            except Exception:
                log.exception("funnel failed on partition %s offset %s", msg.partition, msg.offset)
            batch.done(msg.topic, msg.partition, msg.offset)
        for msg, _exc in self.counts.count(batch):
            log.error("funnel message %s[%s]@%s not counted", msg.topic, msg.partition, msg.offset)
        await self.counts.finish(batch, {"funnel": batch.messages})
        self.progress.done(batch.last_offsets, batch.messages)
