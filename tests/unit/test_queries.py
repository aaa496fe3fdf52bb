"""/kpis and /alerts from any worker (streams/queries.py): local, owner, Redis, and saying
which, against a fake cluster of three merge partitions and two workers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from metrics.redis_publisher import _field
from metrics.redis_reader import parse_snapshot
from metrics.snapshots import build_snapshot
from metrics.windows import window_specs
from streams.codec import partition_for
from streams.peers import advertised_url, host_port, owners
from streams.queries import Queries

ME, PEER = "http://10.0.0.1:6066", "http://10.0.0.2:6066"
PARTS = 3


def scope_on(partition: int, kind: str = "campaign") -> str:
    """A scope name whose merge partition is ``partition``."""
    return next(
        f"{kind}:c{i}" for i in range(1000) if partition_for(f"{kind}:c{i}", PARTS) == partition
    )


def snap(scope: str, clicks: int) -> dict[str, Any]:
    return {"window": "1h", "scope": scope, "clicks": clicks}


MINE, THEIRS, ORPHAN = scope_on(0), scope_on(1), scope_on(2)


class FakeCluster:
    """Partition 0 is mine, 1 the peer's, 2 has no owner (unassigned)."""

    partitions = PARTS
    own_url = ME

    def __init__(self) -> None:
        self.peer_up = True
        self.redis_up = True
        self.asked: list[tuple[str, str, dict[str, str]]] = []
        self.peer_scopes = {THEIRS: snap(THEIRS, 2)}
        self.redis = {s: snap(s, n) for s, n in ((MINE, 9), (THEIRS, 8), (ORPHAN, 3))}

    def owned(self) -> set[int]:
        return {0}

    def owners(self) -> dict[int, str]:
        return {0: ME, 1: PEER}

    def local_kpis(self, window: str) -> Mapping[str, dict[str, Any]]:
        return {MINE: snap(MINE, 1)}

    def local_alerts(self) -> Sequence[dict[str, Any]]:
        return [{"alert": "cpl_spike", "scope": MINE}, {"alert": "cpl_spike", "scope": THEIRS}]

    async def ask(self, url: str, path: str, params: Mapping[str, str]) -> tuple[int, Any] | None:
        self.asked.append((url, path, dict(params)))
        if not self.peer_up:
            return None
        if path == "/alerts":
            return 200, {"active": [{"alert": "cpl_spike", "scope": THEIRS, "source": "local"}],
                         "local_partitions": [1]}  # fmt: skip
        if "scope" in params:
            doc = self.peer_scopes.get(params["scope"])
            return (200, {**doc, "source": "local"}) if doc else (404, {"source": "local"})
        scopes = {s: {**d, "source": "local"} for s, d in self.peer_scopes.items()}
        return 200, {"scopes": scopes, "local_partitions": [1]}

    async def redis_kpis(
        self, window: str, wanted: Callable[[str], bool]
    ) -> dict[str, dict[str, Any]]:
        self._redis_reachable()
        return {s: d for s, d in self.redis.items() if wanted(s)}

    async def redis_kpi(self, window: str, scope: str) -> dict[str, Any] | None:
        self._redis_reachable()
        return self.redis.get(scope)

    def _redis_reachable(self) -> None:
        if not self.redis_up:
            raise RedisConnectionError("refused")


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


async def test_an_owned_scope_is_answered_locally(cluster: FakeCluster) -> None:
    answer = await Queries(cluster).scope_kpis("1h", MINE, routed=False)
    assert (answer.status, answer.source, answer.body["clicks"]) == (200, "local", 1)
    assert answer.body["source"] == "local" and not cluster.asked


async def test_another_workers_scope_comes_from_its_owner(cluster: FakeCluster) -> None:
    answer = await Queries(cluster).scope_kpis("1h", THEIRS, routed=False)
    assert (answer.status, answer.body["clicks"]) == (200, 2)
    assert answer.source == answer.body["source"] == "owner:10.0.0.2:6066"
    assert cluster.asked == [(PEER, "/kpis", {"window": "1h", "scope": THEIRS})]


async def test_the_owners_no_data_is_the_answer(cluster: FakeCluster) -> None:
    other = scope_on(1, "channel")
    answer = await Queries(cluster).scope_kpis("1h", other, routed=False)
    assert (answer.status, answer.source) == (404, "owner:10.0.0.2:6066")


async def test_redis_answers_when_the_owner_cannot(cluster: FakeCluster) -> None:
    cluster.peer_up = False
    answer = await Queries(cluster).scope_kpis("1h", THEIRS, routed=False)
    assert (answer.status, answer.source, answer.body["clicks"]) == (200, "redis", 8)
    orphan = await Queries(cluster).scope_kpis("1h", ORPHAN, routed=False)
    assert (orphan.status, orphan.source, orphan.body["clicks"]) == (200, "redis", 3)


