"""The raw counters every KPI is computed from, as one fixed-order vector.

Tables store raw counts, never ratios: counts add up across panes, partitions and
workers; ratios do not. Money is kept as integer micro-units of the reporting currency
(1 USD = 1,000,000), so sums are exact and a recount can match them to the cent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

COUNT_FIELDS: tuple[str, ...] = (
    "impressions",
    "email_impressions",
    "clicks",
    "email_clicks",
    "opens",
    "signups",
    "mql",
    "sql",
    "opportunities",
    "won",
    "lost",
    "purchases",
    "new_customers",
    "revenue",
    "spend",
)
MONEY_FIELDS = frozenset({"revenue", "spend"})
INDEX: Mapping[str, int] = {name: i for i, name in enumerate(COUNT_FIELDS)}
WIDTH = len(COUNT_FIELDS)
MICROS = 1_000_000

Counts = list[int]
"""A vector of WIDTH ints in COUNT_FIELDS order (money fields in micro-units)."""


def zero() -> Counts:
    return [0] * WIDTH


def add_into(total: Counts, delta: Sequence[int]) -> Counts:
    """Adds ``delta`` into ``total`` in place and returns it (the hot path of merging)."""
    for i, value in enumerate(delta):
        if value:
            total[i] += value
    return total


def summed(vectors: Iterable[Sequence[int]]) -> Counts:
    total = zero()
    for vector in vectors:
        add_into(total, vector)
    return total


def to_micros(amount: Decimal) -> int:
    """Money to integer micro-units, rounding half to even (the banker's rule)."""
    return int((amount * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
