"""Campaign and channel from a landing page's URL and its referrer, for the collector.

A web page that reports clicks and sign-ups knows its own URL and ``document.referrer``,
not our campaign ids; so ``POST /events/click`` and ``/events/signup`` accept ``url``
and/or ``referrer`` instead of ``campaign_id`` and ``channel``, resolved the way
Snowplow's campaign attribution enrichment does it:

- ``campaign_id`` ← ``utm_campaign`` of the URL (percent-decoded, as it is; it must
  still fit ``[A-Za-z0-9._:-]``, or the event is rejected and says so);
- ``channel`` ← ``utm_medium`` looked up in the channel table (the known channels and
  ``FUNNELPULSE_CHANNEL_ALIASES``: cpc/ppc/paidsearch → paid_search, social/paidsocial/
  social-paid → paid_social, e-mail/newsletter → email, banner/cpm → display, seo →
  organic, (none) → direct, ...); else a click id (``gclid``, ``msclkid`` → paid_search,
  ``dclid`` → display, ``fbclid``, ``ttclid``, ``li_fat_id``, ``twclid`` → paid_social);
  else ``utm_source`` looked up the same way; else the medium as given (it counts as
  ``other`` and shows in ``marketing_unknown_channel_total``); else, without any UTM
  parameter or click id, the referrer: a search engine → organic, another site →
  referral, the page's own site or none → nothing.

Fields the event carries itself always win. The trap: a click id outranks an unknown
medium but not a known one (``utm_medium=email`` with a forwarded ``gclid`` is e-mail),
and parameter names are matched in lower case, values normalised like ``channel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import orjson

CLICK_IDS: Mapping[str, str] = {
    "gclid": "paid_search",  # Google Ads
    "msclkid": "paid_search",  # Microsoft Advertising
    "dclid": "display",  # Google Display & Video 360
    "fbclid": "paid_social",  # Meta
    "ttclid": "paid_social",  # TikTok
    "li_fat_id": "paid_social",  # LinkedIn
    "twclid": "paid_social",  # X
}
SEARCH_ENGINES = frozenset(
    {"google", "bing", "duckduckgo", "yahoo", "baidu", "yandex", "ecosia", "qwant", "naver"}
)
URL_FIELDS = ("url", "referrer")


def campaign_fields(
    url: str | None, referrer: str | None, channels: Mapping[str, str]
) -> dict[str, str]:
    """``campaign_id`` and ``channel`` as far as the URL and referrer tell (maybe none)."""
    params = _params(url)
    out: dict[str, str] = {}
    campaign = params.get("utm_campaign", "").strip()
    if campaign:
        out["campaign_id"] = campaign
    channel = _channel(params, channels) or _from_referrer(url, referrer)
    if channel:
        out["channel"] = channel
    return out


def _split(url: str | None) -> SplitResult | None:
    try:
        return urlsplit(url) if url else None
    except ValueError:  # e.g. an unclosed IPv6 bracket: no URL to read
        return None


def _params(url: str | None) -> dict[str, str]:
    """The query's parameters, names in lower case, the first value of each."""
    parts = _split(url)
    params: dict[str, str] = {}
    for name, values in parse_qs(parts.query if parts else "").items():
        params.setdefault(name.lower(), values[0])
    return params


def _channel(params: Mapping[str, str], channels: Mapping[str, str]) -> str | None:
    medium = params.get("utm_medium", "").strip().lower()
    if medium in channels:
        return channels[medium]
    for click_id, channel in CLICK_IDS.items():
        if params.get(click_id):
            return channel
    source = params.get("utm_source", "").strip().lower()
    return channels.get(source) or medium or None


def _from_referrer(url: str | None, referrer: str | None) -> str | None:
    host = _host(referrer)
    if not host or host == _host(url):
        return None
    return "organic" if SEARCH_ENGINES.intersection(host.split(".")) else "referral"


def _host(url: str | None) -> str:
    parts = _split(url)
    return ((parts.hostname if parts else None) or "").removeprefix("www.")


def with_campaign_fields(body: bytes, channels: Mapping[str, str]) -> bytes:
    """The collector's request body with each event's missing ``campaign_id`` and
    ``channel`` taken from its ``url`` / ``referrer``; the body unchanged when no event
    carries one (or it is not JSON: the validator then says what is wrong)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    events = doc if isinstance(doc, list) else [doc]
    changed = [_fill(event, channels) for event in events if isinstance(event, dict)]
    if not any(changed):
        return body
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # nested too deep to re-encode: the validator says so
        return body


def _fill(event: dict[str, Any], channels: Mapping[str, str]) -> bool:
    url, referrer = (event.get(name) for name in URL_FIELDS)
    if not isinstance(url, str) and not isinstance(referrer, str):
        return False
    derived = campaign_fields(
        url if isinstance(url, str) else None,
        referrer if isinstance(referrer, str) else None,
        channels,
    )
    missing = {name: value for name, value in derived.items() if event.get(name) is None}
    event.update(missing)
    return bool(missing)
