"""Every KPI, defined once: name, numerator, denominator, scale, unit, description.

Redis fields, Prometheus gauges, the HTTP output and the README table are all derived
from ``KPIS``, so adding a KPI is one line here. The functions are pure over a counts
vector: a zero denominator gives ``None`` (absent), never 0 or infinity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from .counts import INDEX, MICROS, MONEY_FIELDS


class Unit(Enum):
    RATIO = "ratio"  # a fraction: 0.125, not 12.5 %
    MONEY = "money"  # reporting currency per unit of the denominator


@dataclass(frozen=True)
class Kpi:
    name: str
    numerator: tuple[tuple[int, str], ...]  # (sign, count field) terms, summed
    denominator: str
    unit: Unit
    description: str
    scale: int = 1

    @property
    def gauge_name(self) -> str:
        suffix = "_ratio" if self.unit is Unit.RATIO else ""
        return f"marketing_{self.name}{suffix}"

    @property
    def formula(self) -> str:
        terms = " ".join(
            f"{'-' if sign < 0 else '+'} {field}" for sign, field in self.numerator
        ).removeprefix("+ ")
        scaled = f"{self.scale} * " if self.scale != 1 else ""
        top = f"({terms})" if len(self.numerator) > 1 else terms
        return f"{scaled}{top} / {self.denominator}"


def _k(name: str, num: str, den: str, unit: Unit, doc: str, scale: int = 1) -> Kpi:
    terms = tuple((-1, t[1:]) if t.startswith("-") else (1, t) for t in num.split())
    return Kpi(name, terms, den, unit, doc, scale)


R, M = Unit.RATIO, Unit.MONEY
KPIS: tuple[Kpi, ...] = (
    _k("ctr", "clicks", "impressions", R, "click-through rate"),
    _k("open_rate", "opens", "email_impressions", R, "e-mails opened / delivered"),
    _k("ctor", "email_clicks", "opens", R, "click-to-open rate"),
    _k("conversion_rate", "signups", "clicks", R, "sign-ups per click (visitor)"),
    _k("mql_to_sql", "sql", "mql", R, "MQL→SQL ratio"),
    _k("lead_to_customer", "new_customers", "signups", R, "new customers per lead"),
    _k("win_rate", "won", "opportunities", R, "opportunities won"),
    _k("cpl", "spend", "signups", M, "cost per lead (a sign-up is a lead)"),
    _k("cpc", "spend", "clicks", M, "cost per click"),
    _k("cpm", "spend", "impressions", M, "cost per thousand impressions", 1000),
    _k("cost_per_mql", "spend", "mql", M, "cost per MQL"),
    _k("cost_per_sql", "spend", "sql", M, "cost per SQL"),
    _k("cost_per_opportunity", "spend", "opportunities", M, "cost per opportunity"),
    _k("cac", "spend", "new_customers", M, "customer acquisition cost"),
    _k("aov", "revenue", "purchases", M, "average order value"),
    _k("roas", "revenue", "spend", R, "return on ad spend"),
    _k("romi", "revenue -spend", "spend", R, "return on marketing investment"),
)
BY_NAME: Mapping[str, Kpi] = {kpi.name: kpi for kpi in KPIS}
MONEY_DECIMALS = 6


def compute(kpi: Kpi, counts: Sequence[int]) -> float | None:
    """One KPI over raw counts; None when the denominator is zero."""
    denominator = counts[INDEX[kpi.denominator]]
    if denominator == 0:
        return None
    numerator = sum(sign * counts[INDEX[field]] for sign, field in kpi.numerator)
    # Both sides in the same units cancel the micro-unit scale unless exactly one is money.
    num_money = kpi.numerator[0][1] in MONEY_FIELDS
    den_money = kpi.denominator in MONEY_FIELDS
    if num_money and not den_money:
        value = numerator * kpi.scale / (denominator * MICROS)
    else:
        value = numerator * kpi.scale / denominator
    return round(value, MONEY_DECIMALS) if kpi.unit is Unit.MONEY else value


def compute_all(counts: Sequence[int]) -> dict[str, float]:
    """Every defined KPI (those with a zero denominator are left out)."""
    values = {}
    for kpi in KPIS:
        value = compute(kpi, counts)
        if value is not None:
            values[kpi.name] = value
    return values
