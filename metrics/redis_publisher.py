"""Snapshots to Redis (SPEC §3): hashes, scope sets, pub/sub and a stream, per tick.

Absolute snapshots only (never ``INCR``), so a repeated publish is harmless. One pipeline
per tick in a MULTI block: a reader never sees a hash half-written. The client has short
socket timeouts, a health check and an explicit retry; a failed tick raises
``PublishError`` and the caller keeps the scopes dirty, so everything is re-sent, with the
full current state, once Redis answers again. Consumption never waits on Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

STREAM_MAXLEN = 100_000


class PublishError(RuntimeError):
    pass


def connect(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2),
    )


class RedisPublisher:
    def __init__(self, client: Redis, prefix: str, ttl_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = max(1, int(ttl_seconds))

    def hash_key(self, window: str, scope: str) -> str:
        return f"{self.prefix}kpi:{window}:{scope}"

    async def publish(self, snapshots: Sequence[dict[str, Any]], now: float) -> None:
        if not snapshots:
            return
        pipe = self.client.pipeline(transaction=True)
        for snap in snapshots:
            key = self.hash_key(snap["window"], snap["scope"])
            fields = {k: _field(v) for k, v in snap.items() if k not in ("window", "scope")}
            pipe.delete(key)  # KPIs that became undefined must disappear
            pipe.hset(key, mapping=cast(Any, fields))
            pipe.expire(key, self.ttl)
            pipe.zadd(f"{self.prefix}scopes:{snap['window']}", {snap["scope"]: snap["updated_at"]})
        message = orjson.dumps({"updated_at": now, "snapshots": snapshots})
        pipe.publish(f"{self.prefix}kpi-updates", message)
        pipe.xadd(f"{self.prefix}kpi-stream", {"data": message}, maxlen=STREAM_MAXLEN)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PublishError(f"Redis publish failed: {exc!r}") from exc

    async def publish_alert(self, alert: dict[str, Any]) -> None:
        try:
            await self.client.publish(f"{self.prefix}alerts", orjson.dumps(alert))
        except (RedisError, OSError) as exc:
            raise PublishError(f"Redis alert publish failed: {exc!r}") from exc

    async def expire_scopes(self, window: str, older_than: float) -> None:
        """Drops scopes whose hashes have expired from the window's sorted set."""
        try:
            await self.client.zremrangebyscore(f"{self.prefix}scopes:{window}", 0, older_than)
        except (RedisError, OSError) as exc:
            raise PublishError(f"Redis cleanup failed: {exc!r}") from exc


def _field(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
