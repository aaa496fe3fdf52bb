"""Sends the numbers depend on are delivered, or the worker stops before it commits.

Faust and aiokafka report a failed send only on its future: Faust logs a warning and
moves on, and the input offsets behind it are committed at the next commit. A changelog
record, a funnel forward, a dead letter or a merge snapshot that never reached the broker
is then lost for good: a number silently wrong (``make bench`` once lost a funnel forward
over the size limit that way). The producer retries transient errors by itself, so a
failure that reaches the future is one it gave up on. The worker then exits at once —
like ``kill -9``, which the fault tests prove exact — without committing: the restarted
worker reads the input again from the committed offsets and sends everything again.
A batch whose handler raised leaves the worker the same way (``exit_uncommitted``, from
the agents in ``app``): its state may be half-written and its messages are not acked.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

log = logging.getLogger("funnelpulse.delivery")
EXIT_UNDELIVERED = 70  # EX_SOFTWARE: the orchestrator restarts the worker


def require_delivery(
    sent: Awaitable[Any], what: str, exit_now: Callable[[int], Any] = os._exit
) -> None:
    """Stops the process without a commit if the send behind ``sent`` fails. (Faust types
    its sends as awaitables; what they return is the future the producer resolves.)"""
    if not isinstance(sent, asyncio.Future):
        raise TypeError(f"{what}: expected the send's future, got {type(sent).__name__}")
    sent.add_done_callback(partial(_checked, what, exit_now))


def _checked(what: str, exit_now: Callable[[int], Any], future: asyncio.Future[Any]) -> None:
    if future.cancelled():  # the producer is stopping: graceful shutdown flushes first
        log.warning("%s: send cancelled while stopping", what)
        return
    error = future.exception()
    if error is None:
        return
    exit_uncommitted(f"{what} was not delivered", error, exit_now)


def exit_uncommitted(
    what: str, error: BaseException, exit_now: Callable[[int], Any] = os._exit
) -> None:
    """Stops the process at once, without a commit: the restarted worker reads again
    every input whose state may be missing or half-written (as after ``kill -9``)."""
    log.critical(
        "%s (%s: %s); exiting now without committing, so that the restarted worker "
        "reads this input again",
        what,
        type(error).__name__,
        error,
        exc_info=error,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    exit_now(EXIT_UNDELIVERED)


async def delivered(sends: Iterable[Awaitable[Any]]) -> None:
    """Returns once every send of ``sends`` is acknowledged by the broker (a failed one
    stops the worker through ``require_delivery``: its error is not raised here too)."""
    pending = list(sends)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
