"""Parsers of environment values: the text of one variable in, a typed value out.

Each parser is called with the variable's name and its text (the declared default when
the variable is unset or blank), plus the values parsed before it, for the few that
depend on another (the exchange rates on the reporting currency, the aliases on the
channels). A value that cannot be used raises ``SettingsError`` naming the variable and
what it expects: a typo fails at start-up instead of running with a default nobody
chose. The trap is the bare number for durations: ``FUNNELPULSE_KPI_TTL=48`` would
silently be 48 s, so durations need their unit (``metrics.durations``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from metrics.durations import format_duration, parse_duration

from .credentials import Secret
from .names import CHANNELS


class SettingsError(ValueError):
    """A setting from the environment that cannot be used as given."""


Earlier = Mapping[str, Any]  # field name → value, of the fields declared before
Parser = Callable[[str, str, Earlier], Any]  # (variable, text, earlier) → value

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CHANNEL = re.compile(r"^[a-z0-9_]{1,32}$")  # safe in Redis keys and Prometheus labels


def text(name: str, raw: str, earlier: Earlier) -> str:
    return raw


def secret(name: str, raw: str, earlier: Earlier) -> Secret:
    return Secret(raw)


def integer(low: int, high: int) -> Parser:
    def parse(name: str, raw: str, earlier: Earlier) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is outside {low}..{high}")
        return value

    return parse


def number(low: float) -> Parser:
    def parse(name: str, raw: str, earlier: Earlier) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not value >= low or value == float("inf"):
            raise SettingsError(f"{name}={raw} must be a finite number >= {low}")
        return value

    return parse


def duration(name: str, raw: str, earlier: Earlier) -> float:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def window_name(name: str, raw: str, earlier: Earlier) -> str:
    """A duration spelled canonically, as window names are (``900s`` → ``15m``)."""
    return format_duration(duration(name, raw, earlier))


def choice(*options: str, upper: bool = True) -> Parser:
    def parse(name: str, raw: str, earlier: Earlier) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in options:
            raise SettingsError(f"{name}={value!r}: use one of {', '.join(options)}")
        return value

    return parse


def readable_file(name: str, raw: str, earlier: Earlier) -> str:
    if raw and not os.access(raw, os.R_OK):
        raise SettingsError(f"{name}={raw!r} is not a readable file")
    return raw


def web_url(name: str, raw: str, earlier: Earlier) -> str:
    parts = urlsplit(raw)
    if raw and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise SettingsError(f"{name}={raw!r} is not an http:// or https:// URL with a host")
    return raw.rstrip("/")


def currency(name: str, raw: str, earlier: Earlier) -> str:
    code = raw.upper()
    if not _CURRENCY.match(code):
        raise SettingsError(f"{name}={code!r} is not ISO 4217")
    return code


def windows(name: str, raw: str, earlier: Earlier) -> tuple[str, ...]:
    """Canonical window names, shortest first, e.g. ``("1m", "5m", "1h")``."""
    return parse_windows(raw, name)


def parse_windows(raw: str, name: str = "FUNNELPULSE_WINDOWS") -> tuple[str, ...]:
    try:
        seconds = sorted({parse_duration(part) for part in raw.split(",") if part.strip()})
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    if not seconds or any(s < 60 or s % 60 for s in seconds):
        raise SettingsError(f"{name}={raw!r}: windows are whole minutes, >= 1m")
    return tuple(format_duration(s) for s in seconds)


def fx_rates(name: str, raw: str, earlier: Earlier) -> dict[str, Decimal]:
    """``"EUR=1.08,GBP=1.27"`` → rates into the reporting currency (which is always 1)."""
    return parse_fx_rates(raw, earlier["reporting_currency"], name)


def parse_fx_rates(
    raw: str, reporting: str, name: str = "FUNNELPULSE_FX_RATES"
) -> dict[str, Decimal]:
    rates = {reporting: Decimal(1)}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        code, _, value = part.partition("=")
        code = code.strip().upper()
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise SettingsError(f"{name}: {part!r} is not CODE=rate") from None
        if not _CURRENCY.match(code) or not rate.is_finite() or rate <= 0:
            raise SettingsError(f"{name}: {part!r} needs a 3-letter code, rate > 0")
        if code != reporting:
            rates[code] = rate
    return rates


def channels(name: str, raw: str, earlier: Earlier) -> tuple[str, ...]:
    """The built-in channels plus ``"podcast,tv"``, sorted."""
    extra = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for channel in extra:
        if not _CHANNEL.match(channel):
            raise SettingsError(f"{name}: {channel!r} is not [a-z0-9_], 1-32 long")
    return tuple(sorted({*CHANNELS, *extra}))


def channel_aliases(name: str, raw: str, earlier: Earlier) -> dict[str, str]:
    """``"cpc=paid_search,social=paid_social"`` → alias → channel (names normalised)."""
    known: tuple[str, ...] = earlier["channels"]
    aliases = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        alias, sep, target = (side.strip().lower() for side in part.partition("="))
        if not sep or not alias:
            raise SettingsError(f"{name}: {part!r} is not alias=channel")
        if target not in known:
            raise SettingsError(
                f"{name}: {part!r} names no channel (FUNNELPULSE_CHANNELS adds one)"
            )
        if alias in known:
            raise SettingsError(f"{name}: {alias!r} is a channel itself")
        aliases[alias] = target
    return aliases
