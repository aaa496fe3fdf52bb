"""The one way this product opens an async Redis client, and says why Redis failed.

Two traps that a new redis-py release turned into user-visible bugs:

- The asyncio client must get the asyncio ``Retry`` (``redis.asyncio.retry``). Given the
  synchronous one, redis-py 8 warns on every connection ("A synchronous
  redis.retry.Retry was passed to an asyncio client"), in the worker log and on every
  ``funnelpulse top`` frame.
- A wrong or missing password surfaces as different exceptions at different moments:
  ``AuthenticationError`` from AUTH, ``AuthenticationError("HELLO must be called with the
  client already authenticated")`` from RESP3's handshake, ``NOAUTH``/``WRONGPASS`` as
  plain ``ResponseError`` from a command in a pipeline, and whether that happens at the
  first PING or at the first publish depends on the client version and on timing.
  ``describe`` maps all of them to one sentence, so the operator reads the same words
  whichever call met the refusal, and the caller can log each kind of failure once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError

SOCKET_TIMEOUT = 2.0  # seconds: redis-py has none by default, and a hung socket stalls a tick
AUTH_REFUSED = "Redis refused the credentials"
_AUTH_WORDS = ("NOAUTH", "WRONGPASS", "AUTHENTICATION", "HELLO MUST BE CALLED", "NOPERM")


def connect(
    url: str,
    options: Mapping[str, Any] | None = None,
    *,
    retries: int,
    decode_responses: bool = False,
) -> Redis:
    """A client with short socket timeouts, a health check and an asyncio retry.

    ``options``: credentials and TLS (``funnelpulse.security.redis_client_kwargs``).
    ``retries`` 0 means one attempt per call, for callers whose own loop retries.
    """
    backoff = ExponentialBackoff(cap=1.0, base=0.05) if retries else NoBackoff()
    return Redis.from_url(
        url,
        **(options or {}),
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=15,
        decode_responses=decode_responses,
        retry=Retry(backoff, retries),
    )


def is_auth_failure(exc: BaseException) -> bool:
    """True for every way Redis says "not with these credentials" (see the module doc)."""
    if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError):
        return True
    text = str(exc).upper()
    return any(word in text for word in _AUTH_WORDS)


def describe(exc: BaseException) -> str:
    """One line naming the kind of failure first, then the client's own words.

    The kind comes first and does not depend on the call that failed, so that "log each
    kind once" can compare it (``kind_of``)."""
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    if is_auth_failure(exc):
        return (
            f"{AUTH_REFUSED} (set FUNNELPULSE_REDIS_USERNAME / FUNNELPULSE_REDIS_PASSWORD"
            f" or the URL's user:password) ({detail})"
        )
    return f"Redis unavailable ({detail})"


def kind_of(exc: BaseException) -> str:
    """The part of ``describe`` that names the failure, without the changing details."""
    return AUTH_REFUSED if is_auth_failure(exc) else f"Redis unavailable: {type(exc).__name__}"
