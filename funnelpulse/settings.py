"""One typed, frozen settings object, read once from the environment.

Every knob is a ``FUNNELPULSE_*`` variable, plus the standard ``KAFKA_BOOTSTRAP_SERVERS``
and ``REDIS_URL``. Values are parsed strictly: a typo fails at start-up with the variable's
name, instead of running with a default nobody chose. The README's configuration table
is generated from ``SETTINGS_DOC`` below, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from metrics.alerts import CplSpikeRule
from metrics.durations import format_duration, parse_duration

from .credentials import KAFKA_PROTOCOLS, SASL_MECHANISMS, Secret, redact_url
from .names import CHANNELS, DEFAULT_CHANNEL_ALIASES, NAMED_TOPICS, channel_table, topic_variable


class SettingsError(ValueError):
    """A setting from the environment that cannot be used as given."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    doc: str


_ALIASES_TEXT = ",".join(f"{alias}={channel}" for alias, channel in DEFAULT_CHANNEL_ALIASES.items())

SETTINGS_DOC: tuple[EnvVar, ...] = (
    EnvVar("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...)"),
    EnvVar("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL (`rediss://` for TLS)"),
    EnvVar("FUNNELPULSE_APP_ID", "funnelpulse", "Faust app id (consumer group, state topics)"),
    EnvVar("FUNNELPULSE_TOPIC_PREFIX", "mkt.", "prefix of every input and output topic"),
    *(
        EnvVar(
            topic_variable(suffix),
            "",
            f"full name of the `{suffix}` topic, when not prefix + "
            f"`{suffix}` (an existing topic used as it is)",
        )
        for suffix in NAMED_TOPICS
    ),
    EnvVar("FUNNELPULSE_REDIS_PREFIX", "mkt:", "prefix of every Redis key and channel"),
    EnvVar("FUNNELPULSE_PARTITIONS", "4", "partitions of the input topics created by the worker"),
    EnvVar(
        "FUNNELPULSE_FUNNEL_PARTITIONS", "1", "partitions of the internal funnel topic (lead state)"
    ),
    EnvVar(
        "FUNNELPULSE_SNAPSHOT_INTERVAL", "100ms", "how often partial counts go to the merge stage"
    ),
    EnvVar(
        "FUNNELPULSE_BATCH_MAX_MESSAGES",
        "1000",
        "Kafka messages counted together (one table write per touched key, then one ack)",
    ),
    EnvVar("FUNNELPULSE_BATCH_WAIT", "20ms", "longest a message waits for its batch to fill"),
    EnvVar(
        "FUNNELPULSE_BATCH_WAIT_BACKLOG",
        "250ms",
        "the same while the worker reads a backlog (its messages are in Kafka already)",
    ),
    EnvVar("FUNNELPULSE_BATCH_MAX_BYTES", "1048576", "message bytes that close a batch early"),
    EnvVar("FUNNELPULSE_REPLICATION", "1", "replication factor of the topics the worker creates"),
    EnvVar("FUNNELPULSE_WINDOWS", "1m,5m,15m,1h,24h", "rolling KPI windows"),
    EnvVar("FUNNELPULSE_REPORTING_CURRENCY", "USD", "currency of all money outputs"),
    EnvVar(
        "FUNNELPULSE_FX_RATES",
        "EUR=1.08,GBP=1.27,JPY=0.0067,CAD=0.73,AUD=0.66,CHF=1.12,SEK=0.095",
        "reporting-currency value of one unit of each other currency",
    ),
    EnvVar(
        "FUNNELPULSE_CHANNELS",
        "",
        f"channels besides the built-in {', '.join(f'`{c}`' for c in sorted(CHANNELS))} "
        "(comma-separated, `[a-z0-9_]`, up to 32 characters)",
    ),
    EnvVar(
        "FUNNELPULSE_CHANNEL_ALIASES",
        _ALIASES_TEXT,
        "other names of channels, `alias=channel,...` (replaces this list); also maps "
        "`utm_medium` at the collector",
    ),
    EnvVar("FUNNELPULSE_DEDUP_HORIZON", "24h", "how long a repeated event_id is recognised"),
    EnvVar(
        "FUNNELPULSE_DEDUP_MAX_IDS", "2000000", "event_ids remembered per partition (memory cap)"
    ),
    EnvVar("FUNNELPULSE_RETENTION", "25h", "oldest event time accepted (older: dead letter)"),
    EnvVar("FUNNELPULSE_MAX_FUTURE", "5m", "newest event time accepted ahead of now"),
    EnvVar("FUNNELPULSE_PUBLISH_INTERVAL", "1s", "publish tick: Redis, Prometheus, mkt.kpis"),
    EnvVar("FUNNELPULSE_KPI_TTL", "48h", "TTL of the Redis KPI hashes"),
    EnvVar("FUNNELPULSE_MAX_CAMPAIGN_SERIES", "500", "campaigns with their own Prometheus series"),
    EnvVar("FUNNELPULSE_CPL_SHORT_WINDOW", "15m", "cpl_spike: window of the current CPL"),
    EnvVar("FUNNELPULSE_CPL_LONG_WINDOW", "24h", "cpl_spike: window of the baseline CPL"),
    EnvVar("FUNNELPULSE_CPL_FACTOR", "2.0", "cpl_spike fires above factor x baseline"),
    EnvVar("FUNNELPULSE_CPL_CLEAR_FACTOR", "1.5", "cpl_spike resolves under this x baseline"),
    EnvVar("FUNNELPULSE_CPL_MIN_LEADS", "20", "cpl_spike: leads needed in the baseline"),
    EnvVar("FUNNELPULSE_CPL_MIN_SPEND", "50", "cpl_spike: spend needed in the short window"),
    EnvVar("FUNNELPULSE_WEB_HOST", "127.0.0.1", "bind address of the HTTP server"),
    EnvVar("FUNNELPULSE_WEB_PORT", "6066", "port of the HTTP server"),
    EnvVar(
        "FUNNELPULSE_WEB_URL",
        "",
        "URL the other workers reach this one's HTTP server at (`/kpis`, `/alerts` routed to"
        " a scope's owner); unset: `http://<web host>:<port>`, with the host's FQDN when"
        " bound to `0.0.0.0`",
    ),
    EnvVar("FUNNELPULSE_DATA_DIR", "./funnelpulse-data", "Faust data folder (local table state)"),
    EnvVar("FUNNELPULSE_LOG_LEVEL", "info", "worker log level: debug, info, warn, error"),
    EnvVar(
        "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka protocol: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`",
    ),
    EnvVar(
        "FUNNELPULSE_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`",
    ),
    EnvVar("FUNNELPULSE_KAFKA_SASL_USERNAME", "", "SASL user (required with `SASL_*`)"),
    EnvVar("FUNNELPULSE_KAFKA_SASL_PASSWORD", "", "SASL password (secret, never printed)"),
    EnvVar(
        "FUNNELPULSE_KAFKA_SSL_CA_FILE", "", "PEM CA bundle for the brokers (default: system CAs)"
    ),
    EnvVar("FUNNELPULSE_KAFKA_SSL_CERT_FILE", "", "PEM client certificate (mutual TLS)"),
    EnvVar("FUNNELPULSE_KAFKA_SSL_KEY_FILE", "", "PEM private key of the client certificate"),
    EnvVar("FUNNELPULSE_REDIS_USERNAME", "", "Redis ACL user, when not in `REDIS_URL`"),
    EnvVar("FUNNELPULSE_REDIS_PASSWORD", "", "Redis password, when not in `REDIS_URL` (secret)"),
    EnvVar("FUNNELPULSE_REDIS_SSL_CA_FILE", "", "PEM CA bundle for `rediss://` (default: system)"),
    EnvVar(
        "FUNNELPULSE_COLLECTOR_TOKEN",
        "",
        "bearer token required by `POST /events/<type>` (16+ characters; unset: open)",
    ),
)

