"""Worker processes for integration tests: started for real, stopped by signal."""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# Ports for the services tests start (workers, Prometheus, private brokers and Redis): a
# block per test process, below the kernel's ephemeral range (32768-60999 by default).
PORT_BASE = 20_000
PORT_BLOCK = 1_000
_port_cursor = [random.randrange(PORT_BLOCK)]


def free_port() -> int:
    """A free port that no other test process of the run is handed.

    The trap it avoids: "bind port 0, close, pass the number on" hands the same number to
    another test process (or to any outgoing connection) in the seconds before the child
    binds it. A worker started on a port another test's worker already listens on dies
    (address in use), but its readiness check is answered by the other worker, and the
    test fails later on "connection refused" once that one stops. Here each xdist process
    (``gwN``) walks its own block, outside the ephemeral range, skipping ports in use."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = PORT_BASE + (index % 10) * PORT_BLOCK
    for _ in range(PORT_BLOCK):
        port = first + _port_cursor[0] % PORT_BLOCK
        _port_cursor[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}-{first + PORT_BLOCK - 1}")


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when the test process dies,
    so a killed or crashed test run leaves no workers or servers behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ServiceProcess:
    """A child process with its log in a file, so a failing test can show what it said."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        return self

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{url} not ready after {timeout}s; log:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"process exited with {self.proc.returncode}; log:\n{self.tail()}")


def redis_server(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """A throw-away redis-server without persistence: restarted, it is empty."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing (make up installs it)"
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