async def test_a_routed_request_is_never_routed_again(cluster: FakeCluster) -> None:
    answer = await Queries(cluster).scope_kpis("1h", THEIRS, routed=True)
    assert answer.source == "redis" and not cluster.asked


async def test_nobody_to_answer_is_503_not_a_guess(cluster: FakeCluster) -> None:
    cluster.peer_up = cluster.redis_up = False
    answer = await Queries(cluster).scope_kpis("1h", THEIRS, routed=False)
    assert answer.status == 503 and "unavailable" in answer.body["error"]
    missing = await Queries(cluster).scope_kpis("1h", "campaign:nowhere", routed=True)
    assert missing.status == 503


async def test_a_window_covers_every_scope_with_its_source(cluster: FakeCluster) -> None:
    body = await Queries(cluster).window_kpis("1h", routed=False)
    got = {scope: (doc["clicks"], doc["source"]) for scope, doc in body["scopes"].items()}
    assert got == {MINE: (1, "local"), THEIRS: (2, "owner:10.0.0.2:6066"), ORPHAN: (3, "redis")}
    assert body["sources"] == {"local": 1, "owner:10.0.0.2:6066": 1, "redis": 1}
    assert body["local_partitions"] == [0] and body["unavailable_partitions"] == []


async def test_a_window_without_its_owners_reads_their_partitions_from_redis(
    cluster: FakeCluster,
) -> None:
    cluster.peer_up = False
    body = await Queries(cluster).window_kpis("1h", routed=False)
    got = {scope: (doc["clicks"], doc["source"]) for scope, doc in body["scopes"].items()}
    assert got == {MINE: (1, "local"), THEIRS: (8, "redis"), ORPHAN: (3, "redis")}
    cluster.redis_up = False
    body = await Queries(cluster).window_kpis("1h", routed=False)
    assert set(body["scopes"]) == {MINE} and body["unavailable_partitions"] == [1, 2]


async def test_a_routed_window_is_this_workers_share(cluster: FakeCluster) -> None:
    body = await Queries(cluster).window_kpis("1h", routed=True)
    assert set(body["scopes"]) == {MINE} and body["local_partitions"] == [0]
    assert not cluster.asked


async def test_only_the_partitions_a_peer_says_it_owns_are_taken(cluster: FakeCluster) -> None:
    cluster.peer_scopes[MINE] = snap(MINE, 99)  # a stale copy on the peer
    cluster.peer_scopes[ORPHAN] = snap(ORPHAN, 99)
    body = await Queries(cluster).window_kpis("1h", routed=False)
    assert body["scopes"][MINE]["clicks"] == 1 and body["scopes"][ORPHAN]["source"] == "redis"


async def test_alerts_of_every_owner_not_stale_ones(cluster: FakeCluster) -> None:
    body = await Queries(cluster).alerts(routed=False)
    got = {alert["scope"]: alert["source"] for alert in body["active"]}
    assert got == {MINE: "local", THEIRS: "owner:10.0.0.2:6066"}  # ours for THEIRS is stale
    assert body["unavailable_partitions"] == [2]  # no owner: alert state lives only there
    cluster.peer_up = False
    body = await Queries(cluster).alerts(routed=False)
    assert [a["scope"] for a in body["active"]] == [MINE]
    assert body["unavailable_partitions"] == [1, 2]


def test_owners_by_partition_from_the_assignors_distribution() -> None:
    distribution = {ME: {"merged-changelog": [0, 2], "other": [1]}, PEER: {"merged-changelog": [1]}}
    assert owners(distribution, "merged-changelog") == {0: ME, 2: ME, 1: PEER}
    assert host_port(PEER) == "10.0.0.2:6066"


def test_the_advertised_url_is_reachable_from_other_hosts() -> None:
    assert advertised_url("", "127.0.0.1", 6066) == "http://127.0.0.1:6066"
    assert advertised_url("https://w0.example:443", "0.0.0.0", 6066) == "https://w0.example:443"
    wildcard = advertised_url("", "0.0.0.0", 7000)
    assert wildcard.startswith("http://") and wildcard.endswith(":7000")
    assert "0.0.0.0" not in wildcard


def test_a_snapshot_reads_back_from_redis_with_its_types() -> None:
    spec = window_specs(("1h",))[0]
    counts = [3, 0, 7, 0, 0, 2, 1, 0, 0, 0, 0, 1, 1, 12_500_000, 40_000_000]
    doc = build_snapshot(spec, "campaign:x", counts, 1_700_000_123.25)
    stored = {
        k.encode(): _field(v).encode() for k, v in doc.items() if k not in ("window", "scope")
    }
    back = parse_snapshot("1h", "campaign:x", stored)
    assert back == doc
    assert [type(back[k]) for k in ("clicks", "spend", "cpl", "window_start")] == [
        int, float, float, int,
    ]  # fmt: skip
