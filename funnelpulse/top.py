"""``funnelpulse top``: the KPIs of one window as a live table in the terminal.

Operators want to see "is the funnel alive, what does a lead cost right now" without a
dashboard. The table is read from the Redis snapshots the worker publishes (SPEC §3), so
it shows exactly what other services read. Rendering is a pure function over plain dicts
(testable without Redis, and the same text whether or not stdout is a terminal); reading
is one small async function; the loop around them only redraws and retries. Redis being
away is a normal state here: a one-line message, and the next tick tries again.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from metrics.redis_client import connect, describe

from .durations import format_duration, parse_duration
from .security import redact_url, redis_client_kwargs
from .settings import Settings

Row = Mapping[str, object]  # one Redis hash as read (strings) or built by hand (numbers)

ABSENT = "—"
CLEAR_SCREEN = "\x1b[H\x1b[2J"
MAX_SCOPES_READ = 5000  # the most recently updated scopes; a table is not a data export


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    width: int
    style: str  # "count", "percent", "money" or "ratio"


COLUMNS: tuple[Column, ...] = (
    Column("impressions", "impressions", 12, "count"),
    Column("clicks", "clicks", 10, "count"),
    Column("CTR %", "ctr", 8, "percent"),
    Column("signups", "signups", 9, "count"),
    Column("conv %", "conversion_rate", 8, "percent"),
    Column("MQL→SQL %", "mql_to_sql", 9, "percent"),
    Column("spend", "spend", 12, "money"),
    Column("CPL", "cpl", 10, "money"),
    Column("CAC", "cac", 10, "money"),
    Column("ROAS", "roas", 8, "ratio"),
)
SCOPE_WIDTH = 28
GAP = "  "
TABLE_WIDTH = SCOPE_WIDTH + sum(len(GAP) + c.width for c in COLUMNS)


def window_name(text: str) -> str:
    """``--window`` in its canonical spelling (``300s`` → ``5m``), as the keys use it."""
    try:
        return format_duration(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def number(row: Row, field: str) -> float | None:
    """A finite number from a hash field (string or number), else None (absent)."""
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        return None
    try:
        parsed = float(value)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None


def _plain(value: float, style: str) -> str:
    if style == "count":
        return f"{round(value):,}"
    if style == "percent":
        return f"{value * 100:,.2f}"
    return f"{value:,.2f}"


def _compact(value: float) -> str:
    """A short spelling for values too wide for their column: ``12.3M``."""
    magnitude = abs(value)
    if magnitude >= 1e21:
        return f"{value:.1e}"
    for suffix, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if size <= magnitude < size * 1000:
            return f"{value / size:.1f}{suffix}"
    return f"{value / 1e3:.1f}K" if magnitude >= 1e3 else f"{value:.0f}"


def cell(row: Row, column: Column) -> str:
    """One formatted value, never wider than its column (too wide ones go compact)."""
    value = number(row, column.field)
    if value is None:
        return ABSENT
    text = _plain(value, column.style)
    if len(text) <= column.width:
        return text
    return _compact(value * 100 if column.style == "percent" else value)[: column.width]


def _scope_cell(scope: str) -> str:
    return scope if len(scope) <= SCOPE_WIDTH else scope[: SCOPE_WIDTH - 1] + "…"


def _line(scope: str, cells: Sequence[str]) -> str:
    parts = [scope.ljust(SCOPE_WIDTH)]
    parts += [text.rjust(column.width) for column, text in zip(COLUMNS, cells, strict=True)]
    return GAP.join(parts)


def _rank(scope: str) -> int:
    if scope == "all":
        return 0
    return 1 if scope.startswith("channel:") else 2


def _sort_key(row: Row) -> tuple[int, float, float, str]:
    scope = str(row.get("scope", ""))
    spend = number(row, "spend") or 0.0
    impressions = number(row, "impressions") or 0.0
    return (_rank(scope), -spend, -impressions, scope)


def order(rows: Sequence[Row], limit: int | None = None) -> tuple[list[Row], int]:
    """``all``, then channels, then campaigns, each by spend then impressions (desc).

    ``limit`` caps the campaign rows (``all`` and the channels are few and always shown);
    the second value is how many campaign rows were left out.
    """
    ordered = sorted(rows, key=_sort_key)
    head = [row for row in ordered if _rank(str(row.get("scope", ""))) < 2]
    rest = ordered[len(head) :]
    shown = rest if limit is None else rest[: max(0, limit)]
    return head + shown, len(rest) - len(shown)


def _title(rows: Sequence[Row], window: str, now: float) -> str:
    clock = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"funnelpulse top · window {window} · {clock} · {len(rows)} scopes"
    updates = [u for u in (number(row, "updated_at") for row in rows) if u is not None]
    if updates:
        title += f" · newest update {max(0.0, now - max(updates)):.0f} s ago"
    return title


def render(rows: Sequence[Row], window: str, now: float, *, limit: int | None = 20) -> str:
    """The whole frame as text: a title, a header, one line per scope (no trailing newline).

    Every table line is exactly ``TABLE_WIDTH`` characters, whatever the values.
    """
    lines = [_title(rows, window, now), ""]
    lines.append(_line("scope", [column.header for column in COLUMNS]))
    lines.append("─" * TABLE_WIDTH)
    shown, hidden = order(rows, limit)
    for row in shown:
        scope = _scope_cell(str(row.get("scope", "?")))
        lines.append(_line(scope, [cell(row, column) for column in COLUMNS]))
    if not rows:
        lines.append(f"(no KPIs for window {window} yet: is the worker running?)")
    if hidden:
        lines.append(f"… {hidden} more campaign(s) (raise --limit to see them)")
    return "\n".join(lines)


async def read_rows(client: Redis, prefix: str, window: str) -> list[dict[str, str]]:
    """The hashes of the scopes listed for ``window``, each with its ``scope`` added."""
    listed = await client.zrevrange(f"{prefix}scopes:{window}", 0, MAX_SCOPES_READ - 1)
    scopes = cast(list[str], listed)  # decode_responses=True and no scores: plain strings
    if not scopes:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for scope in scopes:
            pipe.hgetall(f"{prefix}kpi:{window}:{scope}")
        hashes: list[dict[str, str]] = await pipe.execute()
    # A scope whose hash has expired is still listed until the worker's cleanup: skip it.
    return [{**fields, "scope": s} for s, fields in zip(scopes, hashes, strict=True) if fields]


redact = redact_url  # the URL without its password, fit for a message on screen


def failure_line(url: str, exc: BaseException, retry_every: float | None) -> str:
    """One line, whatever the exception's text looks like."""
    line = f"funnelpulse top: cannot read Redis at {redact(url)}: {describe(exc)}"
    if retry_every is not None:
        line += f" (retrying every {retry_every:g} s, Ctrl-C quits)"
    return line


