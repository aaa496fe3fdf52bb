import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1),
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        (" 2h ", 7200),
        ("1.5s", 1.5),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "-1m", "1w", "1 m s", "1e3s", "\u0661m"])
def test_parse_rejects_with_the_value_named(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "1m"),
        (3600, "1h"),
        (86400, "24h"),
        (604800, "7d"),
        (172800, "48h"),
        (90, "90s"),
        (0.25, "250ms"),
    ],
)
def test_format_is_shortest_exact(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(["s", "m", "h", "d"]))
def test_format_parse_round_trip(amount: int, unit: str) -> None:
    seconds = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds
