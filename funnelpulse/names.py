"""Names producers and operators use: each event type's topic suffix, the channels and
their aliases.

The settings, the validator (``streams/events.py``) and the collector's UTM mapping
(``streams/utm.py``) all read them from here. They live outside ``streams/`` because the
settings must not import the worker: the dashboard generator and the CLI read settings
and start without Faust (``tests/unit/test_dashboard_json.py`` holds them to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# event type → the suffix of its input topic (after FUNNELPULSE_TOPIC_PREFIX)
TOPIC_SUFFIXES: Mapping[str, str] = {
    "impression": "impressions",
    "click": "clicks",
    "open": "opens",
    "signup": "signups",
    "lead_stage": "lead-stages",
    "purchase": "purchases",
    "spend": "spend",
}
# every topic whose full name FUNNELPULSE_TOPIC_<SUFFIX> may set (else prefix + suffix)
NAMED_TOPICS: tuple[str, ...] = (*TOPIC_SUFFIXES.values(), "dead-letter", "kpis", "alerts")

CHANNELS = frozenset(  # built in (SPEC §1); FUNNELPULSE_CHANNELS adds more
    {
        "email",
        "paid_search",
        "paid_social",
        "display",
        "video",
        "affiliate",
        "organic",
        "referral",
        "direct",
        "other",
    }
)
# Other names producers use for a channel (normalised: trimmed, lower case): the default
# of FUNNELPULSE_CHANNEL_ALIASES, also what the collector maps utm_medium with.
DEFAULT_CHANNEL_ALIASES: Mapping[str, str] = {
    "cpc": "paid_search", "ppc": "paid_search", "paidsearch": "paid_search",
    "paid-search": "paid_search", "sem": "paid_search",
    "paidsocial": "paid_social", "paid-social": "paid_social", "social-paid": "paid_social",
    "social_paid": "paid_social", "social": "paid_social",
    "e-mail": "email", "mail": "email", "newsletter": "email",
    "banner": "display", "cpm": "display", "affiliates": "affiliate", "seo": "organic",
    "(none)": "direct", "none": "direct",
}  # fmt: skip


def channel_table(known: Iterable[str], aliases: Mapping[str, str]) -> dict[str, str]:
    """Normalised name → channel: each known channel to itself, each alias to its target
    (an alias never shadows a known channel)."""
    return {**aliases, **{name: name for name in known}}


def topic_variable(suffix: str) -> str:
    """``lead-stages`` → ``FUNNELPULSE_TOPIC_LEAD_STAGES``."""
    return "FUNNELPULSE_TOPIC_" + suffix.upper().replace("-", "_")
