"""``funnelpulse replay`` planning: JSON Lines → batched messages, bad lines skipped by number."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelpulse.replay import Message, Parsed, Sender, Skipped, Totals, parse_line, plan
from funnelpulse.settings import Settings
from streams.events import EventType
from streams.topics import TopicNames


def _click(i: int, campaign: str = "spring-sale", **extra: Any) -> bytes:
    doc = {"type": "click", "event_id": f"c{i}", "ts": 1_800_000_000, "campaign_id": campaign}
    return orjson.dumps({**doc, **extra}) + b"\n"


def _messages(items: list[Message | Skipped]) -> list[Message]:
    return [item for item in items if isinstance(item, Message)]


def _skipped(items: list[Message | Skipped]) -> list[Skipped]:
    return [item for item in items if isinstance(item, Skipped)]


def _ids(message: Message) -> list[str]:
    docs = orjson.loads(message.value)
    return [doc["event_id"] for doc in (docs if isinstance(docs, list) else [docs])]


def test_events_of_one_key_share_batches_in_file_order() -> None:
    lines = [_click(i, "a" if i % 2 else "b") for i in range(6)]
    messages = _messages(list(plan(lines)))
    assert [(m.kind, m.key, _ids(m)) for m in messages] == [
        (EventType.CLICK, "b", ["c0", "c2", "c4"]),
        (EventType.CLICK, "a", ["c1", "c3", "c5"]),
    ]


def test_types_never_share_a_batch_even_with_one_key() -> None:
    lines = [_click(1), _click(2, type="impression"), _click(3)]
    messages = _messages(list(plan(lines)))
    assert {(m.kind, tuple(_ids(m))) for m in messages} == {
        (EventType.CLICK, ("c1", "c3")),
        (EventType.IMPRESSION, ("c2",)),
    }


def test_key_falls_back_to_lead_then_customer_then_none() -> None:
    base = {"event_id": "e", "ts": 1}
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"type": "lead_stage", "lead_id": "L1", "campaign_id": "camp"}, "camp"),
        ({"type": "lead_stage", "lead_id": "L1", "stage": "mql"}, "L1"),
        ({"type": "purchase", "customer_id": "C9"}, "C9"),
        ({"type": "purchase", "campaign_id": "", "lead_id": 7, "customer_id": "C9"}, "C9"),
        ({"type": "purchase"}, None),
    ]
    for doc, key in cases:
        parsed = parse_line(1, orjson.dumps({**base, **doc}))
        assert isinstance(parsed, Parsed)
        assert parsed.key == key, doc


def test_batches_are_cut_at_the_batch_size() -> None:
    messages = _messages(list(plan([_click(i) for i in range(250)], batch=100)))
    assert [m.events for m in messages] == [100, 100, 50]
    assert [len(orjson.loads(m.value)) for m in messages] == [100, 100, 50]
    assert [i for m in messages for i in _ids(m)] == [f"c{i}" for i in range(250)]


def test_batches_are_cut_before_they_grow_too_large() -> None:
    padded = [_click(i, pad="x" * 900) for i in range(10)]
    messages = _messages(list(plan(padded, batch=100, max_bytes=4000)))
    assert all(len(m.value) <= 4000 for m in messages)
    assert sum(m.events for m in messages) == 10
    assert len(messages) > 2


def test_open_batches_are_flushed_oldest_first_beyond_the_pending_cap() -> None:
    lines = [_click(i, f"camp-{i}") for i in range(5)]
    items = plan(lines, batch=100, max_pending=2)
    first = next(items)  # flushed while reading, not only at the end of the file
    assert isinstance(first, Message)
    assert (first.key, first.events) == ("camp-0", 1)
    assert [m.key for m in _messages(list(items))] == ["camp-1", "camp-2", "camp-3", "camp-4"]


def test_single_sends_each_event_as_its_own_object() -> None:
    lines = [_click(i) for i in range(3)]
    messages = _messages(list(plan(lines, batch=100, single=True)))
    assert [m.events for m in messages] == [1, 1, 1]
    assert [orjson.loads(m.value)["event_id"] for m in messages] == ["c0", "c1", "c2"]


def test_lines_are_sent_byte_for_byte() -> None:
    raw = b'{"type": "click", "event_id": "x", "amount": 1.10, "ts": 1e9, "campaign_id": "k"}'
    (single,) = _messages(list(plan([b"  " + raw + b"\r\n"], single=True)))
    (batch,) = _messages(list(plan([raw])))
    assert single.value == raw
    assert batch.value == b"[" + raw + b"]"


def test_bad_lines_are_reported_with_their_line_numbers() -> None:
    lines = [
        _click(1),
        b"{not json\n",
        b'{"event_id": "no-type", "campaign_id": "a"}\n',
        b'{"type": "teleport", "event_id": "t"}\n',
        b'{"type": 7, "event_id": "t"}\n',
        b"[1, 2]\n",
        b'"a string"\n',
        b"\xff\xfe\n",
        _click(2),
    ]
    items = list(plan(lines))
    skipped = _skipped(items)
    assert [s.line for s in skipped] == [2, 3, 4, 5, 6, 7, 8]
    reasons = [s.reason for s in skipped]
    assert reasons[0].startswith("not valid JSON")
    assert 'no "type" field' in reasons[1]
    assert 'unknown type "teleport"' in reasons[2] and "impression" in reasons[2]
    assert "must be a string" in reasons[3]
    assert "array" in reasons[4] and "string" in reasons[5]
    assert reasons[6].startswith("not valid JSON")
    assert [_ids(m) for m in _messages(items)] == [["c1", "c2"]]


def test_blank_lines_are_skipped_silently_but_still_numbered() -> None:
    lines = [b"\n", b"   \t\r\n", _click(1), b"", b"{oops\n"]
    items = list(plan(lines))
    assert _skipped(items) == [Skipped(5, _skipped(items)[0].reason)]
    assert [m.events for m in _messages(items)] == [1]


def test_a_byte_order_mark_on_the_first_line_is_ignored() -> None:
    parsed = parse_line(1, b"\xef\xbb\xbf" + _click(1))
    assert isinstance(parsed, Parsed)
    assert parsed.raw.startswith(b"{")


def test_an_event_over_the_worker_limit_is_skipped() -> None:
    huge = _click(1, pad="x" * 70_000)
    (item,) = list(plan([huge]))
    assert isinstance(item, Skipped)
    assert "64 KiB" in item.reason


def test_str_lines_work_like_bytes() -> None:
    text = _click(1).decode()
    assert list(plan([text])) == list(plan([text.encode()]))


def test_batch_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(plan([], batch=0))


def _blank(number: int, line: str | bytes) -> bool:
    raw = (line.encode() if isinstance(line, str) else line).strip()
    return not (raw.removeprefix(b"\xef\xbb\xbf").strip() if number == 1 else raw)


def test_a_lone_byte_order_mark_is_a_blank_line() -> None:
    assert list(plan(["\ufeff", _click(1)])) == list(plan([b"", _click(1)]))


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.one_of(st.text(), st.binary()), max_size=30),
    batch=st.integers(1, 5),
    single=st.booleans(),
)
def test_arbitrary_lines_never_raise_and_every_line_is_accounted_for(
    lines: list[str | bytes], batch: int, single: bool
) -> None:
    items = list(plan(lines, batch=batch, single=single))
    sent = sum(m.events for m in _messages(items))
    skipped = _skipped(items)
    blank = sum(1 for number, line in enumerate(lines, 1) if _blank(number, line))
    assert sent + len(skipped) + blank == len(lines)
    assert len({s.line for s in skipped}) == len(skipped)
    assert all(m.events <= (1 if single else batch) for m in _messages(items))


_keys = st.sampled_from(["a", "b", "c"])
_kinds = st.sampled_from([kind.value for kind in EventType])


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(_kinds, _keys), max_size=60), batch=st.integers(1, 7))
def test_every_event_is_sent_once_and_keeps_its_order_within_its_key(
    events: list[tuple[str, str]], batch: int
) -> None:
    lines = [
        orjson.dumps({"type": kind, "event_id": str(i), "campaign_id": key})
        for i, (kind, key) in enumerate(events)
    ]
    sent: dict[tuple[str, str | None], list[int]] = {}
    for message in _messages(list(plan(lines, batch=batch))):
        assert 1 <= message.events <= batch
        sent.setdefault((message.kind, message.key), []).extend(map(int, _ids(message)))
    expected: dict[tuple[str, str | None], list[int]] = {}
    for i, (kind, key) in enumerate(events):
        expected.setdefault((kind, key), []).append(i)
    assert sent == expected


class _Producer:
    """Records what the sender produces; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.sent.append((topic, value, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_replay_sends_to_the_topics_the_settings_name() -> None:
    env = {"FUNNELPULSE_TOPIC_PREFIX": "acme.", "FUNNELPULSE_TOPIC_CLICKS": "clicks"}
    topics = TopicNames.from_settings(Settings.from_env(env)).inputs
    producer = _Producer()
    sender = Sender(producer, topics, Totals())  # type: ignore[arg-type]
    await sender.send(Message(EventType.CLICK, "spring-sale", b"[]", 1))
    await sender.send(Message(EventType.OPEN, "spring-sale", b"[]", 1))
    assert [topic for topic, _, _ in producer.sent] == ["clicks", "acme.opens"]
