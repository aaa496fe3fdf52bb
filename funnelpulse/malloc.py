"""glibc's allocator, told to hand freed memory back.

The worker allocates and frees a lot from two threads (Faust runs aiokafka's consumer in
its own thread): glibc then keeps a heap per thread and returns freed pages to the system
rarely, so the resident size follows the highest point ever reached rather than what is
in use. Two arenas and a trim after each eviction round keep it near what is in use. On
other C libraries both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("funnelpulse")
M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.mallopt  # noqa: B018 - glibc only
            libc.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def limit_arenas(arenas: int = 2) -> bool:
    """Before any thread starts: at most ``arenas`` malloc heaps."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Returns free heap pages to the system; True if any were."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
