"""KPI formulas over raw counts (SPEC §2) and money in integer micro-units."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.counts import (
    COUNT_FIELDS,
    INDEX,
    MICROS,
    MONEY_FIELDS,
    WIDTH,
    Counts,
    add_into,
    summed,
    to_micros,
    zero,
)
from metrics.kpis import BY_NAME, KPIS, MONEY_DECIMALS, Kpi, Unit, compute, compute_all

USD = MICROS  # one unit of the reporting currency, in micros


def counts(**fields: int) -> Counts:
    """A counts vector; money fields (revenue, spend) are given in micro-units."""
    vector = zero()
    for name, value in fields.items():
        vector[INDEX[name]] = value
    return vector


# (kpi, counts, expected) — every expected value computed by hand from SPEC §2.
# Money KPIs are in reporting-currency units rounded to 6 decimals; ratios are fractions.
KPI_CASES: list[tuple[str, dict[str, int], float | None]] = [
    # ctr = clicks / impressions
    ("ctr", {"clicks": 25, "impressions": 1000}, 0.025),
    ("ctr", {"clicks": 0, "impressions": 10}, 0.0),
    ("ctr", {"clicks": 7, "impressions": 0}, None),
    ("ctr", {}, None),
    # open_rate = opens / impressions(channel=email)
    ("open_rate", {"opens": 30, "email_impressions": 120, "impressions": 5000}, 0.25),
    ("open_rate", {"opens": 30, "email_impressions": 0, "impressions": 5000}, None),
    # ctor = clicks(channel=email) / opens
    ("ctor", {"email_clicks": 6, "clicks": 500, "opens": 30}, 0.2),
    ("ctor", {"email_clicks": 6, "opens": 0}, None),
    # conversion_rate = signups / clicks
    ("conversion_rate", {"signups": 3, "clicks": 40}, 0.075),
    ("conversion_rate", {"signups": 3, "clicks": 0}, None),
    # mql_to_sql = sql / mql
    ("mql_to_sql", {"sql": 1, "mql": 8}, 0.125),
    ("mql_to_sql", {"sql": 2, "mql": 0}, None),
    # lead_to_customer = new_customers / signups
    ("lead_to_customer", {"new_customers": 2, "purchases": 9, "signups": 50}, 0.04),
    ("lead_to_customer", {"new_customers": 2, "signups": 0}, None),
    # win_rate = won / opportunities
    ("win_rate", {"won": 3, "lost": 4, "opportunities": 12}, 0.25),
    ("win_rate", {"won": 3, "opportunities": 0}, None),
    # cpl = spend / signups
    ("cpl", {"spend": 250 * USD, "signups": 8}, 31.25),
    ("cpl", {"spend": 100 * USD, "signups": 3}, 33.333333),
    ("cpl", {"spend": 0, "signups": 5}, 0.0),
    ("cpl", {"spend": 100 * USD, "signups": 0}, None),
    # cpc = spend / clicks
    ("cpc", {"spend": 12_340_000, "clicks": 100}, 0.1234),
    ("cpc", {"spend": 2 * USD, "clicks": 3}, 0.666667),  # 0.6666666… rounds up
    ("cpc", {"spend": 1, "clicks": 3}, 0.0),  # a third of a micro rounds to 0
    ("cpc", {"spend": 5 * USD, "clicks": 0}, None),
    # cpm = 1000 x spend / impressions
    ("cpm", {"spend": 5 * USD, "impressions": 2000}, 2.5),
    ("cpm", {"spend": 1, "impressions": 3}, 0.000333),
    ("cpm", {"spend": 5 * USD, "impressions": 0}, None),
    # cost_per_mql / cost_per_sql / cost_per_opportunity = spend / that count
    ("cost_per_mql", {"spend": 1000 * USD, "mql": 7}, 142.857143),
    ("cost_per_mql", {"spend": 1000 * USD, "mql": 0}, None),
    ("cost_per_sql", {"spend": 1000 * USD, "sql": 4}, 250.0),
    ("cost_per_sql", {"spend": 1000 * USD, "sql": 0}, None),
    ("cost_per_opportunity", {"spend": 999_999_999, "opportunities": 1}, 999.999999),
    ("cost_per_opportunity", {"spend": 1000 * USD, "opportunities": 0}, None),
    # cac = spend / new_customers
    ("cac", {"spend": 10_000 * USD, "new_customers": 3, "purchases": 10}, 3333.333333),
    ("cac", {"spend": 10_000 * USD, "new_customers": 0, "purchases": 10}, None),
    # aov = revenue / purchases
    ("aov", {"revenue": 149_990_000, "purchases": 2}, 74.995),
    ("aov", {"revenue": 100 * USD, "purchases": 7}, 14.285714),
    ("aov", {"revenue": 100 * USD, "purchases": 0}, None),
    # roas = revenue / spend (a ratio: same units cancel, no rounding)
    ("roas", {"revenue": 450 * USD, "spend": 100 * USD}, 4.5),
    ("roas", {"revenue": 1 * USD, "spend": 3 * USD}, 1 / 3),
    ("roas", {"revenue": 0, "spend": 100 * USD}, 0.0),
    ("roas", {"revenue": 450 * USD, "spend": 0}, None),
    # romi = (revenue - spend) / spend
    ("romi", {"revenue": 450 * USD, "spend": 100 * USD}, 3.5),
    ("romi", {"revenue": 50 * USD, "spend": 100 * USD}, -0.5),
    ("romi", {"revenue": 0, "spend": 100 * USD}, -1.0),
    ("romi", {"revenue": 450 * USD, "spend": 0}, None),
]


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    KPI_CASES,
    ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(KPI_CASES)],
)
def test_kpi_values(name: str, fields: dict[str, int], expected: float | None) -> None:
    vector = counts(**fields)
    value = compute(BY_NAME[name], vector)
    if expected is None:
        assert value is None
        assert name not in compute_all(vector)
    else:
        assert value == expected
        assert compute_all(vector)[name] == expected


def test_the_table_covers_every_kpi_with_a_value_and_a_zero_denominator() -> None:
    spec = {
        "ctr", "open_rate", "ctor", "conversion_rate", "mql_to_sql", "lead_to_customer",
        "win_rate", "cpl", "cpc", "cpm", "cost_per_mql", "cost_per_sql",
        "cost_per_opportunity", "cac", "aov", "roas", "romi",
    }  # fmt: skip
    assert set(BY_NAME) == spec
    assert len(KPIS) == len(spec)
    defined = {name for name, _, expected in KPI_CASES if expected is not None}
    undefined = {name for name, _, expected in KPI_CASES if expected is None}
    assert defined == spec
    assert undefined == spec


@pytest.mark.parametrize("kpi", KPIS, ids=lambda kpi: kpi.name)
def test_every_kpi_field_is_a_count_field(kpi: Kpi) -> None:
    fields = [field for _, field in kpi.numerator]
    assert fields
    assert all(field in COUNT_FIELDS for field in fields)
    assert kpi.denominator in COUNT_FIELDS
    assert all(sign in (1, -1) for sign, _ in kpi.numerator)
    assert kpi.scale >= 1


def test_count_fields_are_the_raw_counts_of_the_spec() -> None:
    # SPEC §3: the raw counts stored next to the KPIs in every Redis hash.
    assert COUNT_FIELDS == (
        "impressions", "email_impressions", "clicks", "email_clicks", "opens", "signups",
        "mql", "sql", "opportunities", "won", "lost", "purchases", "new_customers",
        "revenue", "spend",
    )  # fmt: skip
    assert WIDTH == len(COUNT_FIELDS) == len(set(COUNT_FIELDS))
    assert {"revenue", "spend"} == MONEY_FIELDS
    assert all(COUNT_FIELDS[i] == name for name, i in INDEX.items())


@pytest.mark.parametrize(
    ("name", "gauge"),
    [
        ("ctr", "marketing_ctr_ratio"),
        ("cpl", "marketing_cpl"),
        ("mql_to_sql", "marketing_mql_to_sql_ratio"),
        ("roas", "marketing_roas_ratio"),
        ("romi", "marketing_romi_ratio"),
        ("cpm", "marketing_cpm"),
        ("open_rate", "marketing_open_rate_ratio"),
    ],
)
def test_gauge_names(name: str, gauge: str) -> None:
    assert BY_NAME[name].gauge_name == gauge


def test_gauge_names_are_unique_and_suffixed_by_unit() -> None:
    names = [kpi.gauge_name for kpi in KPIS]
    assert len(set(names)) == len(names)
    for kpi in KPIS:
        assert kpi.gauge_name.startswith("marketing_")
        assert kpi.gauge_name.endswith("_ratio") == (kpi.unit is Unit.RATIO)


def test_money_kpis_are_those_with_money_over_a_count() -> None:
    for kpi in KPIS:
        money_top = kpi.numerator[0][1] in MONEY_FIELDS
        money_bottom = kpi.denominator in MONEY_FIELDS
        assert (kpi.unit is Unit.MONEY) == (money_top and not money_bottom), kpi.name


def test_compute_all_of_nothing_is_empty() -> None:
    assert compute_all(zero()) == {}


def test_compute_all_leaves_out_only_the_undefined() -> None:
    vector = counts(impressions=1000, clicks=10, spend=50 * USD)
    assert compute_all(vector) == {
        "ctr": 0.01,
        "conversion_rate": 0.0,  # 0 signups / 10 clicks: defined, and 0
        "cpc": 5.0,
        "cpm": 50.0,
        "roas": 0.0,
        "romi": -1.0,
    }


# --- money in micro-units --------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "micros"),
    [
        ("10.00", 10_000_000),
        ("0", 0),
        ("0.000001", 1),
        ("0.0000005", 0),  # half to even: 0.5 micro -> 0
        ("0.0000015", 2),  # 1.5 -> 2
        ("0.0000025", 2),  # 2.5 -> 2
        ("0.0000035", 4),  # 3.5 -> 4
        ("0.00000050001", 1),  # just above half -> up
        ("0.00000149999", 1),  # just below half -> down
        ("1.2345675", 1_234_568),
        ("1.2345665", 1_234_566),
        ("-0.0000015", -2),
        ("1000000000000", 10**18),
    ],
)
def test_to_micros_rounds_half_to_even(amount: str, micros: int) -> None:
    assert to_micros(Decimal(amount)) == micros
    assert isinstance(to_micros(Decimal(amount)), int)


def test_add_into_and_summed() -> None:
    total = counts(clicks=1, spend=5)
    same = add_into(total, counts(clicks=2, revenue=7))
    assert same is total
    assert total == counts(clicks=3, spend=5, revenue=7)
    assert summed([counts(opens=1), counts(opens=2, won=1), zero()]) == counts(opens=3, won=1)
    assert summed([]) == zero()


# --- properties ------------------------------------------------------------------------

count_values = st.one_of(st.just(0), st.integers(min_value=0, max_value=10**12))
vectors = st.lists(count_values, min_size=WIDTH, max_size=WIDTH)
RATIO_KPIS = [kpi for kpi in KPIS if kpi.unit is Unit.RATIO]


@settings(max_examples=200)
@given(vectors)
def test_compute_all_is_always_finite(vector: list[int]) -> None:
    values = compute_all(vector)
    for name, value in values.items():
        assert isinstance(value, float), name
        assert math.isfinite(value), name


@settings(max_examples=200)
@given(vectors)
def test_a_kpi_is_none_iff_its_denominator_is_zero(vector: list[int]) -> None:
    values = compute_all(vector)
    for kpi in KPIS:
        zero_denominator = vector[INDEX[kpi.denominator]] == 0
        assert (compute(kpi, vector) is None) == zero_denominator, kpi.name
        assert (kpi.name not in values) == zero_denominator, kpi.name


@settings(max_examples=200)
@given(vectors, st.integers(min_value=1, max_value=10**6))
def test_scaling_every_count_leaves_ratios_unchanged(vector: list[int], k: int) -> None:
    scaled = [value * k for value in vector]
    for kpi in RATIO_KPIS:
        before, after = compute(kpi, vector), compute(kpi, scaled)
        if before is None:
            assert after is None
        else:
            assert after == pytest.approx(before, rel=1e-12, abs=0.0)


@settings(max_examples=200)
@given(vectors)
def test_money_kpis_have_at_most_six_decimals(vector: list[int]) -> None:
    for kpi in KPIS:
        value = compute(kpi, vector)
        if kpi.unit is Unit.MONEY and value is not None:
            assert value == round(value, MONEY_DECIMALS)


@settings(max_examples=200)
@given(st.decimals(min_value=-(10**12), max_value=10**12, places=6, allow_nan=False))
def test_to_micros_round_trips_whole_micros(amount: Decimal) -> None:
    micros = to_micros(amount)
    assert Decimal(micros) / MICROS == amount
    assert Decimal(micros) == amount * MICROS


@settings(max_examples=200)
@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_whole_micros_round_trip(micros: int) -> None:
    assert to_micros(Decimal(micros) / MICROS) == micros


@settings(max_examples=200)
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_to_micros_half_micro_goes_to_the_even_neighbour(micros: int) -> None:
    half_above = (Decimal(micros) + Decimal("0.5")) / MICROS
    rounded = to_micros(half_above)
    assert rounded in (micros, micros + 1)
    assert rounded % 2 == 0


@settings(max_examples=200)
@given(
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False),
)
def test_to_micros_is_within_half_a_micro(amount: Decimal) -> None:
    assert abs(Decimal(to_micros(amount)) - amount * MICROS) <= Decimal("0.5")
