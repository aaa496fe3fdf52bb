"""Credentials and TLS for Kafka, Redis and the HTTP collector, built from the settings.

Traps this module exists for (ARCHITECTURE "Security traps"): Faust's ``SASLCredentials``
without an ``ssl_context`` silently speaks SASL_PLAINTEXT (the password in clear), and
``SSLCredentials()`` without a context cannot build one. So every TLS context is built
here, the protocol is always explicit, and one function gives the keyword arguments of
every raw aiokafka client the product creates (admin, producers, consumers): none of them
can be left on PLAINTEXT while the Faust app speaks TLS. Secrets are ``Secret`` objects,
whose ``repr`` and ``str`` never show the value: only ``reveal()`` does, where a client
needs it.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from .settings import Settings


def tls_context(ca_file: str, cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """Verifies the server (CA file, else the system's CAs) and its host name; presents a
    client certificate when one is configured."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def kafka_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return tls_context(
        settings.kafka_ssl_ca_file, settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file
    )


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client: bootstrap servers, protocol, SASL, TLS."""
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    context = kafka_tls(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL_"):
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.reveal(),
        )
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The Faust app's ``broker_credentials``; None for PLAINTEXT."""
    import faust  # here: the settings import this module, and Faust is slow to import

    protocol, context = settings.kafka_security_protocol, kafka_tls(settings)
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL_"):
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.reveal(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
        # Faust picks SASL_SSL only from the presence of a context: make sure it did.
        assert credentials.protocol.value == protocol, (credentials.protocol, protocol)
        return credentials
    return None


def redis_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Extra keyword arguments for ``Redis.from_url``: ACL user, password, CA for rediss://."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password:
        kwargs["password"] = settings.redis_password.reveal()
    if settings.redis_ssl_ca_file:
        kwargs["ssl_ca_certs"] = settings.redis_ssl_ca_file
    return kwargs


def describe_kafka(settings: Settings) -> str:
    """How the product connects to Kafka, without secrets (for ``funnelpulse check``)."""
    protocol = settings.kafka_security_protocol
    text = f"{settings.kafka_bootstrap_servers} {protocol}"
    if protocol.startswith("SASL_"):
        text += f" {settings.kafka_sasl_mechanism} user {settings.kafka_sasl_username!r}"
    return text
