"""``funnelpulse top`` rendering: a pure function of the Redis hashes, tested without Redis."""

from __future__ import annotations

import argparse

import pytest

from funnelpulse.top import (
    ABSENT,
    COLUMNS,
    TABLE_WIDTH,
    Row,
    failure_line,
    order,
    redact,
    render,
    window_name,
)

NOW = 1_800_000_000.0


def _table(frame: str) -> list[str]:
    """The header, the rule and the data lines (the title is above a blank line)."""
    return frame.split("\n\n", 1)[1].splitlines()


def _row(frame: str, scope: str) -> list[str]:
    line = next(line for line in _table(frame) if line.startswith(scope + " "))
    return line.split()


def _full(scope: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {"scope": scope, "impressions": "1000", "clicks": "50"}
    return {**row, **fields}


def test_absent_kpis_show_a_dash_never_zero() -> None:
    row = {"scope": "all", "impressions": "0", "clicks": "0", "signups": "0", "spend": "12.5"}
    cells = _row(render([row], "5m", NOW), "all")
    assert cells == ["all", "0", "0", ABSENT, "0", ABSENT, ABSENT, "12.50", ABSENT, ABSENT, ABSENT]


def test_values_from_redis_strings_are_formatted() -> None:
    row = {
        "scope": "campaign:spring-sale",
        "impressions": "1234567",
        "clicks": "40000",
        "ctr": "0.0324",
        "signups": "1500",
        "conversion_rate": "0.0375",
        "mql_to_sql": "0.5",
        "spend": "20350.125",
        "cpl": "13.566750",
        "cac": "1017.5",
        "roas": "3.2",
    }
    assert _row(render([row], "5m", NOW), "campaign:spring-sale") == [
        "campaign:spring-sale",
        "1,234,567",
        "40,000",
        "3.24",
        "1,500",
        "3.75",
        "50.00",
        "20,350.12",
        "13.57",
        "1,017.50",
        "3.20",
    ]


def test_money_has_two_decimals() -> None:
    row = {"scope": "all", "spend": 7, "cpl": 0.005, "cac": 1234.5}
    cells = _row(render([row], "5m", NOW), "all")
    assert cells[7:10] == ["7.00", "0.01", "1,234.50"]


def test_unreadable_values_are_absent_not_an_error() -> None:
    row = {"scope": "all", "impressions": "nan", "clicks": "lots", "ctr": "inf", "spend": None}
    assert _row(render([row], "5m", NOW), "all")[1:4] == [ABSENT, ABSENT, ABSENT]


def test_all_then_channels_then_campaigns_by_spend_then_impressions() -> None:
    rows: list[Row] = [
        _full("campaign:cheap", spend="1"),
        _full("campaign:big", spend="900"),
        _full("channel:email", spend="5"),
        _full("campaign:loud", spend="1", impressions="99999"),
        _full("campaign:free"),
        _full("channel:display", spend="50"),
        _full("all", spend="1000"),
    ]
    scopes = [line.split()[0] for line in _table(render(rows, "5m", NOW))[2:]]
    assert scopes == [
        "all",
        "channel:display",
        "channel:email",
        "campaign:big",
        "campaign:loud",
        "campaign:cheap",
        "campaign:free",
    ]


def test_limit_caps_campaigns_and_says_how_many_are_hidden() -> None:
    rows: list[Row] = [_full("all"), _full("channel:video")]
    rows += [_full(f"campaign:c{i:02d}", spend=str(i)) for i in range(30)]
    shown, hidden = order(rows, limit=5)
    assert [r["scope"] for r in shown] == [
        "all",
        "channel:video",
        "campaign:c29",
        "campaign:c28",
        "campaign:c27",
        "campaign:c26",
        "campaign:c25",
    ]
    assert hidden == 25
    frame = render(rows, "5m", NOW, limit=5)
    assert "25 more campaign" in frame
    assert "more campaign" not in render(rows, "5m", NOW, limit=None)


def test_width_is_stable_whatever_the_values() -> None:
    rows: list[Row] = [
        {"scope": "all"},
        _full("channel:email", ctr="0.05", spend="3.5"),
        _full(
            "campaign:" + "a-very-long-campaign-name-" * 4,
            impressions="123456789012345",
            clicks="98765432109",
            ctr="123.456",
            signups="1e30",
            conversion_rate="0.999999",
            mql_to_sql="77777",
            spend="98765432109876.54",
            cpl="1234567.891",
            cac="-99999999.5",
            roas="123456.7",
        ),
    ]
    table = _table(render(rows, "15m", NOW))
    assert table, "no table"
    assert {len(line) for line in table} == {TABLE_WIDTH}
    assert table[1] == "─" * TABLE_WIDTH
    assert "…" in table[-1]


def test_header_names_every_column() -> None:
    header = _table(render([], "5m", NOW))[0]
    assert header.split()[0] == "scope"
    for column in COLUMNS:
        assert column.header in header


def test_title_shows_window_time_scopes_and_data_age() -> None:
    title = render([{"scope": "all", "updated_at": str(NOW - 3)}], "1h", NOW).splitlines()[0]
    assert "window 1h" in title
    assert "2027-01-15 08:00:00 UTC" in title
    assert "1 scopes" in title
    assert "3 s ago" in title


def test_no_data_says_so() -> None:
    frame = render([], "5m", NOW)
    assert "no KPIs for window 5m" in frame
    assert "\x1b" not in frame  # escape codes are the screen's business, not render's


def test_render_is_deterministic() -> None:
    rows: list[Row] = [_full("campaign:b", spend="2"), _full("all"), _full("campaign:a")]
    assert render(rows, "5m", NOW) == render(list(reversed(rows)), "5m", NOW)


def test_window_names_are_canonical() -> None:
    assert window_name("300s") == "5m"
    assert window_name("1h") == "1h"
    with pytest.raises(argparse.ArgumentTypeError):
        window_name("5 minutes")


def test_failure_is_one_line_without_the_password() -> None:
    exc = ConnectionError("Error 111 connecting\nto 127.0.0.1:6390.\n")
    line = failure_line("redis://:hunter2@127.0.0.1:6390/0", exc, 1.0)
    assert "\n" not in line
    assert "hunter2" not in line
    assert "redis://:***@127.0.0.1:6390/0" in line
    assert "retrying every 1 s" in line
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
