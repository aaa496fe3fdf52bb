"""Compact wire forms of internal records (funnel forwarding, dead-letter headers)."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from .events import Event, EventType, Rejected


def encode_events(events: list[Event]) -> bytes:
    rows = [
        [
            e.type.value,
            e.event_id,
            e.ts,
            e.campaign_id,
            e.channel,
            e.lead_id,
            e.stage,
            e.amount_micros,
            e.count,
            e.customer_id,
        ]
        for e in events
    ]
    return orjson.dumps(rows)


def decode_events(raw: bytes) -> list[Event]:
    rows: list[list[Any]] = orjson.loads(raw)
    return [
        Event(
            EventType(r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            lead_id=r[5],
            stage=r[6],
            amount_micros=r[7],
            count=r[8],
            customer_id=r[9],
        )
        for r in rows
    ]


def funnel_key(event: Event) -> str:
    """Everything about one lead (or one customer) lands on one funnel partition."""
    return event.lead_id or event.customer_id or event.event_id


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def dead_letter_headers(
    rejected: Rejected, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    headers = [
        ("error.reason", rejected.reason.value.encode()),
        ("error.detail", rejected.detail.encode()[:1024]),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]
    if rejected.index is not None:
        headers.append(("source.index", str(rejected.index).encode()))
    return headers
