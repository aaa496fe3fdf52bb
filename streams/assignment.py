"""Is the group's assignment whole: every table partition the stages here need, held here?

Faust's assignor co-partitions each table's changelog with the topics that feed it: a
worker that reads partition 3 of the merge topic is given partition 3 of the ``merged``
and ``channels`` changelogs, active. The trap: the assignor builds the assignment from
the cluster metadata of that moment and skips a topic the metadata lacks ("Ignoring
missing topic", ``faust/assignor/partition_assignor.py``). Right after a broker restart
the metadata can lack a changelog topic for a moment (seen in the broker-restart fault
test: ``channels-v7-changelog`` missing), and the assignment then hands out the merge
topic's partitions without the ``channels`` table's. The merge stage's next batch asked
the store for a partition this worker does not hold (``local_store.NotHeld``), failed
half-written, and the worker exited (``exactly_once/delivery.py``): a broker restart had
become a crash.

So an incomplete assignment counts as a rebalance still under way: the ownership gate
holds batches (``exactly_once/ownership.py``), nothing reads or writes the stores, and
``/healthz`` names the missing partitions. The consumer asks the group for a new
assignment once its refreshed metadata has every missing topic (aiokafka would notice the
topic by itself only at its next metadata refresh, up to ``METADATA_MAX_AGE_MS`` later,
``app.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping

log = logging.getLogger("funnelpulse.assignment")
RETRY_EVERY = 2.0  # seconds between metadata refreshes while the assignment is incomplete

TopicPartition = tuple[str, int]


def missing_partitions(
    reading: Iterable[TopicPartition],
    actives: Iterable[TopicPartition],
    fed_by: Mapping[str, Collection[str]],
) -> dict[str, set[int]]:
    """changelog topic → the partitions this worker should hold active and does not:
    those of the topics feeding the table (``fed_by[changelog]``) that it reads."""
    active = set(actives)
    read = list(reading)
    missing: dict[str, set[int]] = {}
    for changelog, feeders in fed_by.items():
        lacking = {p for topic, p in read if topic in feeders and (changelog, p) not in active}
        if lacking:
            missing[changelog] = lacking
    return missing


class AssignmentCheck:
    """Checked at every assignment; incomplete, it refreshes the metadata every
    ``RETRY_EVERY`` seconds and asks for a new assignment once the missing topics show."""

    def __init__(
        self,
        fed_by: Mapping[str, Collection[str]],
        reading: Callable[[], Iterable[TopicPartition]],
        actives: Callable[[], Iterable[TopicPartition]],
        rejoin_once_known: Callable[[Collection[str]], Awaitable[bool]],
    ) -> None:
        self.fed_by = fed_by
        self.reading = reading  # the partitions the consumer reads now
        self.actives = actives  # the assignor's active partitions, changelogs included
        self.rejoin_once_known = rejoin_once_known  # True: every topic known, rejoin asked
        self.missing: dict[str, set[int]] = {}
        self._retry: asyncio.Task[None] | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    def on_assigned(self) -> None:
        """Called when Faust has a new assignment (its assignor already updated)."""
        self.missing = missing_partitions(self.reading(), self.actives(), self.fed_by)
        if self.complete:
            self.cancel()
            return
        log.warning("the assignment lacks table partitions this worker needs (%s): holding "
                    "every batch until a whole assignment comes", self.describe())  # fmt: skip
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._ask_again(), name="assignment-retry")

    def describe(self) -> list[str]:
        return [
            f"{topic}[{p}]" for topic, parts in sorted(self.missing.items()) for p in sorted(parts)
        ]

    async def _ask_again(self) -> None:
        while not self.complete:
            await asyncio.sleep(RETRY_EVERY)
            try:
                if await self.rejoin_once_known(list(self.missing)):
                    log.info("missing topics are in the metadata now: new assignment asked")
            except Exception as exc:  # the consumer is stopping or reconnecting: try again
                log.warning("could not ask for a new assignment (%r); retrying", exc)

    def cancel(self) -> None:
        """Stops asking (a whole assignment came, or the worker stops)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
