"""The allocator settings reach glibc where there is one, and are harmless elsewhere."""

from __future__ import annotations

import platform

import pytest

from funnelpulse.malloc import limit_arenas, trim


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_the_arena_limit_and_trims() -> None:
    assert limit_arenas(2) is True
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MB, then freed
    del blocks
    assert isinstance(trim(), bool)