_DEFAULTS = {var.name: var.default for var in SETTINGS_DOC}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's topic names
_CHANNEL = re.compile(r"^[a-z0-9_]{1,32}$")  # safe in Redis keys and Prometheus labels


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip() or _DEFAULTS[name]


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = _get(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def _duration(env: Mapping[str, str], name: str) -> float:
    try:
        return parse_duration(_get(env, name))
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _float(env: Mapping[str, str], name: str, low: float) -> float:
    raw = _get(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= low or value == float("inf"):
        raise SettingsError(f"{name}={raw} must be a finite number >= {low}")
    return value


def _choice(env: Mapping[str, str], name: str, options: tuple[str, ...]) -> str:
    value = _get(env, name).upper()
    if value not in options:
        raise SettingsError(f"{name}={value!r}: use one of {', '.join(options)}")
    return value


def _file(env: Mapping[str, str], name: str) -> str:
    path = _get(env, name)
    if path and not os.access(path, os.R_OK):
        raise SettingsError(f"{name}={path!r} is not a readable file")
    return path


def _secret(env: Mapping[str, str], name: str) -> Secret:
    return Secret(env.get(name, ""))  # taken as given: a password may start with a space


def _web_url(env: Mapping[str, str], name: str) -> str:
    url = env.get(name, "").strip()
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise SettingsError(f"{name}={url!r} is not an http:// or https:// URL with a host")
    return url.rstrip("/")


def _window_name(env: Mapping[str, str], name: str) -> str:
    try:
        return format_duration(parse_duration(_get(env, name)))
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _cpl_rule(env: Mapping[str, str]) -> CplSpikeRule:
    factor = _float(env, "FUNNELPULSE_CPL_FACTOR", 1.0)
    clear = _float(env, "FUNNELPULSE_CPL_CLEAR_FACTOR", 1.0)
    if clear > factor:
        raise SettingsError("FUNNELPULSE_CPL_CLEAR_FACTOR must not exceed FUNNELPULSE_CPL_FACTOR")
    return CplSpikeRule(
        short_window=_window_name(env, "FUNNELPULSE_CPL_SHORT_WINDOW"),
        long_window=_window_name(env, "FUNNELPULSE_CPL_LONG_WINDOW"),
        factor=factor,
        clear_factor=clear,
        min_leads=_int(env, "FUNNELPULSE_CPL_MIN_LEADS", 0, 10**9),
        min_spend=_float(env, "FUNNELPULSE_CPL_MIN_SPEND", 0.0),
    )


def parse_windows(raw: str) -> tuple[str, ...]:
    """Canonical window names, shortest first, e.g. ``("1m", "5m", "1h")``."""
    try:
        seconds = sorted({parse_duration(part) for part in raw.split(",") if part.strip()})
    except ValueError as exc:
        raise SettingsError(f"FUNNELPULSE_WINDOWS: {exc}") from None
    if not seconds or any(s < 60 or s % 60 for s in seconds):
        raise SettingsError(f"FUNNELPULSE_WINDOWS={raw!r}: windows are whole minutes, >= 1m")
    return tuple(format_duration(s) for s in seconds)


def parse_fx_rates(raw: str, reporting: str) -> dict[str, Decimal]:
    """``"EUR=1.08,GBP=1.27"`` → rates into the reporting currency (which is always 1)."""
    rates = {reporting: Decimal(1)}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        code, _, value = part.partition("=")
        code = code.strip().upper()
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise SettingsError(f"FUNNELPULSE_FX_RATES: {part!r} is not CODE=rate") from None
        if not _CURRENCY.match(code) or not rate.is_finite() or rate <= 0:
            raise SettingsError(f"FUNNELPULSE_FX_RATES: {part!r} needs a 3-letter code, rate > 0")
        if code != reporting:
            rates[code] = rate
    return rates


def parse_topic_names(env: Mapping[str, str]) -> dict[str, str]:
    """The topics named one by one: suffix → full name."""
    names = {}
    for suffix in NAMED_TOPICS:
        variable = topic_variable(suffix)
        name = env.get(variable, "").strip()
        if name and (not _TOPIC.match(name) or name in (".", "..")):
            raise SettingsError(f"{variable}={name!r} is not a Kafka topic name ([A-Za-z0-9._-])")
        if name:
            names[suffix] = name
    return names


def parse_channels(raw: str) -> tuple[str, ...]:
    """The built-in channels plus ``"podcast,tv"``, sorted."""
    extra = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for name in extra:
        if not _CHANNEL.match(name):
            raise SettingsError(f"FUNNELPULSE_CHANNELS: {name!r} is not [a-z0-9_], 1-32 long")
    return tuple(sorted({*CHANNELS, *extra}))


def parse_channel_aliases(raw: str, channels: tuple[str, ...]) -> dict[str, str]:
    """``"cpc=paid_search,social=paid_social"`` → alias → channel (names normalised)."""
    aliases = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        alias, sep, target = (side.strip().lower() for side in part.partition("="))
        if not sep or not alias:
            raise SettingsError(f"FUNNELPULSE_CHANNEL_ALIASES: {part!r} is not alias=channel")
        if target not in channels:
            raise SettingsError(
                f"FUNNELPULSE_CHANNEL_ALIASES: {part!r} names no channel "
                "(FUNNELPULSE_CHANNELS adds one)"
            )
        if alias in channels:
            raise SettingsError(f"FUNNELPULSE_CHANNEL_ALIASES: {alias!r} is a channel itself")
        aliases[alias] = target
    return aliases


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = _DEFAULTS["KAFKA_BOOTSTRAP_SERVERS"]
    redis_url: str = _DEFAULTS["REDIS_URL"]
    app_id: str = _DEFAULTS["FUNNELPULSE_APP_ID"]
    topic_prefix: str = _DEFAULTS["FUNNELPULSE_TOPIC_PREFIX"]
    topic_names: Mapping[str, str] = field(default_factory=dict)  # suffix → name, when set
    redis_prefix: str = _DEFAULTS["FUNNELPULSE_REDIS_PREFIX"]
    partitions: int = 4
    funnel_partitions: int = 1
    snapshot_interval: float = 0.1
    batch_max_messages: int = 1000
    batch_wait: float = 0.02
    batch_wait_backlog: float = 0.25
    batch_max_bytes: int = 1_048_576
    replication: int = 1
    windows: tuple[str, ...] = ("1m", "5m", "15m", "1h", "24h")
    reporting_currency: str = "USD"
    fx_rates: Mapping[str, Decimal] = field(
        default_factory=lambda: parse_fx_rates(_DEFAULTS["FUNNELPULSE_FX_RATES"], "USD")
    )
    channels: tuple[str, ...] = tuple(sorted(CHANNELS))
    channel_aliases: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_ALIASES)
    )
    dedup_horizon: float = 86400.0
    dedup_max_ids: int = 2_000_000
    retention: float = 90000.0
    max_future: float = 300.0
    publish_interval: float = 1.0
    kpi_ttl: float = 172800.0
    max_campaign_series: int = 500
    cpl_rule: CplSpikeRule = field(default_factory=CplSpikeRule)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_url: str = ""
    data_dir: str = _DEFAULTS["FUNNELPULSE_DATA_DIR"]
    log_level: str = "info"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=Secret)
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    redis_username: str = ""
    redis_password: Secret = field(default_factory=Secret)
    redis_ssl_ca_file: str = ""
    collector_token: Secret = field(default_factory=Secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        currency = _get(env, "FUNNELPULSE_REPORTING_CURRENCY").upper()
        if not _CURRENCY.match(currency):
            raise SettingsError(f"FUNNELPULSE_REPORTING_CURRENCY={currency!r} is not ISO 4217")
        level = _get(env, "FUNNELPULSE_LOG_LEVEL").lower()
        if level not in {"debug", "info", "warn", "error"}:
            raise SettingsError(f"FUNNELPULSE_LOG_LEVEL={level!r}: use debug, info, warn, error")
        channels = parse_channels(_get(env, "FUNNELPULSE_CHANNELS"))
        settings = cls(
            kafka_bootstrap_servers=_get(env, "KAFKA_BOOTSTRAP_SERVERS"),
            redis_url=_get(env, "REDIS_URL"),
            app_id=_get(env, "FUNNELPULSE_APP_ID"),
            topic_prefix=_get(env, "FUNNELPULSE_TOPIC_PREFIX"),
            topic_names=parse_topic_names(env),
            redis_prefix=_get(env, "FUNNELPULSE_REDIS_PREFIX"),
            partitions=_int(env, "FUNNELPULSE_PARTITIONS", 1, 1024),
            funnel_partitions=_int(env, "FUNNELPULSE_FUNNEL_PARTITIONS", 1, 1024),
            snapshot_interval=_duration(env, "FUNNELPULSE_SNAPSHOT_INTERVAL"),
            batch_max_messages=_int(env, "FUNNELPULSE_BATCH_MAX_MESSAGES", 1, 100_000),
            batch_wait=_duration(env, "FUNNELPULSE_BATCH_WAIT"),
            batch_wait_backlog=_duration(env, "FUNNELPULSE_BATCH_WAIT_BACKLOG"),
            batch_max_bytes=_int(env, "FUNNELPULSE_BATCH_MAX_BYTES", 1024, 1 << 30),
            replication=_int(env, "FUNNELPULSE_REPLICATION", 1, 16),
            windows=parse_windows(_get(env, "FUNNELPULSE_WINDOWS")),
            reporting_currency=currency,
            fx_rates=parse_fx_rates(_get(env, "FUNNELPULSE_FX_RATES"), currency),
            channels=channels,
            channel_aliases=parse_channel_aliases(
                _get(env, "FUNNELPULSE_CHANNEL_ALIASES"), channels
            ),
            dedup_horizon=_duration(env, "FUNNELPULSE_DEDUP_HORIZON"),
            dedup_max_ids=_int(env, "FUNNELPULSE_DEDUP_MAX_IDS", 1000, 10**9),
            retention=_duration(env, "FUNNELPULSE_RETENTION"),
            max_future=_duration(env, "FUNNELPULSE_MAX_FUTURE"),
            publish_interval=_duration(env, "FUNNELPULSE_PUBLISH_INTERVAL"),
            kpi_ttl=_duration(env, "FUNNELPULSE_KPI_TTL"),
            max_campaign_series=_int(env, "FUNNELPULSE_MAX_CAMPAIGN_SERIES", 0, 100_000),
            cpl_rule=_cpl_rule(env),
            web_host=_get(env, "FUNNELPULSE_WEB_HOST"),
            web_port=_int(env, "FUNNELPULSE_WEB_PORT", 1, 65535),
            web_url=_web_url(env, "FUNNELPULSE_WEB_URL"),
            data_dir=_get(env, "FUNNELPULSE_DATA_DIR"),
            log_level=level,
            kafka_security_protocol=_choice(
                env, "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL", KAFKA_PROTOCOLS
            ),
            kafka_sasl_mechanism=_choice(env, "FUNNELPULSE_KAFKA_SASL_MECHANISM", SASL_MECHANISMS),
            kafka_sasl_username=_get(env, "FUNNELPULSE_KAFKA_SASL_USERNAME"),
            kafka_sasl_password=_secret(env, "FUNNELPULSE_KAFKA_SASL_PASSWORD"),
            kafka_ssl_ca_file=_file(env, "FUNNELPULSE_KAFKA_SSL_CA_FILE"),
            kafka_ssl_cert_file=_file(env, "FUNNELPULSE_KAFKA_SSL_CERT_FILE"),
            kafka_ssl_key_file=_file(env, "FUNNELPULSE_KAFKA_SSL_KEY_FILE"),
            redis_username=_get(env, "FUNNELPULSE_REDIS_USERNAME"),
            redis_password=_secret(env, "FUNNELPULSE_REDIS_PASSWORD"),
            redis_ssl_ca_file=_file(env, "FUNNELPULSE_REDIS_SSL_CA_FILE"),
            collector_token=_secret(env, "FUNNELPULSE_COLLECTOR_TOKEN"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        rule = self.cpl_rule
        for name in ("short_window", "long_window"):
            window = getattr(rule, name)
            if window not in self.windows:
                raise SettingsError(
                    f"FUNNELPULSE_CPL_{name.upper()}={window} is not one of FUNNELPULSE_WINDOWS"
                )
        longest = parse_duration(self.windows[-1])
        if self.retention < longest:
            raise SettingsError(
                f"FUNNELPULSE_RETENTION ({format_duration(self.retention)}) is shorter than the "
                f"longest window ({self.windows[-1]}): its KPIs could never be complete"
            )
        _validate_topic_names(self)
        _validate_kafka_security(self)
        _validate_redis_security(self)
        if self.collector_token and len(self.collector_token.reveal()) < 16:
            raise SettingsError("FUNNELPULSE_COLLECTOR_TOKEN must have 16 characters or more")

    def __repr__(self) -> str:
        """Every field, with the Redis URL's password and every secret masked."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["redis_url"] = redact_url(self.redis_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def topic(self, suffix: str) -> str:
        """The full name of a topic of ``NAMED_TOPICS``: set one by one, or prefix + suffix."""
        return self.topic_names.get(suffix) or f"{self.topic_prefix}{suffix}"

    def channel_table(self) -> dict[str, str]:
        """Normalised channel name or alias → channel, what the validator looks up."""
        return channel_table(self.channels, self.channel_aliases)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _validate_topic_names(s: Settings) -> None:
    """Two kinds of event on one topic could not be told apart: each topic is one kind."""
    seen: dict[str, str] = {}
    for suffix in NAMED_TOPICS:
        name = s.topic(suffix)
        if name in seen:
            raise SettingsError(
                f"{topic_variable(suffix)} and {topic_variable(seen[name])} both name topic "
                f"{name!r} (with FUNNELPULSE_TOPIC_PREFIX={s.topic_prefix!r})"
            )
        seen[name] = suffix


def _validate_kafka_security(s: Settings) -> None:
    """Credentials that would be ignored are an error: a typo must not mean plain text."""
    sasl = s.kafka_security_protocol.startswith("SASL_")
    tls = s.kafka_security_protocol in ("SSL", "SASL_SSL")
    given = bool(s.kafka_sasl_username or s.kafka_sasl_password)
    if sasl and not (s.kafka_sasl_username and s.kafka_sasl_password):
        raise SettingsError(
            f"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs "
            "FUNNELPULSE_KAFKA_SASL_USERNAME and FUNNELPULSE_KAFKA_SASL_PASSWORD"
        )
    if given and not sasl:
        raise SettingsError(
            "FUNNELPULSE_KAFKA_SASL_USERNAME/PASSWORD are set but "
            f"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} would not use them"
        )
    files = (s.kafka_ssl_ca_file, s.kafka_ssl_cert_file, s.kafka_ssl_key_file)
    if any(files) and not tls:
        raise SettingsError(
            "FUNNELPULSE_KAFKA_SSL_* files are set but "
            f"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} is not SSL/SASL_SSL"
        )
    if s.kafka_ssl_key_file and not s.kafka_ssl_cert_file:
        raise SettingsError("FUNNELPULSE_KAFKA_SSL_KEY_FILE needs FUNNELPULSE_KAFKA_SSL_CERT_FILE")


def _validate_redis_security(s: Settings) -> None:
    url = urlsplit(s.redis_url)
    if url.scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"REDIS_URL={redact_url(s.redis_url)!r}: use redis://, rediss://")
    if url.password is not None and s.redis_password:
        raise SettingsError("the Redis password is in REDIS_URL and FUNNELPULSE_REDIS_PASSWORD")
    if url.username and s.redis_username:
        raise SettingsError("the Redis user is in REDIS_URL and FUNNELPULSE_REDIS_USERNAME")
    if s.redis_ssl_ca_file and url.scheme != "rediss":
        raise SettingsError("FUNNELPULSE_REDIS_SSL_CA_FILE is set but REDIS_URL is not rediss://")
