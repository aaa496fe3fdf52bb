"""The allocator: when the worker re-executes itself under jemalloc, that the environment it
builds really runs Python on jemalloc (a child process, not a mock), and glibc's settings
where the system allocator runs."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from funnelpulse import malloc
from funnelpulse.malloc import (
    JEMALLOC_CONF,
    REEXEC_MARK,
    find_jemalloc,
    limit_arenas,
    reexec_env,
    trim,
)

LIBRARY = "/lib/libjemalloc.so.2"


@pytest.fixture
def found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "find_jemalloc", lambda: LIBRARY)


@pytest.mark.usefixtures("found")
def test_jemalloc_chosen_and_found_gives_the_preload() -> None:
    env = reexec_env("jemalloc", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "LD_PRELOAD": LIBRARY, "PYTHONMALLOC": "malloc",
                   REEXEC_MARK: "1", "MALLOC_CONF": JEMALLOC_CONF}  # fmt: skip


@pytest.mark.usefixtures("found")
def test_a_preload_and_a_conf_of_the_users_are_kept() -> None:
    env = reexec_env("jemalloc", {"LD_PRELOAD": "/x.so", "MALLOC_CONF": "narenas:1"})
    assert env is not None
    assert env["LD_PRELOAD"] == f"{LIBRARY} /x.so" and env["MALLOC_CONF"] == "narenas:1"


@pytest.mark.usefixtures("found")
def test_system_chosen_or_tried_already_runs_as_it_is() -> None:
    assert reexec_env("system", {}) is None
    assert reexec_env("jemalloc", {REEXEC_MARK: "1"}) is None  # a preload that failed: no loop


def test_no_library_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "find_jemalloc", lambda: None)
    assert reexec_env("jemalloc", {}) is None


def test_the_built_environment_runs_python_on_jemalloc() -> None:
    if find_jemalloc() is None:
        pytest.fail("libjemalloc.so.2 missing: scripts/ensure-tools.sh installs libjemalloc2")
    env = reexec_env("jemalloc", {})
    assert env is not None
    code = (
        "from funnelpulse import malloc as m; s = m.jemalloc_stats(); "
        "print(m.running_on(), m.trim(), s['resident'] >= s['allocated'] > 0, "
        "m.reexec_env('jemalloc', {}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["jemalloc", "True", "True", "None"]  # and no second re-exec from there


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_the_arena_limit_and_trims() -> None:
    """With the system allocator (``FUNNELPULSE_ALLOCATOR=system``; the tests run on it)."""
    assert limit_arenas(2) is True
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MB, then freed
    del blocks
    assert isinstance(trim(), bool)
