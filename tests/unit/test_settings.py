from decimal import Decimal

import pytest

from funnelpulse.settings import SETTINGS_DOC, Settings, SettingsError, parse_fx_rates


def test_defaults_match_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.topic_prefix == "mkt."
    assert settings.redis_prefix == "mkt:"
    assert settings.windows == ("1m", "5m", "15m", "1h", "24h")
    assert settings.reporting_currency == "USD"
    assert settings.web_port == 6066
    assert settings.fx_rates["USD"] == Decimal(1)


def test_dataclass_defaults_equal_environment_defaults() -> None:
    assert Settings() == Settings.from_env({})


def test_every_setting_is_documented_once() -> None:
    names = [var.name for var in SETTINGS_DOC]
    assert len(names) == len(set(names))
    assert all(var.doc for var in SETTINGS_DOC)


def test_windows_are_canonical_and_sorted() -> None:
    settings = Settings.from_env({"FUNNELPULSE_WINDOWS": "60m, 1m,300s,1d,900s"})
    assert settings.windows == ("1m", "5m", "15m", "1h", "24h")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FUNNELPULSE_PARTITIONS": "four"}, "FUNNELPULSE_PARTITIONS='four'"),
        ({"FUNNELPULSE_PARTITIONS": "0"}, "outside"),
        ({"FUNNELPULSE_WINDOWS": "30s"}, "whole minutes"),
        ({"FUNNELPULSE_WINDOWS": "5x"}, "not a duration"),
        ({"FUNNELPULSE_PUBLISH_INTERVAL": "soon"}, "FUNNELPULSE_PUBLISH_INTERVAL"),
        ({"FUNNELPULSE_REPORTING_CURRENCY": "dollars"}, "ISO 4217"),
        ({"FUNNELPULSE_FX_RATES": "EUR=abc"}, "CODE=rate"),
        ({"FUNNELPULSE_FX_RATES": "EUR=-1"}, "rate > 0"),
        ({"FUNNELPULSE_LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"FUNNELPULSE_RETENTION": "1h"}, "shorter than the longest window"),
        ({"FUNNELPULSE_CPL_SHORT_WINDOW": "10m"}, "is not one of FUNNELPULSE_WINDOWS"),
        ({"FUNNELPULSE_CPL_FACTOR": "two"}, "FUNNELPULSE_CPL_FACTOR='two' is not a number"),
        ({"FUNNELPULSE_CPL_FACTOR": "nan"}, "finite number"),
        ({"FUNNELPULSE_CPL_CLEAR_FACTOR": "3"}, "must not exceed"),
        ({"FUNNELPULSE_CPL_MIN_SPEND": "-1"}, "finite number >= 0"),
        ({"FUNNELPULSE_WEB_URL": "worker-0:6066"}, "http:// or https:// URL with a host"),
        ({"FUNNELPULSE_WEB_URL": "http://"}, "FUNNELPULSE_WEB_URL"),
    ],
)
def test_bad_settings_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_fx_rates_include_reporting_currency_at_one() -> None:
    rates = parse_fx_rates("eur=1.1, GBP=1.25", "EUR")
    assert rates == {"EUR": Decimal(1), "GBP": Decimal("1.25")}
