"""``/kpis`` and ``/alerts`` for every scope, from any worker, saying where each answer came
from: ``local`` (this worker owns the scope), ``owner:<host:port>`` (asked the owner), or
``redis`` (the owner could not be asked: the snapshot it last published).

Each scope belongs to one merge partition and is published by the worker active for it
(``streams/publisher.py``); a worker holds nothing for the others. Asking the owner gives
its current numbers; Redis is the fallback, as fresh as the owner's last publish tick and
absent while Redis is down. A window's listing asks every other owner once (their own
scopes only: the request is marked routed) and reads from Redis only the partitions none
of them answered for; partitions nobody could answer for are listed, never silently left
out. The trap is ownership in motion: a worker says which partitions its answer covers
(``local_partitions``), and only those are taken from it, so a scope is never counted
from two workers nor missing because the assignment changed between two requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.exceptions import RedisError

from metrics.redis_reader import read_snapshot, read_snapshots

from .codec import partition_for
from .peers import PEER_TIMEOUT, Peers, host_port, owners
from .worker_view import WorkerView

LOCAL, REDIS = "local", "redis"
Doc = dict[str, Any]
T = TypeVar("T")
Items = Callable[[Mapping[str, Any]], Iterable[tuple[str, Doc]]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Doc
    source: str


class Cluster(Protocol):
    """What the answers need from the worker and its peers (a fake in unit tests)."""

    partitions: int
    own_url: str

    def owned(self) -> set[int]: ...  # merge partitions this worker publishes

    def owners(self) -> dict[int, str]: ...  # merge partition → its worker's URL

    def local_kpis(self, window: str) -> Mapping[str, Doc]: ...

    def local_alerts(self) -> Sequence[Doc]: ...

    async def ask(
        self, url: str, path: str, params: Mapping[str, str]
    ) -> tuple[int, Any] | None: ...

    async def redis_kpis(self, window: str, wanted: Callable[[str], bool]) -> dict[str, Doc]: ...

    async def redis_kpi(self, window: str, scope: str) -> Doc | None: ...


def _kpi_items(body: Mapping[str, Any]) -> Iterable[tuple[str, Doc]]:
    scopes: Mapping[str, Doc] = body.get("scopes") or {}
    return scopes.items()


def _alert_items(body: Mapping[str, Any]) -> Iterable[tuple[str, Doc]]:
    return ((alert["scope"], alert) for alert in body.get("active") or ())


class Queries:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def partition_of(self, scope: str) -> int:
        return partition_for(scope, self.cluster.partitions)

    # -- one scope ----------------------------------------------------------------------
    async def scope_kpis(self, window: str, scope: str, routed: bool) -> Answer:
        """Local when owned here, else the owner's answer, else Redis (also for an owned
        scope not computed yet: a partition just taken over)."""
        partition = self.partition_of(scope)
        if partition in self.cluster.owned():
            snapshot = self.cluster.local_kpis(window).get(scope)
            if snapshot is not None:
                return Answer(200, {**snapshot, "source": LOCAL}, LOCAL)
        elif not routed:
            answer = await self._from_owner(partition, window, scope)
            if answer is not None:
                return answer
        return await self._scope_from_redis(window, scope)

    async def _from_owner(self, partition: int, window: str, scope: str) -> Answer | None:
        url = self.cluster.owners().get(partition)
        if url is None or url == self.cluster.own_url:
            return None
        got = await self.cluster.ask(url, "/kpis", {"window": window, "scope": scope})
        if got is None:
            return None
        status, body = got
        said = str(body.get("source", LOCAL))  # the owner's own fallback stays "redis"
        source = f"owner:{host_port(url)}" if said == LOCAL else said
        return Answer(status, {**body, "source": source}, source)

    async def _scope_from_redis(self, window: str, scope: str) -> Answer:
        try:
            snapshot = await _bounded(self.cluster.redis_kpi(window, scope))
        except (RedisError, OSError, TimeoutError) as exc:
            error = f"no answer for {scope!r}: its owner and Redis are unavailable ({exc!r})"
            return Answer(503, {"error": error, "source": REDIS}, REDIS)
        if snapshot is None:
            return Answer(404, {"error": f"no data for {scope!r} in {window}", "source": REDIS},
                          REDIS)  # fmt: skip
        return Answer(200, {**snapshot, "source": REDIS}, REDIS)

    # -- every scope --------------------------------------------------------------------
    async def window_kpis(self, window: str, routed: bool) -> Doc:
        found = self._local(self.cluster.local_kpis(window).items())
        covered = self.cluster.owned()
        if not routed:
            covered |= await self._from_peers("/kpis", {"window": window}, found, _kpi_items)
            covered |= await self._fill_from_redis(window, self._missing(covered), found)
        return {"window": window, "scopes": found, **self._coverage(found.values(), covered)}

    async def alerts(self, routed: bool) -> Doc:
        """Active alerts of every scope (one per scope: ``cpl_spike``). The alert state
        lives in its owner only: partitions whose owner cannot be asked are listed."""
        found = self._local((a["scope"], a) for a in self.cluster.local_alerts())
        covered = self.cluster.owned()
        if not routed:
            covered |= await self._from_peers("/alerts", {}, found, _alert_items)
        return {"active": list(found.values()), **self._coverage(found.values(), covered)}

    def _local(self, items: Iterable[tuple[str, Doc]]) -> dict[str, Doc]:
        """This worker's docs of the partitions it owns (not a stale one of a lost one)."""
        owned = self.cluster.owned()
        return {s: {**d, "source": LOCAL} for s, d in items if self.partition_of(s) in owned}

    async def _from_peers(
        self, path: str, params: Mapping[str, str], found: dict[str, Doc], items: Items
    ) -> set[int]:
        """Asks every other owner at once; adds what each says it owns and we do not."""
        owned, cluster = self.cluster.owned(), self.cluster
        urls = sorted(
            {u for p, u in cluster.owners().items() if p not in owned} - {cluster.own_url}
        )
        answers = await asyncio.gather(*(cluster.ask(url, path, params) for url in urls))
        covered: set[int] = set()
        for url, got in zip(urls, answers, strict=True):
            if got is None or got[0] != 200:
                continue
            theirs = set(got[1].get("local_partitions") or ()) - owned - covered
            source = f"owner:{host_port(url)}"
            for scope, doc in items(got[1]):
                if self.partition_of(scope) in theirs:
                    found[scope] = {**doc, "source": source}
            covered |= theirs
        return covered

    async def _fill_from_redis(
        self, window: str, missing: set[int], found: dict[str, Doc]
    ) -> set[int]:
        if not missing:
            return set()
        try:
            snapshots = await _bounded(
                self.cluster.redis_kpis(window, lambda s: self.partition_of(s) in missing)
            )
        except (RedisError, OSError, TimeoutError):
            return set()
        for scope, snapshot in snapshots.items():
            found[scope] = {**snapshot, "source": REDIS}
        return missing

    def _missing(self, covered: set[int]) -> set[int]:
        return set(range(self.cluster.partitions)) - covered

    def _coverage(self, docs: Iterable[Doc], covered: set[int]) -> Doc:
        return {
            "sources": dict(Counter(doc["source"] for doc in docs)),
            "local_partitions": sorted(self.cluster.owned()),
            "unavailable_partitions": sorted(self._missing(covered)),
        }


