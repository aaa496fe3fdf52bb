"""One typed, frozen settings object, read once from the environment; each setting
declared once.

Every knob is a ``FUNNELPULSE_*`` variable, plus the standard ``KAFKA_BOOTSTRAP_SERVERS``
and ``REDIS_URL``. Each is one ``setting(...)`` line below — variable, default as written
in the environment, meaning, parser (``env_values``) — and everything else derives from
that line: the dataclass field and its default, ``from_env``, the README's configuration
table and the commented defaults of ``deploy/k8s/configmap.yaml``
(``python -m funnelpulse.docs``; a test fails when they drift). Values are parsed
strictly, and an unknown ``FUNNELPULSE_*`` variable is an error that names the closest
known one: a misspelled setting must not run as its default.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from metrics.alerts import CplSpikeRule
from metrics.durations import format_duration, parse_duration
from metrics.windows import check_horizon

from . import env_values as v
from .credentials import KAFKA_PROTOCOLS, SASL_MECHANISMS, Secret, redact_url
from .env_values import SettingsError, parse_fx_rates, parse_windows
from .names import CHANNELS, DEFAULT_CHANNEL_ALIASES, NAMED_TOPICS, channel_table, topic_variable

__all__ = ["Settings", "SettingsError", "Var", "parse_fx_rates", "parse_windows", "variables"]

PREFIX = "FUNNELPULSE_"
# Variables of the project's scripts and tests, not of the product (scripts/stack.sh,
# scripts/kafka/fetch.sh, tests/): allowed beside the settings.
TOOL_VARIABLES = frozenset({
    "FUNNELPULSE_STACK_DIR", "FUNNELPULSE_KAFKA_PORT", "FUNNELPULSE_KAFKA_CONTROLLER_PORT",
    "FUNNELPULSE_REDIS_PORT", "FUNNELPULSE_CACHE", "FUNNELPULSE_STOP_SIGNAL",
    "FUNNELPULSE_ONLY", "FUNNELPULSE_FAULTS", "FUNNELPULSE_TEST_RUN", "FUNNELPULSE_TEST_RUN_PID",
})  # fmt: skip
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's topic names
_RULE = CplSpikeRule()  # the alert's defaults are the rule's own


@dataclass(frozen=True)
class Var:
    """One environment variable: name, default as written there, meaning, parser.
    ``verbatim``: taken as given, never stripped nor defaulted (a password may start with
    a space)."""

    name: str
    default: str
    doc: str
    parse: v.Parser = v.text
    verbatim: bool = False

    def read(self, env: Mapping[str, str], earlier: v.Earlier) -> Any:
        raw = env.get(self.name, "") if self.verbatim else env.get(self.name, "").strip()
        return self.parse(self.name, raw or ("" if self.verbatim else self.default), earlier)


def setting(name: str, default: str, doc: str, parse: v.Parser = v.text, **kw: Any) -> Any:
    """A dataclass field declared by its variable (typed ``Any`` for the field's own
    annotation to hold)."""
    var = Var(name, default, doc, parse, **kw)
    return field(default_factory=lambda: _default(var), metadata={"vars": (var,)})


def _topic_name(name: str, raw: str, earlier: v.Earlier) -> str:
    if raw and (not _TOPIC.match(raw) or raw in (".", "..")):
        raise SettingsError(f"{name}={raw!r} is not a Kafka topic name ([A-Za-z0-9._-])")
    return raw


_TOPIC_VARS = tuple(
    Var(topic_variable(suffix), "", f"full name of the `{suffix}` topic, when not prefix + "
        f"`{suffix}` (an existing topic used as it is)", _topic_name)
    for suffix in NAMED_TOPICS
)  # fmt: skip
_ALIASES = ",".join(f"{alias}={channel}" for alias, channel in DEFAULT_CHANNEL_ALIASES.items())
_BUILT_IN = ", ".join(f"`{c}`" for c in sorted(CHANNELS))


@dataclass(frozen=True, repr=False)
class Settings:
    kafka_bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...)"
    )
    redis_url: str = setting(
        "REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL (`rediss://` for TLS)"
    )
    app_id: str = setting(
        "FUNNELPULSE_APP_ID", "funnelpulse", "Faust app id (consumer group, state topics)"
    )
    topic_prefix: str = setting(
        "FUNNELPULSE_TOPIC_PREFIX", "mkt.", "prefix of every input and output topic"
    )
    topic_names: Mapping[str, str] = field(  # suffix → name, for the topics named one by one
        default_factory=dict, metadata={"vars": _TOPIC_VARS}
    )
    redis_prefix: str = setting(
        "FUNNELPULSE_REDIS_PREFIX", "mkt:", "prefix of every Redis key and channel"
    )
    partitions: int = setting(
        "FUNNELPULSE_PARTITIONS",
        "4",
        "partitions of the input topics created by the worker",
        v.integer(1, 1024),
    )
    funnel_partitions: int = setting(
        "FUNNELPULSE_FUNNEL_PARTITIONS",
        "1",
        "partitions of the internal funnel topic (lead state)",
        v.integer(1, 1024),
    )
    snapshot_interval: float = setting(
        "FUNNELPULSE_SNAPSHOT_INTERVAL",
        "100ms",
        "how often partial counts go to the merge stage",
        v.duration,
    )
    batch_max_messages: int = setting(
        "FUNNELPULSE_BATCH_MAX_MESSAGES",
        "1000",
        "Kafka messages counted together (one table write per touched key, then one ack)",
        v.integer(1, 100_000),
    )
    batch_wait: float = setting(
        "FUNNELPULSE_BATCH_WAIT",
        "20ms",
        "longest a message waits for its batch to fill",
        v.duration,
    )
    batch_wait_backlog: float = setting(
        "FUNNELPULSE_BATCH_WAIT_BACKLOG",
        "250ms",
        "the same while the worker reads a backlog (its messages are in Kafka already)",
        v.duration,
    )
    batch_max_bytes: int = setting(
        "FUNNELPULSE_BATCH_MAX_BYTES",
        "1048576",
        "message bytes that close a batch early",
        v.integer(1024, 1 << 30),
    )
    replication: int = setting(
        "FUNNELPULSE_REPLICATION",
        "1",
        "replication factor of the topics the worker creates",
        v.integer(1, 16),
    )
    windows: tuple[str, ...] = setting(
        "FUNNELPULSE_WINDOWS", "1m,5m,15m,1h,24h", "rolling KPI windows", v.windows
    )
    reporting_currency: str = setting(
        "FUNNELPULSE_REPORTING_CURRENCY", "USD", "currency of all money outputs", v.currency
    )
    fx_rates: Mapping[str, Decimal] = setting(
        "FUNNELPULSE_FX_RATES",
        "EUR=1.08,GBP=1.27,JPY=0.0067,CAD=0.73,AUD=0.66,CHF=1.12,SEK=0.095",
        "reporting-currency value of one unit of each other currency",
        v.fx_rates,
    )
    channels: tuple[str, ...] = setting(
        "FUNNELPULSE_CHANNELS",
        "",
        f"channels besides the built-in {_BUILT_IN} "
        "(comma-separated, `[a-z0-9_]`, up to 32 characters)",
        v.channels,
    )
    channel_aliases: Mapping[str, str] = setting(
        "FUNNELPULSE_CHANNEL_ALIASES",
        _ALIASES,
        "other names of channels, "
        "`alias=channel,...` (replaces this list); also maps `utm_medium` at the collector",
        v.channel_aliases,
    )
    dedup_horizon: float = setting(
        "FUNNELPULSE_DEDUP_HORIZON",
        "7d",
        "how long a repeated event_id is recognised (at most `FUNNELPULSE_HORIZON`)",
        v.duration,
    )
    dedup_max_ids: int = setting(
        "FUNNELPULSE_DEDUP_MAX_IDS",
        "2000000",
        "event_ids remembered per partition (memory cap)",
        v.integer(1000, 10**9),
    )
    horizon: float = setting(
        "FUNNELPULSE_HORIZON",
        "35d",
        "oldest event time accepted and counted, in hourly panes (older: dead letter); "
        "at least the longest window + 1h",
        v.duration,
    )
    max_future: float = setting(
        "FUNNELPULSE_MAX_FUTURE", "5m", "newest event time accepted ahead of now", v.duration
    )
    publish_interval: float = setting(
        "FUNNELPULSE_PUBLISH_INTERVAL",
        "1s",
        "publish tick: Redis, Prometheus, mkt.kpis",
        v.duration,
    )
    kpi_ttl: float = setting(
        "FUNNELPULSE_KPI_TTL", "48h", "TTL of the Redis KPI hashes", v.duration
    )
    max_campaign_series: int = setting(
        "FUNNELPULSE_MAX_CAMPAIGN_SERIES",
        "500",
        "campaigns with their own Prometheus series",
        v.integer(0, 100_000),
    )
    cpl_short_window: str = setting(
        "FUNNELPULSE_CPL_SHORT_WINDOW",
        _RULE.short_window,
        "cpl_spike: window of the current CPL",
        v.window_name,
    )
    cpl_long_window: str = setting(
        "FUNNELPULSE_CPL_LONG_WINDOW",
        _RULE.long_window,
        "cpl_spike: window of the baseline CPL",
        v.window_name,
    )
    cpl_factor: float = setting(
        "FUNNELPULSE_CPL_FACTOR",
        str(_RULE.factor),
        "cpl_spike fires above factor x baseline",
        v.number(1.0),
    )
    cpl_clear_factor: float = setting(
        "FUNNELPULSE_CPL_CLEAR_FACTOR",
        str(_RULE.clear_factor),
        "cpl_spike resolves under this x baseline",
        v.number(1.0),
    )
    cpl_min_leads: int = setting(
        "FUNNELPULSE_CPL_MIN_LEADS",
        str(_RULE.min_leads),
        "cpl_spike: leads needed in the baseline",
        v.integer(0, 10**9),
    )
    cpl_min_spend: float = setting(
        "FUNNELPULSE_CPL_MIN_SPEND",
        f"{_RULE.min_spend:g}",
        "cpl_spike: spend needed in the short window",
        v.number(0.0),
    )
    web_host: str = setting("FUNNELPULSE_WEB_HOST", "127.0.0.1", "bind address of the HTTP server")
    web_port: int = setting(
        "FUNNELPULSE_WEB_PORT", "6066", "port of the HTTP server", v.integer(1, 65535)
    )
    web_url: str = setting(
        "FUNNELPULSE_WEB_URL",
        "",
        "URL the other workers reach this one's HTTP server at "
        "(`/kpis`, `/alerts` routed to a scope's owner); unset: `http://<web host>:<port>`, "
        "with the host's FQDN when bound to `0.0.0.0`",
        v.web_url,
    )
    data_dir: str = setting(
        "FUNNELPULSE_DATA_DIR", "./funnelpulse-data", "Faust data folder (local table state)"
    )
    store: str = setting(
        "FUNNELPULSE_STORE",
        "rocksdb",
        "where tables live: `rocksdb` (on disk in the data folder with each changelog's "
        "offset: a restart replays only what the disk lacks) or `memory` (rebuilt from the "
        "changelogs at every start: tests, tiny deployments)",
        v.choice("memory", "rocksdb", upper=False),
    )
    rocksdb_memory_mb: int = setting(
        "FUNNELPULSE_ROCKSDB_MEMORY_MB",
        "16",
        "with `rocksdb`: native memory all table databases share (one block cache; "
        "memtables take at most half of it)",
        v.integer(8, 1 << 20),
    )
    allocator: str = setting(
        "FUNNELPULSE_ALLOCATOR",
        "jemalloc",
        "the worker's memory allocator: `jemalloc` (the worker restarts itself once under "
        "it, if `libjemalloc.so.2` is installed: after a backlog the resident size follows "
        "what is in use) or `system` (glibc and Python's own; the size keeps a drain's peak)",
        v.choice("jemalloc", "system", upper=False),
    )
    log_level: str = setting(
        "FUNNELPULSE_LOG_LEVEL",
        "info",
        "worker log level: debug, info, warn, error",
        v.choice("debug", "info", "warn", "error", upper=False),
    )
    kafka_security_protocol: str = setting(
        "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka protocol: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`",
        v.choice(*KAFKA_PROTOCOLS),
    )
    kafka_sasl_mechanism: str = setting(
        "FUNNELPULSE_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`",
        v.choice(*SASL_MECHANISMS),
    )
    kafka_sasl_username: str = setting(
        "FUNNELPULSE_KAFKA_SASL_USERNAME", "", "SASL user (required with `SASL_*`)"
    )
    kafka_sasl_password: Secret = setting(
        "FUNNELPULSE_KAFKA_SASL_PASSWORD",
        "",
        "SASL password (secret, never printed)",
        v.secret,
        verbatim=True,
    )
    kafka_ssl_ca_file: str = setting(
        "FUNNELPULSE_KAFKA_SSL_CA_FILE",
        "",
        "PEM CA bundle for the brokers (default: system CAs)",
        v.readable_file,
    )
    kafka_ssl_cert_file: str = setting(
        "FUNNELPULSE_KAFKA_SSL_CERT_FILE",
        "",
        "PEM client certificate (mutual TLS)",
        v.readable_file,
    )
    kafka_ssl_key_file: str = setting(
        "FUNNELPULSE_KAFKA_SSL_KEY_FILE",
        "",
        "PEM private key of the client certificate",
        v.readable_file,
    )
    redis_username: str = setting(
        "FUNNELPULSE_REDIS_USERNAME", "", "Redis ACL user, when not in `REDIS_URL`"
    )
    redis_password: Secret = setting(
        "FUNNELPULSE_REDIS_PASSWORD",
        "",
        "Redis password, when not in `REDIS_URL` (secret)",
        v.secret,
        verbatim=True,
    )
    redis_ssl_ca_file: str = setting(
        "FUNNELPULSE_REDIS_SSL_CA_FILE",
        "",
        "PEM CA bundle for `rediss://` (default: system)",
        v.readable_file,
    )
    collector_token: Secret = setting(
        "FUNNELPULSE_COLLECTOR_TOKEN",
        "",
        "bearer token required by `POST /events/<type>` (16+ characters; unset: open)",
        v.secret,
        verbatim=True,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        _refuse_unknown(env)
        settings = cls(**_read(env))
        settings.validate()
        return settings

    @property
    def cpl_rule(self) -> CplSpikeRule:
        return CplSpikeRule(
            short_window=self.cpl_short_window, long_window=self.cpl_long_window,
            factor=self.cpl_factor, clear_factor=self.cpl_clear_factor,
            min_leads=self.cpl_min_leads, min_spend=self.cpl_min_spend,
        )  # fmt: skip

    def validate(self) -> None:
        if self.cpl_clear_factor > self.cpl_factor:
            raise SettingsError(
                "FUNNELPULSE_CPL_CLEAR_FACTOR must not exceed FUNNELPULSE_CPL_FACTOR"
            )
        for name in ("short_window", "long_window"):
            window = getattr(self, f"cpl_{name}")
            if window not in self.windows:
                raise SettingsError(
                    f"FUNNELPULSE_CPL_{name.upper()}={window} is not one of FUNNELPULSE_WINDOWS"
                )
        longest = parse_duration(self.windows[-1])
        why = check_horizon(self.horizon, longest, self.dedup_horizon)
        if why is not None:
            raise SettingsError(
                f"FUNNELPULSE_HORIZON ({format_duration(self.horizon)}) is {why} "
                f"(longest window {self.windows[-1]}, "
                f"FUNNELPULSE_DEDUP_HORIZON {format_duration(self.dedup_horizon)})"
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


def variables() -> Iterator[Var]:
    """Every variable, in declaration order (the README table, the configmap comments)."""
    for f in dataclasses.fields(Settings):
        yield from f.metadata["vars"]


def _read(env: Mapping[str, str]) -> dict[str, Any]:
    """Field name → value, each parsed from its variable(s) in declaration order."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        read = [var.read(env, values) for var in f.metadata["vars"]]
        if f.name == "topic_names":
            values[f.name] = {s: name for s, name in zip(NAMED_TOPICS, read, strict=True) if name}
        else:
            (values[f.name],) = read
    return values


_DEFAULTS = _read({})
_FIELD_OF = {var.name: f.name for f in dataclasses.fields(Settings) for var in f.metadata["vars"]}


def _default(var: Var) -> Any:
    """A field's default: its variable's default, parsed like any value (copied: the
    defaults are shared)."""
    value = _DEFAULTS[_FIELD_OF[var.name]]
    return dict(value) if isinstance(value, dict) else value


def _refuse_unknown(env: Mapping[str, str]) -> None:
    settings = [var.name for var in variables() if var.name.startswith(PREFIX)]
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in settings and name not in TOOL_VARIABLES:
            # compared without the shared prefix, which would make every name look close
            tails = {known[len(PREFIX) :]: known for known in settings}
            close = difflib.get_close_matches(name[len(PREFIX) :], list(tails), n=1, cutoff=0.75)
            hint = f": did you mean {tails[close[0]]}?" if close else " (README: Configuration)"
            raise SettingsError(f"{name} is not a funnelpulse setting{hint}")
