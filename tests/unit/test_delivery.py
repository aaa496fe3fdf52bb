"""A send the numbers depend on either arrives or stops the worker before it commits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from streams.exactly_once.delivery import EXIT_UNDELIVERED, delivered, require_delivery


async def _outcome(settle: str) -> list[int]:
    exits: list[int] = []
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    require_delivery(future, "a funnel forward", exit_now=exits.append)
    if settle == "ok":
        future.set_result(object())
    elif settle == "failed":
        future.set_exception(MessageSizeTooLargeError())
    else:
        future.cancel()
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    return exits


async def test_a_failed_send_exits_at_once_without_committing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await _outcome("failed") == [EXIT_UNDELIVERED]
    assert "a funnel forward was not delivered (MessageSizeTooLargeError" in caplog.text


async def test_a_delivered_send_does_nothing() -> None:
    assert await _outcome("ok") == []


async def test_a_send_cancelled_while_stopping_is_left_to_the_graceful_shutdown() -> None:
    assert await _outcome("cancelled") == []


def test_only_a_future_can_be_watched() -> None:
    async def not_a_future() -> None:
        return None

    coroutine = not_a_future()
    with pytest.raises(TypeError, match="expected the send's future"):
        require_delivery(coroutine, "a dead letter")
    coroutine.close()


async def test_delivered_waits_for_every_send_and_leaves_failures_to_require_delivery() -> None:
    loop = asyncio.get_running_loop()
    sends: list[asyncio.Future[object]] = [loop.create_future() for _ in range(3)]
    waiting = asyncio.create_task(delivered(sends))
    sends[0].set_result(object())
    sends[2].set_exception(MessageSizeTooLargeError())  # require_delivery stops the worker
    await asyncio.sleep(0.01)
    assert not waiting.done()  # one send still unacknowledged
    sends[1].set_result(object())
    await asyncio.wait_for(waiting, 1)
    await delivered([])  # nothing to wait for
