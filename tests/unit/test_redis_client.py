"""The Redis failure sentence is the same for every way a refusal of credentials shows."""

from __future__ import annotations

import warnings

import pytest
from redis.asyncio.retry import Retry
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
    TimeoutError,
)

from metrics.redis_client import AUTH_REFUSED, connect, describe, kind_of
from metrics.redis_publisher import PublishError


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("invalid username-password pair or user is disabled."),
        AuthenticationError("HELLO must be called with the client already authenticated"),
        ResponseError("NOAUTH Authentication required."),
        ResponseError("WRONGPASS invalid username-password pair"),
        NoPermissionError("this user has no permissions to run the 'hset' command"),
    ],
)
def test_every_refusal_of_credentials_reads_the_same(exc: Exception) -> None:
    assert describe(exc).startswith(AUTH_REFUSED)
    assert kind_of(exc) == AUTH_REFUSED
    assert PublishError(exc).kind == AUTH_REFUSED


@pytest.mark.parametrize(
    "exc",
    [ConnectionError("Error 111 connecting to 127.0.0.1:6390."), TimeoutError("Timeout"),
     ResponseError("OOM command not allowed"), OSError("Network is unreachable")],
)  # fmt: skip
def test_other_failures_are_not_called_a_password_problem(exc: Exception) -> None:
    assert not describe(exc).startswith(AUTH_REFUSED)
    assert kind_of(exc) == f"Redis unavailable: {type(exc).__name__}"


def test_description_is_one_line_with_the_clients_words() -> None:
    line = describe(ConnectionError("Error 111\nconnecting   to\n127.0.0.1:6390."))
    assert line == "Redis unavailable (ConnectionError: Error 111 connecting to 127.0.0.1:6390.)"


@pytest.mark.parametrize("retries", [0, 2])
async def test_the_async_client_gets_the_async_retry_and_no_warning(retries: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = connect("redis://127.0.0.1:1/0", retries=retries)
        assert isinstance(client.get_retry(), Retry)
        await client.aclose()
