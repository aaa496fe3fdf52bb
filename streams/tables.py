"""The Faust tables, declared once: names, partition counts, changelog settings.

The intake's tables follow the input topics (``FUNNELPULSE_PARTITIONS``), the funnel's
the funnel topic (``FUNNELPULSE_FUNNEL_PARTITIONS``): Faust co-assigns a table's
partition p with partition p of the equally sized topics its agent reads, which is what
lets a stage write "its" partition without asking anyone (``streams/topics.py`` stops
the worker when an existing changelog has another size). Every name carries the state
version (``topics.STATE_VERSION``).

All but ``customers`` keep their records' bytes as they are (``pane_groups``,
``dedup``, leads as JSON bytes): Faust restores them without decoding.

On disk (``FUNNELPULSE_STORE=rocksdb``) every table partition is its own RocksDB
database, and Faust's defaults are sized for one big table per process: a 64 MiB write
buffer (three of them) and a 2 GiB block cache *per database*. With eight tables, a
dozen partitions each and standbys, that is gigabytes reserved; every database here
charges one process-wide budget instead (``streams/rocks_memory.py``,
``FUNNELPULSE_ROCKSDB_MEMORY_MB``; the operating system's page cache does the rest). No
``ttl``: expiry is ours (eviction sends tombstones), a TTL would drop keys the
changelog still holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust

from .local_store import local_store
from .rocks_memory import budget, shared_memory
from .topics import TABLE_PARTITIONS, table_name

# Pane keys are overwritten all the time: let the broker compact them soon, so that a
# restart replays live keys, not every write since the topic was made.
CHANGELOG_CONFIG = {"segment.ms": str(10 * 60_000), "min.cleanable.dirty.ratio": "0.2"}

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Tables:
    partials: Any
    dedup: Any
    funnel_partials: Any
    funnel_dedup: Any
    leads: Any
    customers: Any
    merged: Any
    channels: Any  # campaign → events per channel (streams/campaign_channels.py)

    def by_name(self) -> dict[str, Any]:
        """Every table, by its field name."""
        return dict(vars(self))

    def sizes(self) -> dict[str, int]:
        """Keys per table on this worker (``funnelpulse_state_keys``): an estimate on disk
        (RocksDB's own count, not a scan: this runs at every publish tick)."""
        return {name: local_store(table).size() for name, table in self.by_name().items()}


def declare_tables(
    app: faust.App,
    partitions: int,
    funnel_partitions: int,
    recovered: dict[str, Hook],
    *,
    rocksdb_memory: int | None = None,
) -> Tables:
    """``recovered``: table → what to do once Faust has restored it; ``rocksdb_memory``:
    the app's store is RocksDB, its databases sharing this many bytes."""

    def table(name: str, **options: Any) -> Any:
        funnel = TABLE_PARTITIONS[name] == "funnel"
        if name in recovered:
            options["on_recover"] = recovered[name]
        made = app.Table(
            table_name(name),
            partitions=funnel_partitions if funnel else partitions,
            extra_topic_configs=CHANGELOG_CONFIG,
            **options,
        )
        if rocksdb_memory is not None:
            budget(made.data, shared_memory(rocksdb_memory))
        return made

    raw: dict[str, Any] = {"value_type": bytes}
    return Tables(
        partials=table("partials", **raw),
        dedup=table("dedup", **raw),
        funnel_partials=table("funnel-partials", **raw),
        funnel_dedup=table("funnel-dedup", **raw),
        leads=table("leads", **raw),
        customers=table("customers"),
        merged=table("merged", **raw),
        channels=table("channels", **raw),
    )
