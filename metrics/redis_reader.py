"""Snapshots read back from Redis, in the types the worker published them with.

A worker answers ``/kpis`` for a scope whose owner cannot be asked from the hashes the
owner last published (``metrics/redis_publisher.py``). The trap is types: a Redis hash
holds strings, and ``"12"`` must come back as the count 12 while ``"0.5"`` and ``"3.0"``
come back as floats, or the same scope reads differently depending on which worker was
asked. The publisher writes ints with ``str`` and floats with ``repr`` (always a ``.`` or
an exponent), so "an int if it parses as one, else a float" restores each value's type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from redis.asyncio import Redis


def _value(raw: bytes | str) -> int | float:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_snapshot(
    window: str, scope: str, fields: Mapping[bytes, bytes] | Mapping[str, str]
) -> dict[str, Any]:
    """The document ``build_snapshot`` made, from its Redis hash."""
    doc: dict[str, Any] = {"window": window, "scope": scope}
    for name, raw in fields.items():
        doc[name.decode() if isinstance(name, bytes) else name] = _value(raw)
    return doc


async def read_snapshots(
    client: Redis, prefix: str, window: str, wanted: Callable[[str], bool]
) -> dict[str, dict[str, Any]]:
    """The snapshots of ``window`` whose scope is ``wanted``, listed in the window's sorted
    set and still present (a hash may have expired before the set's cleanup)."""
    listed = cast(list[bytes | str], await client.zrange(f"{prefix}scopes:{window}", 0, -1))
    scopes = [s for s in (x.decode() if isinstance(x, bytes) else x for x in listed) if wanted(s)]
    if not scopes:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for scope in scopes:
            pipe.hgetall(f"{prefix}kpi:{window}:{scope}")
        hashes: list[dict[bytes, bytes]] = await pipe.execute()
    return {
        scope: parse_snapshot(window, scope, fields)
        for scope, fields in zip(scopes, hashes, strict=True)
        if fields
    }


async def read_snapshot(
    client: Redis, prefix: str, window: str, scope: str
) -> dict[str, Any] | None:
    fields = await cast(Any, client.hgetall(f"{prefix}kpi:{window}:{scope}"))
    return parse_snapshot(window, scope, fields) if fields else None
