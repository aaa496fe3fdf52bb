"""Human durations ("500ms", "1s", "15m", "24h", "7d") as seconds.

Settings, window names and CLI flags all speak this one syntax, so a window called
``15m`` and a TTL of ``15m`` always mean the same number. The trap is the bare number:
settings refuse it (``FUNNELPULSE_KPI_TTL=48`` would silently be 48 s, not 48 h), while
the CLI flags took plain seconds before they took units, so ``parse_seconds`` keeps
accepting ``--duration 90`` on top of the same syntax instead of growing a second parser.
"""

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.ASCII)
_BARE = re.compile(r"^\s*\d+(?:\.\d+)?\s*$", re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a ValueError names the bad value instead of guessing."""
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 500ms, 30s, 15m, 24h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_seconds(text: str) -> float:
    """``parse_duration``, plus a bare number meaning seconds (``90`` is ``90s``): for
    command-line flags, never for settings."""
    return parse_duration(f"{text.strip()}s" if _BARE.match(text) else text)


def format_duration(seconds: float) -> str:
    """A canonical exact spelling: ``24h`` as the SPEC writes it, days only from a week."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        big_enough = seconds >= (7 * size if unit == "d" else size)
        if big_enough and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