async def _bounded(call: Awaitable[T]) -> T:
    """Redis read with a deadline: its client retries, and an answer must not hang."""
    return await asyncio.wait_for(call, PEER_TIMEOUT)


class WorkerCluster:
    """The ``Cluster`` of a running worker: its publisher, Faust's assignor, HTTP, Redis."""

    def __init__(self, fp: WorkerView) -> None:
        self.fp = fp
        self.partitions = fp.settings.partitions
        self.own_url = str(fp.app.conf.canonical_url)
        self._peers = Peers(lambda: fp.app.http_client)

    def owned(self) -> set[int]:
        return self.fp.publisher.owned

    def owners(self) -> dict[int, str]:
        topic = self.fp.merged.changelog_topic.get_topic_name()
        return owners(self.fp.app.assignor.tables_metadata(), topic)

    def local_kpis(self, window: str) -> Mapping[str, Doc]:
        return self.fp.publisher.latest.get(window, {})

    def local_alerts(self) -> Sequence[Doc]:
        return self.fp.publisher.active_alerts()

    async def ask(self, url: str, path: str, params: Mapping[str, str]) -> tuple[int, Any] | None:
        return await self._peers.get(url, path, params)

    async def redis_kpis(self, window: str, wanted: Callable[[str], bool]) -> dict[str, Doc]:
        target = self.fp.publisher.redis_target()
        return await read_snapshots(target.client, target.prefix, window, wanted)

    async def redis_kpi(self, window: str, scope: str) -> Doc | None:
        target = self.fp.publisher.redis_target()
        return await read_snapshot(target.client, target.prefix, window, scope)
