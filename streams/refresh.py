"""Which quiet scopes a publish tick recomputes: windows slide without new events.

Recomputing every scope in one tick, once a minute, made that tick take seconds with
thousands of scopes, and every new count that waited for it waited that long. Instead
each tick takes the scopes computed longest ago, up to a share that refreshes them all
about once per period (twice that share while catching up after a burst), so the work
is spread evenly over the ticks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from itertools import islice


def refresh_share(scopes: int, interval: float, period: float) -> int:
    """Scopes per tick that refresh ``scopes`` twice per ``period`` at full speed."""
    return 2 * math.ceil(scopes * interval / period) + 1


def stale_scopes(
    computed_at: Mapping[str, float], now: float, interval: float, period: float
) -> list[str]:
    """The scopes last computed ``period`` or longer ago, oldest first, at most a share.

    ``computed_at`` must be ordered oldest first (a dict whose scopes are moved to the end
    when computed): the scan stops at the first fresh one.
    """
    share = refresh_share(len(computed_at), interval, period)
    stale_before = now - period
    due: list[str] = []
    for scope, at in computed_at.items():
        if at > stale_before or len(due) >= share:
            break
        due.append(scope)
    return due


def take_scopes(
    due: MutableMapping[str, None], backfill: Mapping[str, None], limit: int, share: int
) -> tuple[set[str], set[str]]:
    """One tick's scopes, in two parts: the due ones, oldest first, up to ``limit`` (taken
    out of ``due``), then up to ``share`` scopes waiting to be republished (left in
    ``backfill``: the caller drops each once computed, whichever way it came), within
    what ``limit`` leaves. The parts are disjoint.

    The trap: the scopes of a restored partition are queued before the first new events
    are merged; in one FIFO they would go first, and a restart's first new counts would
    wait for every campaign to be republished. Two parts, so that the caller also
    *writes* the new counts before it computes the republished ones.
    """
    fresh = set(islice(due, limit))
    for scope in fresh:
        del due[scope]
    room = min(limit - len(fresh), share)
    return fresh, set(islice((s for s in backfill if s not in fresh), max(room, 0)))
