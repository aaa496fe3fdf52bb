"""Secret values and the words for how to connect, which the settings parse into.

Apart from ``security.py`` (which builds clients' credentials *from* the settings), so
that the settings can name these types without importing the module that imports them.
A ``Secret``'s ``repr`` and ``str`` never show the value: only ``reveal()`` does, where a
client needs it; comparisons are constant-time.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit, urlunsplit

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class Secret:
    """A password or token: compared and used, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, offered: str) -> bool:
        """Constant-time comparison, so response timing does not leak the token."""
        return hmac.compare_digest(self._value.encode(), offered.encode())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def redact_url(url: str) -> str:
    """The URL without its password, fit for a log line or a message on screen."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
