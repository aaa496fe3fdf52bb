"""The producer client without a broker: batches per (type, campaign) keyed by campaign,
ids assigned once and kept through retries, local validation, size / time flushes."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from funnelpulse.client import (
    DeliveryError,
    FunnelPulseProducer,
    FunnelPulseProducerSync,
    InvalidEvent,
)
from funnelpulse.settings import Settings
from streams.events import Reason

NOW = time.time()


class FakeKafka:
    """Records each message; fails the next ``fail`` sends (after the broker "got" them
    when ``landed``: the classic duplicate a retry makes)."""

    def __init__(self, fail: int = 0, landed: bool = False) -> None:
        self.fail, self.landed = fail, landed
        self.sent: list[tuple[str, bytes | None, list[dict[str, Any]]]] = []
        self.raw: list[bytes] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if self.fail and not self.landed:
            self.fail -= 1
            raise KafkaConnectionError("broker away")
        self.sent.append((topic, key, orjson.loads(value)))
        self.raw.append(value)
        if self.fail:
            self.fail -= 1
            raise KafkaConnectionError("acknowledgement lost")


def click(campaign: str = "spring-sale", **extra: Any) -> dict[str, Any]:
    return {"ts": NOW, "campaign_id": campaign, "channel": "email", **extra}


def producer(kafka: FakeKafka, **options: Any) -> FunnelPulseProducer:
    return FunnelPulseProducer(Settings(), sender=kafka, linger=3600, **options)


async def test_batches_per_type_and_campaign_keyed_by_campaign() -> None:
    kafka = FakeKafka()
    async with producer(kafka) as fp:
        a1 = await fp.send("click", click("a"))
        await fp.send("click", click("b"))
        a2 = await fp.send("click", click("a"))
        await fp.send("spend", {"ts": NOW, "campaign_id": "a", "amount": "3.5", "currency": "EUR"})
        await fp.send("lead_stage", {"ts": NOW, "lead_id": "lead-1", "stage": "mql"})
        assert fp.pending == 5 and not kafka.sent
    assert kafka.stopped and fp.pending == 0
    by_key = {(topic, key): [e["event_id"] for e in events] for topic, key, events in kafka.sent}
    assert by_key[("mkt.clicks", b"a")] == [a1, a2]
    assert len(by_key[("mkt.clicks", b"b")]) == 1
    assert len(by_key[("mkt.spend", b"a")]) == 1
    assert len(by_key[("mkt.lead-stages", b"lead-1")]) == 1  # no campaign: keyed by lead


async def test_an_event_id_is_assigned_once_into_the_callers_dict() -> None:
    kafka = FakeKafka()
    event = click()
    async with producer(kafka) as fp:
        first = await fp.send("click", event)
        assert event["event_id"] == first and len(first) == 36  # a uuid4
        assert await fp.send("click", event) == first  # the same dict again: the same id
        assert await fp.send("click", click(event_id="mine")) == "mine"


async def test_a_failed_delivery_is_kept_and_retried_byte_for_byte() -> None:
    kafka = FakeKafka(fail=1, landed=True)  # the broker has it; the client never heard
    fp = producer(kafka)
    await fp.start()
    await fp.send("click", click())
    await fp.send("click", click())
    with pytest.raises(DeliveryError, match=r"2 events to mkt\.clicks not delivered"):
        await fp.flush()
    assert fp.pending == 2
    await fp.flush()
    assert fp.pending == 0
    assert kafka.raw[0] == kafka.raw[1]  # a retry is the same batch: the worker counts it once
    await fp.stop()


async def test_a_batch_goes_out_when_full_by_count_or_by_bytes() -> None:
    kafka = FakeKafka()
    async with producer(kafka, max_batch_events=3) as fp:
        for _ in range(7):
            await fp.send("click", click())
        assert [len(events) for _, _, events in kafka.sent] == [3, 3]
    assert [len(events) for _, _, events in kafka.sent] == [3, 3, 1]
    kafka = FakeKafka()
    big = "x" * 60_000
    async with producer(kafka, max_batch_bytes=150_000) as fp:
        for _ in range(5):
            await fp.send("click", click(note=big))
    assert [len(events) for _, _, events in kafka.sent] == [2, 2, 1]
    assert all(len(raw) <= 150_000 for raw in kafka.raw)


async def test_a_batch_goes_out_when_it_has_lingered() -> None:
    kafka = FakeKafka()
    fp = FunnelPulseProducer(Settings(), sender=kafka, linger=0.02)
    await fp.start()
    await fp.send("click", click())
    for _ in range(100):
        if kafka.sent:
            break
        await asyncio.sleep(0.01)
    assert len(kafka.sent) == 1 and fp.pending == 0
    await fp.stop()


async def test_a_failure_in_the_background_is_raised_at_the_next_send() -> None:
    kafka = FakeKafka(fail=1)
    fp = FunnelPulseProducer(Settings(), sender=kafka, linger=0.02)
    await fp.start()
    await fp.send("click", click())
    await asyncio.sleep(0.2)
    with pytest.raises(DeliveryError):
        await fp.send("click", click())
    await fp.stop()  # the kept batch and the new event go out
    assert sum(len(events) for _, _, events in kafka.sent) == 2


@pytest.mark.parametrize(
    ("kind", "event", "reason"),
    [
        ("click", {"ts": NOW}, Reason.MISSING_FIELD),
        ("click", click("spring sale"), Reason.INVALID_VALUE),
        ("click", click(ts=NOW + 3600), Reason.TS_IN_FUTURE),
        ("spend", {"ts": NOW, "campaign_id": "a", "amount": 1, "currency": "XYZ"},
         Reason.UNKNOWN_CURRENCY),
        ("lead_stage", {"ts": NOW, "lead_id": "l", "stage": "vip"}, Reason.INVALID_VALUE),
        ("click", click(user_id={1, 2}), Reason.WRONG_TYPE),  # a set is not JSON
        ("click", click(note="x" * 70_000), Reason.TOO_LARGE),
        ("click", ["not", "a", "dict"], Reason.NOT_AN_OBJECT),
    ],
)  # fmt: skip
async def test_a_bad_event_raises_with_the_workers_reason_and_is_not_queued(
    kind: str, event: Any, reason: Reason
) -> None:
    fp = producer(FakeKafka())
    with pytest.raises(InvalidEvent) as raised:
        await fp.send(kind, event)
    assert raised.value.reason is reason
    assert str(raised.value).startswith(f"invalid {kind} event: {reason.value}: ")
    assert fp.pending == 0


async def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown event type 'tap': one of impression, click"):
        await producer(FakeKafka()).send("tap", click())


async def test_decimals_and_aware_datetimes_go_out_as_the_worker_reads_them() -> None:
    kafka = FakeKafka()
    async with producer(kafka) as fp:
        await fp.send("spend", {"ts": datetime.fromtimestamp(NOW, UTC), "campaign_id": "a",
                                "amount": Decimal("12.50"), "currency": "USD"})  # fmt: skip
    [(_, _, [event])] = kafka.sent
    assert event["amount"] == "12.50" and event["ts"].endswith("+00:00")


async def test_topics_and_channels_follow_the_settings() -> None:
    kafka = FakeKafka()
    env = {"FUNNELPULSE_TOPIC_CLICKS": "clicks", "FUNNELPULSE_CHANNELS": "podcast"}
    fp = FunnelPulseProducer.from_env(env, sender=kafka, linger=3600)
    async with fp:
        await fp.send("click", click(channel="podcast"))
    assert kafka.sent[0][0] == "clicks"


def test_the_sync_producer_runs_its_own_loop() -> None:
    kafka = FakeKafka()
    with FunnelPulseProducerSync(Settings(), sender=kafka, linger=3600) as fp:
        ids = fp.send_many("click", [click(), click("b")])
        assert fp.pending == 2
        fp.flush()
        assert fp.pending == 0
        with pytest.raises(InvalidEvent):
            fp.send("click", {"ts": NOW})
    assert kafka.stopped
    assert sorted(e["event_id"] for _, _, events in kafka.sent for e in events) == sorted(ids)
    assert not any(t.name == "funnelpulse-producer" for t in threading.enumerate())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_batch_events": 0}, "max_batch_events"), ({"max_batch_events": 10_001}, "10000"),
     ({"max_batch_bytes": 2 * 1024 * 1024}, "max_batch_bytes")],
)  # fmt: skip
def test_batch_limits_stay_within_the_workers(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FunnelPulseProducer(Settings(), **options)
