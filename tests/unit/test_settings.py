import dataclasses
import re
from decimal import Decimal

import pytest

from funnelpulse.names import NAMED_TOPICS, topic_variable
from funnelpulse.settings import Settings, SettingsError, parse_fx_rates, variables
from streams.events import CHANNELS, DEFAULT_CHANNEL_ALIASES, TOPIC_SUFFIX, EventType
from streams.topics import TopicNames


def test_defaults_match_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.topic_prefix == "mkt."
    assert settings.redis_prefix == "mkt:"
    assert settings.windows == ("1m", "5m", "15m", "1h", "24h")
    assert settings.reporting_currency == "USD"
    assert settings.web_port == 6066
    assert settings.fx_rates["USD"] == Decimal(1)
    assert settings.horizon == 35 * 86_400  # issue 16
    assert settings.dedup_horizon == 7 * 86_400


def test_week_and_month_windows_are_accepted_up_to_the_horizon() -> None:
    settings = Settings.from_env({"FUNNELPULSE_WINDOWS": "15m,24h,7d,30d"})
    assert settings.windows == ("15m", "24h", "7d", "30d")
    tight = {"FUNNELPULSE_WINDOWS": "15m,24h,30d", "FUNNELPULSE_HORIZON": "721h"}
    assert Settings.from_env(tight).horizon == 30 * 86_400 + 3600


def test_dataclass_defaults_equal_environment_defaults() -> None:
    assert Settings() == Settings.from_env({})


def test_every_setting_is_documented_once() -> None:
    names = [var.name for var in variables()]
    assert len(names) == len(set(names))
    assert all(var.doc for var in variables())


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
        ({"FUNNELPULSE_HORIZON": "1h"}, "shorter than the longest window"),
        ({"FUNNELPULSE_HORIZON": "24h"}, "shorter than the longest window"),
        (
            {"FUNNELPULSE_WINDOWS": "15m,24h,30d", "FUNNELPULSE_HORIZON": "30d"},
            "shorter than the longest window",
        ),
        ({"FUNNELPULSE_HORIZON": "3d"}, "shorter than FUNNELPULSE_DEDUP_HORIZON"),
        ({"FUNNELPULSE_DEDUP_HORIZON": "36d"}, "shorter than FUNNELPULSE_DEDUP_HORIZON"),
        ({"FUNNELPULSE_RETENTION": "25h"}, "FUNNELPULSE_RETENTION"),  # renamed: never ignored
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


def test_topics_are_named_one_by_one_or_by_prefix() -> None:
    settings = Settings.from_env({
        "FUNNELPULSE_TOPIC_PREFIX": "acme.", "FUNNELPULSE_TOPIC_CLICKS": "clicks",
        "FUNNELPULSE_TOPIC_LEAD_STAGES": "crm.lead-stages", "FUNNELPULSE_TOPIC_DEAD_LETTER": "dlq",
    })  # fmt: skip
    names = TopicNames.from_settings(settings)
    assert names.inputs[EventType.CLICK] == "clicks"
    assert names.inputs[EventType.LEAD_STAGE] == "crm.lead-stages"
    assert names.inputs[EventType.OPEN] == "acme.opens"
    assert (names.dead_letter, names.kpis, names.alerts) == ("dlq", "acme.kpis", "acme.alerts")
    assert names.type_of("clicks") is EventType.CLICK
    assert names.funnel == "funnelpulse-funnel"  # internal topics follow the app id


def test_every_named_topic_has_its_documented_variable() -> None:
    documented = {var.name for var in variables()}
    assert {topic_variable(suffix) for suffix in NAMED_TOPICS} <= documented
    assert topic_variable("lead-stages") == "FUNNELPULSE_TOPIC_LEAD_STAGES"
    assert set(NAMED_TOPICS) >= set(TOPIC_SUFFIX.values())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FUNNELPULSE_TOPIC_CLICKS": "my clicks"}, "FUNNELPULSE_TOPIC_CLICKS='my clicks' is not"),
        ({"FUNNELPULSE_TOPIC_OPENS": ".."}, "not a Kafka topic name"),
        ({"FUNNELPULSE_TOPIC_OPENS": "mkt.clicks"},
         "FUNNELPULSE_TOPIC_OPENS and FUNNELPULSE_TOPIC_CLICKS both name topic 'mkt.clicks'"),
        ({"FUNNELPULSE_CHANNELS": "pod cast"}, "FUNNELPULSE_CHANNELS: 'pod cast'"),
        ({"FUNNELPULSE_CHANNEL_ALIASES": "cpc"}, "'cpc' is not alias=channel"),
        ({"FUNNELPULSE_CHANNEL_ALIASES": "pod=podcast"}, "names no channel"),
        ({"FUNNELPULSE_CHANNEL_ALIASES": "email=display"}, "'email' is a channel itself"),
    ],
)  # fmt: skip
def test_bad_topic_and_channel_settings_name_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_channels_and_aliases() -> None:
    defaults = Settings.from_env({})
    assert set(defaults.channels) == CHANNELS
    assert defaults.channel_aliases == DEFAULT_CHANNEL_ALIASES
    assert defaults.channel_table()["cpc"] == "paid_search"
    settings = Settings.from_env({
        "FUNNELPULSE_CHANNELS": "Podcast, tv",
        "FUNNELPULSE_CHANNEL_ALIASES": "pod=podcast, CPC=paid_search",
    })  # fmt: skip
    assert set(settings.channels) == {*CHANNELS, "podcast", "tv"}
    assert settings.channel_aliases == {"pod": "podcast", "cpc": "paid_search"}  # replaced
    table = settings.channel_table()
    assert (table["pod"], table["tv"], table["email"]) == ("podcast", "tv", "email")
    assert "social" not in table


def test_every_field_is_declared_by_its_variables_and_defaults_parse_alike() -> None:
    assert all(f.metadata.get("vars") for f in dataclasses.fields(Settings))
    assert Settings.from_env({}) == Settings()  # one default, parsed one way


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("FUNNELPULSE_PARTITONS", "FUNNELPULSE_PARTITIONS"),
     ("FUNNELPULSE_KPI_TTLS", "FUNNELPULSE_KPI_TTL"),
     ("FUNNELPULSE_REDIS_PASWORD", "FUNNELPULSE_REDIS_PASSWORD")],
)  # fmt: skip
def test_a_misspelled_variable_fails_and_names_the_setting(typo: str, meant: str) -> None:
    with pytest.raises(
        SettingsError, match=f"{typo} is not a funnelpulse setting: did you mean {meant}"
    ):
        Settings.from_env({typo: "8"})


def test_an_unknown_variable_far_from_any_setting_points_to_the_readme() -> None:
    with pytest.raises(SettingsError, match=r"FUNNELPULSE_ZZZ is not a funnelpulse setting \("):
        Settings.from_env({"FUNNELPULSE_ZZZ": "blue"})


def test_the_scripts_and_tests_variables_are_not_settings_but_allowed() -> None:
    assert Settings.from_env({"FUNNELPULSE_STACK_DIR": "/tmp/x", "FUNNELPULSE_FAULTS": "full"})
