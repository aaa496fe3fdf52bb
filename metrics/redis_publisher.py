"""Snapshots to Redis (SPEC §3): hashes, scope sets, pub/sub and a stream, per tick.

Absolute snapshots only (never ``INCR``), so a repeated publish is harmless. Snapshots go
in MULTI blocks of at most ``CHUNK`` (a reader never sees a hash half-written), each with
its own update message: a burst of new campaign ids (attacker-controlled) can neither
build a message of hundreds of megabytes nor a pipeline that outlasts the socket timeout.
Every key written carries the KPI TTL, so a dead deployment's keys expire. The client has short
socket timeouts, a health check and an explicit retry; a failed tick raises
``PublishError`` and the caller keeps the scopes dirty, so everything is re-sent, with the
full current state, once Redis answers again. Consumption never waits on Redis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .redis_client import describe, kind_of

STREAM_MAXLEN = 100_000
CHUNK = 1_000  # snapshots per MULTI block and per update message (~0.5 MB)
# Replace a snapshot hash whole (KPIs that became undefined disappear) and set its TTL:
# one command per snapshot instead of DEL + HSET + EXPIRE, the client's cost per command
# being what a tick of thousands of snapshots spends its time on.
_REPLACE_HASH = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


class PublishError(RuntimeError):
    """A failed Redis call; ``kind`` is the same words whichever call failed."""

    def __init__(self, exc: RedisError | OSError) -> None:
        super().__init__(describe(exc))
        self.kind = kind_of(exc)


class RedisPublisher:
    def __init__(self, client: Redis, prefix: str, ttl_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = max(1, int(ttl_seconds))
        self._replace_hash = client.register_script(_REPLACE_HASH)

    def hash_key(self, window: str, scope: str) -> str:
        return f"{self.prefix}kpi:{window}:{scope}"

    async def publish(self, snapshots: Sequence[dict[str, Any]], now: float) -> None:
        if not snapshots:  # a PING, so that "Redis is up" is never said without asking it
            try:
                await self.client.ping()
            except (RedisError, OSError) as exc:
                raise PublishError(exc) from exc
        for start in range(0, len(snapshots), CHUNK):
            await self._publish_chunk(snapshots[start : start + CHUNK], now)

    async def _publish_chunk(self, snapshots: Sequence[dict[str, Any]], now: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        scored: dict[str, dict[str, float]] = defaultdict(dict)  # window → scope → updated_at
        for snap in snapshots:
            key = self.hash_key(snap["window"], snap["scope"])
            args: list[Any] = [self.ttl]
            for name, value in snap.items():
                if name not in ("window", "scope"):
                    args += (name, _field(value))
            await self._replace_hash(keys=[key], args=args, client=pipe)
            scored[snap["window"]][snap["scope"]] = snap["updated_at"]
        for window, scores in scored.items():
            pipe.zadd(f"{self.prefix}scopes:{window}", cast(Any, scores))
            pipe.expire(f"{self.prefix}scopes:{window}", self.ttl)
        message = orjson.dumps({"updated_at": now, "snapshots": snapshots})
        pipe.publish(f"{self.prefix}kpi-updates", message)
        pipe.xadd(f"{self.prefix}kpi-stream", {"data": message}, maxlen=STREAM_MAXLEN)
        pipe.expire(f"{self.prefix}kpi-stream", self.ttl)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PublishError(exc) from exc

    async def publish_alert(self, alert: dict[str, Any]) -> None:
        try:
            await self.client.publish(f"{self.prefix}alerts", orjson.dumps(alert))
        except (RedisError, OSError) as exc:
            raise PublishError(exc) from exc

    async def expire_scopes(self, window: str, older_than: float) -> None:
        """Drops scopes whose hashes have expired from the window's sorted set."""
        try:
            await self.client.zremrangebyscore(f"{self.prefix}scopes:{window}", 0, older_than)
        except (RedisError, OSError) as exc:
            raise PublishError(exc) from exc


def _field(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
