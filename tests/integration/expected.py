"""KPIs from raw counts, written again from SPEC §2 for the tests (not imported)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

M = 1_000_000.0
Formula = Callable[[Mapping[str, int]], tuple[float, float]]  # (numerator, denominator)

RATIOS: dict[str, Formula] = {
    "ctr": lambda c: (c["clicks"], c["impressions"]),
    "open_rate": lambda c: (c["opens"], c["email_impressions"]),
    "ctor": lambda c: (c["email_clicks"], c["opens"]),
    "conversion_rate": lambda c: (c["signups"], c["clicks"]),
    "mql_to_sql": lambda c: (c["sql"], c["mql"]),
    "lead_to_customer": lambda c: (c["new_customers"], c["signups"]),
    "win_rate": lambda c: (c["won"], c["opportunities"]),
    "roas": lambda c: (c["revenue"], c["spend"]),
    "romi": lambda c: (c["revenue"] - c["spend"], c["spend"]),
}
MONEY: dict[str, Formula] = {
    "cpl": lambda c: (c["spend"] / M, c["signups"]),
    "cpc": lambda c: (c["spend"] / M, c["clicks"]),
    "cpm": lambda c: (1000 * c["spend"] / M, c["impressions"]),
    "cost_per_mql": lambda c: (c["spend"] / M, c["mql"]),
    "cost_per_sql": lambda c: (c["spend"] / M, c["sql"]),
    "cost_per_opportunity": lambda c: (c["spend"] / M, c["opportunities"]),
    "cac": lambda c: (c["spend"] / M, c["new_customers"]),
    "aov": lambda c: (c["revenue"] / M, c["purchases"]),
}


def expected_kpis(counts: Mapping[str, int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, formula in {**RATIOS, **MONEY}.items():
        num, den = formula(counts)
        out[name] = None if den == 0 else num / den
    return out


def tolerance(name: str) -> float:
    return 1e-9 if name in RATIOS else 2e-6  # money KPIs are published to 6 decimals
