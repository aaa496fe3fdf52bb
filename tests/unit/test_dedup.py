"""Message-level dedup records: persistence shape, rebuild, horizon sweep, size cap."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.dedup import MessageDedup, cutoff_for_cap, persist, rebuild, sweep
from streams.table_state import PartitionState


class FakeTable:
    """A table with a plain dict store; changelog writes are recorded, not sent."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The changelog records written, instead of sending them."""
    records: list[tuple[str, Any]] = []

    async def fake_send(table: Any, partition: int, key: str, value: Any) -> None:
        records.append((key, value))

    monkeypatch.setattr("streams.table_state.send_changelog", fake_send)
    return records


def state_with(records: dict[str, tuple[float, int]]) -> PartitionState[Any]:
    table = FakeTable()
    state: PartitionState[Any] = PartitionState(table, 0)
    for key, (seen, n) in records.items():
        table.data[f"0|{key}"] = [seen, [[f"{key}-{i}", 0, 1, i, "c", "email"] for i in range(n)]]
    return state


def test_rebuild_indexes_every_identity() -> None:
    state = state_with({"0:1": (10.0, 3), "0:2": (20.0, 2)})
    index = rebuild(state)
    assert len(index) == 5
    assert index["0:1-2"] == (0, 1, 2, "c", "email")


def test_cutoff_is_the_horizon_under_the_cap() -> None:
    state = state_with({"a": (10.0, 3), "b": (20.0, 3)})
    assert cutoff_for_cap(state, 6, cap=10, before=5.0) == 5.0


def test_cutoff_drops_oldest_records_until_under_the_cap() -> None:
    state = state_with({"a": (10.0, 3), "b": (20.0, 3), "c": (30.0, 3)})
    cut = cutoff_for_cap(state, 9, cap=5, before=0.0)
    assert 20.0 < cut < 30.0  # a and b go (6 ids), c stays


def test_cutoff_counts_records_already_past_the_horizon() -> None:
    state = state_with({"old": (1.0, 4), "a": (10.0, 3), "b": (20.0, 3)})
    cut = cutoff_for_cap(state, 10, cap=6, before=5.0)
    assert cut == 5.0  # dropping "old" (past the horizon) is enough


async def test_sweep_forgets_records_and_their_ids(sent: list[tuple[str, Any]]) -> None:
    state = state_with({"a": (10.0, 2), "b": (30.0, 2)})
    index = rebuild(state)
    dropped = await sweep(state, index, before=20.0)
    assert dropped == 2
    assert set(index) == {"b-0", "b-1"}
    assert sent == [("0|a", None)]  # a tombstone for the forgotten record


async def test_persist_writes_one_record_per_message(sent: list[tuple[str, Any]]) -> None:
    state: PartitionState[Any] = PartitionState(FakeTable(), 3)
    dedup = MessageDedup({})
    dedup["click:e1"] = (0, 7, 0, "c", "email")
    dedup["click:e2"] = (0, 7, 1, "c", "email")
    await persist(state, "0:7", dedup, now=99.0)
    assert sent == [
        (
            "3|0:7",
            [99.0, [["click:e1", 0, 7, 0, "c", "email"], ["click:e2", 0, 7, 1, "c", "email"]]],
        )
    ]


async def test_a_large_batch_is_persisted_in_records_far_below_the_message_limit(
    sent: list[tuple[str, Any]],
) -> None:
    """40,000 sign-ups in one batch once made one record the broker refused."""
    state: PartitionState[Any] = PartitionState(FakeTable(), 0)
    dedup = MessageDedup({})
    for i in range(2_500):
        dedup[f"signup:{'x' * 200}{i}"] = (3, 9, i, "campaign", "email")
    await persist(state, "3:9", dedup, now=5.0)
    assert sorted(key for key, _ in sent) == ["0|3:9", "0|3:9/1", "0|3:9/2"]
    assert all(len(orjson.dumps(value)) < 512 * 1024 for _, value in sent)
    assert rebuild(state) == {identity: tuple(r) for identity, *r in dedup.new}
