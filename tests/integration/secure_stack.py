"""A Kafka broker with SASL and TLS listeners, and a Redis with a password and TLS, for the
security tests: real servers, started from the same cached jars and Debian binaries as
scripts/stack.sh, on free ports, with throw-away certificates made by ``openssl``.

The broker has a PLAINTEXT listener (for the test's own checks), a SASL_PLAINTEXT one and
a SASL_SSL one; PLAIN users come from the listener's JAAS line, SCRAM-SHA-256/512 users are
written into the metadata log when the storage is formatted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from funnelpulse.connectivity import kafka_round_trip

from .processes import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]
USER = "funnelpulse"


@dataclass(frozen=True)
class Tls:
    ca: Path  # the CA certificate clients trust
    cert: Path  # server certificate (127.0.0.1 / localhost)
    key: Path  # its unencrypted PKCS#8 key
    keystore: Path  # key + certificate in one PEM file, as Kafka reads it


@dataclass(frozen=True)
class SecureKafka:
    plaintext: str  # bootstrap of the unauthenticated listener (for the test's checks)
    sasl_plaintext: str
    sasl_ssl: str
    password: str = field(repr=False)


def make_tls(folder: Path) -> Tls:
    """A CA and a server certificate for 127.0.0.1, valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    cert, key, csr = folder / "server.pem", folder / "server-key.pem", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = _openssl
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "1", "-subj", "/CN=funnelpulse test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
        "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
        cert, "-days", "1", "-extfile", ext)  # fmt: skip
    keystore = folder / "keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    return Tls(ca, cert, key, keystore)


def _openssl(*args: object) -> None:
    binary = shutil.which("openssl")
    assert binary, "openssl is needed to make the test certificates"
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True)


@contextmanager
def secure_kafka(folder: Path, tls: Tls, password: str) -> Iterator[SecureKafka]:
    """A single-node KRaft broker with PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners."""
    libs = subprocess.run(
        [str(ROOT / "scripts" / "kafka" / "fetch.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    plain, sasl, sasl_ssl, controller = (free_port() for _ in range(4))
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "server.properties"
    config.write_text(_server_properties(folder, plain, sasl, sasl_ssl, controller, tls, password))
    java = ["java", "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{ROOT / 'scripts' / 'kafka' / 'log4j.properties'}",
            "-cp", f"{libs}/*"]  # fmt: skip
    scram = [f"SCRAM-SHA-{n}=[name={USER},password={password}]" for n in (256, 512)]
    subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", "fp-security-test-cluster0",
         "-c", str(config), *(a for s in scram for a in ("--add-scram", s))],
        check=True, capture_output=True,
    )  # fmt: skip
    log = (folder / "kafka.log").open("wb")
    proc = subprocess.Popen(
        [*java, "kafka.Kafka", str(config)], stdout=log, stderr=log, preexec_fn=die_with_parent
    )
    try:
        _wait_ready(f"127.0.0.1:{plain}", proc, folder / "kafka.log")
        yield SecureKafka(
            f"127.0.0.1:{plain}", f"127.0.0.1:{sasl}", f"127.0.0.1:{sasl_ssl}", password
        )
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _server_properties(
    folder: Path, plain: int, sasl: int, sasl_ssl: int, controller: int, tls: Tls, password: str
) -> str:
    plain_users = f'user_{USER}="{password}"'
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl},"
        f"SASL_SSL://127.0.0.1:{sasl_ssl},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl},"
        f"SASL_SSL://127.0.0.1:{sasl_ssl}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
        "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls.ca}",
        f"log.dirs={folder / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "auto.create.topics.enable=false",
        "group.initial.rebalance.delay.ms=0",
    ]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        lines.append(
            f"listener.name.{listener}.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        )
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            lines.append(
                f"listener.name.{listener}.{mechanism}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    return "\n".join(lines) + "\n"


def _wait_ready(bootstrap: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import asyncio

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SASL broker exited; {log}:\n{log.read_text()[-3000:]}")
        try:
            asyncio.run(asyncio.wait_for(kafka_round_trip(bootstrap), timeout=15))
            return
        except Exception:
            time.sleep(1)
    raise TimeoutError(f"the SASL broker did not start; see {log}")


@contextmanager
def secure_redis(folder: Path, password: str, tls: Tls) -> Iterator[tuple[int, int]]:
    """redis-server with ``requirepass`` and an ACL user (both with ``password``), on a
    plain port and a TLS port: (port, tls_port)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing (make up installs it)"
    port, tls_port = free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir",
            str(folder), "--requirepass", password, "--tls-port", str(tls_port),
            "--user", USER, "on", f">{password}", "~*", "&*", "+@all",  # an ACL user too
            "--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key),
            "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no"]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {proc.poll()})")
            time.sleep(0.2)
        yield port, tls_port
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False
