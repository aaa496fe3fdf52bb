"""Security settings (issue 6): Kafka SASL/TLS, Redis AUTH/TLS, the collector token, and
secrets that never show in a ``repr``. The real servers are in
tests/integration/test_security.py."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from funnelpulse.credentials import Secret, redact_url
from funnelpulse.security import (
    describe_kafka,
    faust_credentials,
    kafka_client_kwargs,
    redis_client_kwargs,
)
from funnelpulse.settings import Settings, SettingsError
from streams.web import authorized
from tests.integration.secure_stack import Tls, make_tls

ROOT = Path(__file__).resolve().parents[2]
PASSWORD, REDIS_PASSWORD, TOKEN = "kafka-Pa55-secret", "redis-Pa55-secret", "tok-0123456789abcdef"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def sasl_env(protocol: str = "SASL_PLAINTEXT", mechanism: str = "PLAIN") -> dict[str, str]:
    return {
        "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": protocol,
        "FUNNELPULSE_KAFKA_SASL_MECHANISM": mechanism,
        "FUNNELPULSE_KAFKA_SASL_USERNAME": "funnelpulse",
        "FUNNELPULSE_KAFKA_SASL_PASSWORD": PASSWORD,
    }


def test_defaults_are_plaintext_and_open() -> None:
    s = Settings.from_env({})
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_kwargs(s) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(s) is None
    assert redis_client_kwargs(s) == {}
    assert authorized(s.collector_token, None)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext(mechanism: str) -> None:
    s = Settings.from_env(sasl_env(mechanism=mechanism))
    kwargs = kafka_client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == mechanism.upper()
    assert kwargs["sasl_plain_password"] == PASSWORD
    assert "ssl_context" not in kwargs
    auth = credentials_to_aiokafka_auth(faust_credentials(s))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == mechanism.upper()


def test_sasl_ssl_really_is_tls_in_faust_too(tls: Tls) -> None:
    """The trap: Faust's SASLCredentials falls back to SASL_PLAINTEXT without a context."""
    env = {**sasl_env("SASL_SSL", "SCRAM-SHA-512"), "FUNNELPULSE_KAFKA_SSL_CA_FILE": str(tls.ca)}
    s = Settings.from_env(env)
    for auth in (kafka_client_kwargs(s), credentials_to_aiokafka_auth(faust_credentials(s))):
        assert auth["security_protocol"] == "SASL_SSL"
        context = auth["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert any("funnelpulse test CA" in str(c) for c in context.get_ca_certs())


def test_ssl_with_a_client_certificate(tls: Tls) -> None:
    env = {"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "ssl",
           "FUNNELPULSE_KAFKA_SSL_CA_FILE": str(tls.ca),
           "FUNNELPULSE_KAFKA_SSL_CERT_FILE": str(tls.cert),
           "FUNNELPULSE_KAFKA_SSL_KEY_FILE": str(tls.key)}  # fmt: skip
    s = Settings.from_env(env)
    auth = credentials_to_aiokafka_auth(faust_credentials(s))
    assert auth["security_protocol"] == "SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in kafka_client_kwargs(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of PLAINTEXT, SSL"),
        ({**sasl_env(), "FUNNELPULSE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "SCRAM-SHA-512"),
        ({"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs FUNNELPULSE_KAFKA_SASL"),
        ({**sasl_env(), "FUNNELPULSE_KAFKA_SASL_PASSWORD": ""}, "needs FUNNELPULSE_KAFKA_SASL"),
        ({**sasl_env(), "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "would not use"),
        ({"FUNNELPULSE_KAFKA_SSL_CA_FILE": "/etc/hostname"}, "is not SSL/SASL_SSL"),
        ({"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
          "FUNNELPULSE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"FUNNELPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
          "FUNNELPULSE_KAFKA_SSL_KEY_FILE": "/etc/hostname"}, "needs FUNNELPULSE_KAFKA_SSL_CERT"),
        ({"REDIS_URL": "redis://:a@h:6379/0", "FUNNELPULSE_REDIS_PASSWORD": "b"}, "password"),
        ({"REDIS_URL": "redis://u:a@h/0", "FUNNELPULSE_REDIS_USERNAME": "v"}, "Redis user"),
        ({"FUNNELPULSE_REDIS_SSL_CA_FILE": "/etc/hostname"}, "not rediss://"),
        ({"REDIS_URL": "http://:pw@h:6379"}, "use redis://"),
        ({"FUNNELPULSE_COLLECTOR_TOKEN": "short"}, "16 characters"),
    ],
)  # fmt: skip
def test_settings_that_would_be_ignored_or_weak_are_errors(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as error:
        Settings.from_env(env)
    assert PASSWORD not in str(error.value) and ":pw@" not in str(error.value)


def test_redis_credentials_and_tls(tls: Tls) -> None:
    env = {"REDIS_URL": "rediss://redis.example:6380/0", "FUNNELPULSE_REDIS_USERNAME": "fp",
           "FUNNELPULSE_REDIS_PASSWORD": REDIS_PASSWORD,
           "FUNNELPULSE_REDIS_SSL_CA_FILE": str(tls.ca)}  # fmt: skip
    assert redis_client_kwargs(Settings.from_env(env)) == {
        "username": "fp", "password": REDIS_PASSWORD, "ssl_ca_certs": str(tls.ca)
    }  # fmt: skip


def test_secrets_never_show_in_repr_or_str(tls: Tls) -> None:
    env = {**sasl_env("SASL_SSL"), "FUNNELPULSE_KAFKA_SSL_CA_FILE": str(tls.ca),
           "REDIS_URL": f"redis://fp:{REDIS_PASSWORD}@127.0.0.1:6379/0",
           "FUNNELPULSE_COLLECTOR_TOKEN": TOKEN}  # fmt: skip
    s = Settings.from_env(env)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr(s.kafka_sasl_password),
                 str(s.collector_token), describe_kafka(s), redact_url(s.redis_url)):  # fmt: skip
        assert PASSWORD not in text and REDIS_PASSWORD not in text and TOKEN not in text, text
    assert "redis://fp:***@127.0.0.1:6379/0" in repr(s)
    assert "kafka_sasl_password=Secret('***')" in repr(s)
    assert "collector_token=Secret('***')" in repr(s)
    assert s.kafka_sasl_password.reveal() == PASSWORD  # only on purpose
    assert s == Settings.from_env(env) and s != Settings.from_env(sasl_env())


def test_secret_compares_in_constant_time_and_by_value() -> None:
    secret = Secret(TOKEN)
    assert secret.matches(TOKEN) and not secret.matches(TOKEN[:-1]) and not secret.matches("")
    assert secret == Secret(TOKEN) and secret != Secret("other") and not Secret()
    assert repr(Secret()) == "Secret('')"


@pytest.mark.parametrize(
    ("header", "ok"),
    [(None, False), ("", False), (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True),
     (f"Bearer  {TOKEN} ", True), (f"Basic {TOKEN}", False), (TOKEN, False),
     (f"Bearer {TOKEN}x", False), ("Bearer ", False)],
)  # fmt: skip
def test_collector_token(header: str | None, ok: bool) -> None:
    assert authorized(Secret(TOKEN), header) is ok


@pytest.mark.parametrize(
    ("url", "shown"),
    [("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
     ("rediss://user:pw@h/1", "rediss://user:***@h/1"),
     ("redis://h:6379/0", "redis://h:6379/0")],
)  # fmt: skip
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_kafka_client_the_product_creates_gets_the_security_options() -> None:
    """A raw aiokafka client built from a bare bootstrap address would talk PLAINTEXT to a
    SASL_SSL cluster: every construction site must spread the helper's kwargs."""
    sites = []
    for folder in ("funnelpulse", "streams", "metrics"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(
                r"AIOKafka(Producer|Consumer|AdminClient)\((.*?)\)", text, re.S
            ):
                sites.append((path.name, match.group(2)))
    assert len(sites) >= 6
    for name, args in sites:
        assert "**" in args, f"{name}: AIOKafka client without the security options: {args!r}"
