"""``wait_visible``: the worker joins its group only once the topics it created answer a
metadata request with a leader per partition (a group formed earlier is assigned without
them). The admin client here replays what a broker answers while a topic propagates."""

from __future__ import annotations

from typing import Any

from streams.topics import wait_visible


def described(name: str, leaders: list[int], error: int = 0) -> dict[str, Any]:
    parts = [{"error_code": 0, "partition": i, "leader": lead} for i, lead in enumerate(leaders)]
    return {"error_code": error, "topic": name, "partitions": parts}


class PropagatingAdmin:
    """Answers ``describe_topics`` from a script of answers, one per call."""

    def __init__(self, answers: list[dict[str, dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.asked.append(list(topics))
        answer = self.answers[min(len(self.asked) - 1, len(self.answers) - 1)]
        return [answer[t] for t in topics]


async def test_waits_for_unknown_topics_and_leaderless_partitions() -> None:
    admin = PropagatingAdmin([
        {"a": described("a", [], error=3), "b": described("b", [-1, 1])},
        {"a": described("a", [1, 1]), "b": described("b", [-1, 1])},
        {"a": described("a", [1, 1]), "b": described("b", [1, 1])},
    ])  # fmt: skip
    await wait_visible(admin, ["a", "b"], patience=10)  # type: ignore[arg-type]
    assert admin.asked == [["a", "b"], ["a", "b"], ["b"]]


async def test_gives_up_after_its_patience_with_a_warning(caplog: Any) -> None:
    admin = PropagatingAdmin([{"a": described("a", [-1])}])
    await wait_visible(admin, ["a"], patience=0)  # type: ignore[arg-type]
    assert admin.asked == [["a"]]
    assert "not in the broker's metadata" in caplog.text
