"""Campaign and channel from a landing URL and its referrer (the collector's UTM mapping)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnelpulse.names import channel_table
from streams.events import DEFAULT_CHANNELS
from streams.utm import campaign_fields, with_campaign_fields

LP = "https://shop.example/landing"


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        # utm_medium through the channel table: known channels and aliases
        (f"{LP}?utm_campaign=spring-sale&utm_medium=cpc", None,
         {"campaign_id": "spring-sale", "channel": "paid_search"}),
        (f"{LP}?utm_medium=ppc", None, {"channel": "paid_search"}),
        (f"{LP}?utm_medium=paidsearch", None, {"channel": "paid_search"}),
        (f"{LP}?utm_medium=paid_search", None, {"channel": "paid_search"}),
        (f"{LP}?utm_medium=paid_social", None, {"channel": "paid_social"}),
        (f"{LP}?utm_medium=paidsocial", None, {"channel": "paid_social"}),
        (f"{LP}?utm_medium=social-paid", None, {"channel": "paid_social"}),
        (f"{LP}?utm_medium=social", None, {"channel": "paid_social"}),
        (f"{LP}?utm_medium=email", None, {"channel": "email"}),
        (f"{LP}?utm_medium=E-Mail", None, {"channel": "email"}),
        (f"{LP}?utm_medium=newsletter", None, {"channel": "email"}),
        (f"{LP}?utm_medium=display", None, {"channel": "display"}),
        (f"{LP}?utm_medium=banner", None, {"channel": "display"}),
        (f"{LP}?utm_medium=affiliate", None, {"channel": "affiliate"}),
        (f"{LP}?utm_medium=referral", None, {"channel": "referral"}),
        (f"{LP}?utm_medium=organic", None, {"channel": "organic"}),
        (f"{LP}?utm_medium=video", None, {"channel": "video"}),
        (f"{LP}?utm_medium=(none)", None, {"channel": "direct"}),
        (f"{LP}?UTM_MEDIUM=%20CPC%20&UTM_CAMPAIGN=q1", None,
         {"campaign_id": "q1", "channel": "paid_search"}),
        # click ids: paid, whatever the medium does not say
        (f"{LP}?gclid=abc", None, {"channel": "paid_search"}),
        (f"{LP}?msclkid=abc&utm_campaign=brand", None,
         {"campaign_id": "brand", "channel": "paid_search"}),
        (f"{LP}?fbclid=abc", None, {"channel": "paid_social"}),
        (f"{LP}?ttclid=abc", None, {"channel": "paid_social"}),
        (f"{LP}?dclid=abc", None, {"channel": "display"}),
        (f"{LP}?utm_medium=podcast&gclid=abc", None, {"channel": "paid_search"}),
        (f"{LP}?utm_medium=email&gclid=abc", None, {"channel": "email"}),  # known medium wins
        # utm_source when the medium says nothing known
        (f"{LP}?utm_source=newsletter", None, {"channel": "email"}),
        (f"{LP}?utm_source=google&utm_medium=cpc", None, {"channel": "paid_search"}),
        # an unknown medium goes through: counted as other, and shown by name in metrics
        (f"{LP}?utm_medium=Podcast", None, {"channel": "podcast"}),
        (f"{LP}?utm_source=podnews", None, {}),
        # the referrer, only without UTM parameters or click ids
        (LP, "https://www.google.com/search?q=shoes", {"channel": "organic"}),
        (LP, "https://duckduckgo.com/", {"channel": "organic"}),
        (LP, "https://news.example.org/article", {"channel": "referral"}),
        (LP, "https://shop.example/cart", {}),  # internal navigation
        (None, "https://www.bing.com/", {"channel": "organic"}),
        (f"{LP}?utm_medium=email", "https://www.google.com/", {"channel": "email"}),
        # nothing to read
        (LP, None, {}),
        (None, None, {}),
        ("", "", {}),
        ("http://[::1/?utm_medium=cpc", "http://[bad", {}),
        (f"{LP}?utm_campaign=&utm_medium=", None, {}),
        ("?utm_campaign=spring%20sale", None, {"campaign_id": "spring sale"}),  # then refused
    ],
)  # fmt: skip
def test_campaign_fields(url: str | None, referrer: str | None, expected: dict[str, str]) -> None:
    assert campaign_fields(url, referrer, DEFAULT_CHANNELS) == expected


def test_the_configured_channel_table_is_used() -> None:
    table = channel_table(["podcast", "email", "other"], {"pod": "podcast"})
    assert campaign_fields(f"{LP}?utm_medium=pod", None, table) == {"channel": "podcast"}
    assert campaign_fields(f"{LP}?utm_medium=cpc", None, table) == {"channel": "cpc"}


def _events(body: bytes) -> Any:
    return orjson.loads(with_campaign_fields(body, DEFAULT_CHANNELS))


def test_the_body_gets_what_its_events_miss_and_explicit_fields_win() -> None:
    url = f"{LP}?utm_campaign=spring-sale&utm_medium=cpc"
    body = orjson.dumps([
        {"event_id": "a", "url": url},
        {"event_id": "b", "url": url, "campaign_id": "explicit", "channel": "email"},
        {"event_id": "c", "url": url, "channel": None},
        {"event_id": "d"},
        "not an event",
    ])  # fmt: skip
    a, b, c, d, text = _events(body)
    assert (a["campaign_id"], a["channel"], a["url"]) == ("spring-sale", "paid_search", url)
    assert (b["campaign_id"], b["channel"]) == ("explicit", "email")
    assert (c["campaign_id"], c["channel"]) == ("spring-sale", "paid_search")
    assert d == {"event_id": "d"}
    assert text == "not an event"
    single = orjson.dumps({"event_id": "a", "referrer": "https://www.google.com/"})
    assert _events(single) == {"event_id": "a", "referrer": "https://www.google.com/",
                               "channel": "organic"}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"event_id": "a"}', b"[]", b'{"url": 5, "referrer": null}',
     b'[{"url": "https://x.example/"}]'],
)  # fmt: skip
def test_a_body_with_nothing_to_add_is_passed_on_byte_for_byte(body: bytes) -> None:
    assert with_campaign_fields(body, DEFAULT_CHANNELS) is body


def test_a_body_too_deep_to_re_encode_is_passed_on() -> None:
    deep = b"[" * 300 + b"]" * 300
    body = b'[{"url": "https://x.example/?utm_medium=cpc", "x": ' + deep + b"}]"
    assert with_campaign_fields(body, DEFAULT_CHANNELS) is body


@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=200)))
def test_any_url_and_referrer_never_raise(url: str, referrer: str | None) -> None:
    fields = campaign_fields(url, referrer, DEFAULT_CHANNELS)
    assert set(fields) <= {"campaign_id", "channel"}