class Screen:
    """Frames on a terminal replace each other; elsewhere they are appended."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.tty = out.isatty()
        self.last_error: str | None = None
        self.frames = 0

    def frame(self, text: str) -> None:
        self.last_error = None
        before = CLEAR_SCREEN if self.tty else "\n" if self.frames else ""
        self.out.write(f"{before}{text}\n")
        self.out.flush()
        self.frames += 1

    def error(self, line: str) -> None:
        if self.tty:
            self.out.write(f"{CLEAR_SCREEN}{line}\n")
            self.out.flush()
        elif line != self.last_error:  # a log gets each new problem once, not every tick
            print(line, file=self.err, flush=True)
        self.last_error = line


async def watch(
    settings: Settings, window: str, interval: float, limit: int, once: bool, screen: Screen
) -> int:
    """Draws frames until cancelled (or once); 1 if ``once`` could not read Redis."""
    client = connect(  # one attempt per call: the loop below does the retrying
        settings.redis_url, redis_client_kwargs(settings), retries=0, decode_responses=True
    )
    try:
        while True:
            try:
                rows = await read_rows(client, settings.redis_prefix, window)
            except (RedisError, OSError) as exc:
                if once:
                    print(failure_line(settings.redis_url, exc, None), file=screen.err)
                    return 1
                screen.error(failure_line(settings.redis_url, exc, interval))
            else:
                screen.frame(render(rows, window, time.time(), limit=limit))
                if once:
                    return 0
            await asyncio.sleep(interval)
    finally:
        await client.aclose()


def run_top(settings: Settings, window: str, interval: float, limit: int, once: bool) -> int:
    """The command: exit 0 on Ctrl-C, 1 only when ``--once`` could not read Redis."""
    if window not in settings.windows:
        configured = ",".join(settings.windows)
        print(
            f"funnelpulse top: window {window} is not in FUNNELPULSE_WINDOWS ({configured}): "
            "expect no data",
            file=sys.stderr,
        )
    screen = Screen(sys.stdout, sys.stderr)
    try:
        return asyncio.run(watch(settings, window, interval, limit, once, screen))
    except KeyboardInterrupt:
        if screen.tty:
            print()
        return 0
