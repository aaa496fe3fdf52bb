"""Faust table state written the coalesced way: change the store, flush the changelog once.

A Faust ``table[key] = value`` sends one changelog message per assignment. Here state is
changed directly in the table's store (``local_store``: Faust's memory store or RocksDB)
through a per-partition view, the keys touched are remembered, and ``flush`` sends each
dirty key's final value once with ``changelog_topic.send(partition=...)``. That hands the
record straight to aiokafka, and Faust awaits aiokafka's ``flush()`` before it commits
source offsets, so every change made while processing a message is on the changelog
before that message's offset is committed. (``Table.send_changelog`` goes through Faust's
``send_soon`` buffer instead, whose pre-commit flush may give up after 0.1 s: not good
enough for exact counts.) The records of one flush go under one ticket of the store, so
that a store on disk takes their values only once the broker has them.
Keys carry their partition as a prefix so partitions never share a key in one store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar, cast

import orjson

from .exactly_once.delivery import require_delivery
from .local_store import local_store, prefix, record_value

V = TypeVar("V")
Encode = Callable[[Any], Any]
_MISSING: Any = object()


def _same(value: Any) -> Any:
    return value


def compact_json(value: Any) -> bytes:
    """``value`` as JSON bytes fit to keep in a store for hours: copied, because the bytes
    orjson returns keep its whole write buffer (4 KB for a 30-byte record, measured with
    tracemalloc)."""
    return memoryview(orjson.dumps(value)).tobytes()


class PartitionView:
    """What every per-partition view of a table shares: the partition's key prefix in the
    table's store, the store keys changed since the last flush, and the flush itself —
    each dirty key's stored value (or a tombstone) sent to the changelog once.

    Two views build on it: ``PartitionState`` (a key per value: leads, customers, dedup
    records) and ``pane_groups.PaneGroups`` (panes stored a group per key)."""

    def __init__(self, table: Any, partition: int) -> None:
        self._table = table
        self._store = local_store(table)
        self._partition = partition
        self._prefix = prefix(partition)
        self._dirty: set[str] = set()

    def _stored_keys(self) -> list[str]:
        """This partition's keys in the store, whole (a scan of the partition)."""
        return self._store.keys(self._partition)

    def _iter_stored_keys(self) -> Iterator[str]:
        """The same, one at a time (consume it before awaiting)."""
        return self._store.iter_keys(self._partition)

    def _stored(self, full: str) -> Any:
        return self._store.get(self._partition, full)

    def _put(self, full: str, value: Any) -> None:
        self._store.put(self._partition, full, value)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    async def _send(self, fulls: set[str]) -> list[Any]:
        """Sends the records; returns their sends' futures (``delivery.delivered``)."""
        sends = []
        async with self._store.sending(self._partition) as ticket:
            for full in fulls:
                value = self._stored(full)
                sent = await send_changelog(self._table, self._partition, full, value)
                ticket.add(full, value, sent)
                sends.append(sent)
        return sends


class PartitionState(PartitionView, MutableMapping[str, V], Generic[V]):
    """One partition's slice of a table, as a mapping with dirty tracking."""

    def __init__(
        self,
        table: Any,
        partition: int,
        encode: Encode = _same,
        decode: Encode = _same,
    ) -> None:
        super().__init__(table, partition)
        self._encode = encode
        self._decode = decode
        # Decoded values (when there is a codec): read once, changed in place, encoded
        # into the store at flush — a lead touched by ten events is decoded once.
        self._objects: dict[str, V] | None = None if decode is _same else {}

    def __getitem__(self, key: str) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return cast(V, value)

    def get(self, key: str, default: Any = None) -> Any:
        objects = self._objects
        if objects is not None and key in objects:
            return objects[key]
        raw = self._stored(self._prefix + key)
        if raw is None:
            return default
        if objects is None:
            return raw
        value = objects[key] = self._decode(raw)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        full = self._prefix + key
        if self._objects is None:
            self._put(full, value)
        else:
            self._objects[key] = value
        self._dirty.add(full)

    def __delitem__(self, key: str) -> None:
        full = self._prefix + key
        popped = self._objects is not None and self._objects.pop(key, _MISSING) is not _MISSING
        if not popped and self._stored(full) is None:
            raise KeyError(key)
        self._put(full, None)
        self._dirty.add(full)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return (self._objects is not None and key in self._objects) or self._stored(
            self._prefix + key
        ) is not None

    def __iter__(self) -> Iterator[str]:
        cut = len(self._prefix)
        keys = [k[cut:] for k in self._stored_keys()]
        if self._objects:
            keys += [k for k in self._objects if self._stored(self._prefix + k) is None]
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    async def flush(self) -> list[Any]:
        """Sends every dirty key's current value (or a tombstone) to the changelog; returns
        the sends' futures."""
        dirty, self._dirty = self._dirty, set()
        cut = len(self._prefix)
        if self._objects is not None:
            for full in dirty:
                if full[cut:] in self._objects:
                    self._put(full, self._encode(self._objects[full[cut:]]))
        return await self._send(dirty)


async def send_changelog(table: Any, partition: int, key: str, value: Any) -> Any:
    """One changelog record, straight to the producer (the per-send cost of Faust's
    channel machinery is several times aiokafka's). Encoded as the table's JSON codec
    does (orjson), so recovery reads it like any other; bytes (the records of tables
    declared with ``value_type=bytes``) go as they are; ``None`` is a tombstone. Returns
    the send's future (its result: the record's metadata, with its offset)."""
    topic = table.changelog_topic.get_topic_name()
    sent = await table.app.producer.send(
        topic, orjson.dumps(key), record_value(value), partition, None, None
    )
    require_delivery(sent, f"a changelog record of {topic}[{partition}]")
    return sent
