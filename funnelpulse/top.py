"""``funnelpulse top``: the KPIs of one window as a live table in the terminal.

Operators want to see "is the funnel alive, what does a lead cost right now" without a
dashboard. The table is read from the Redis snapshots the worker publishes (SPEC §3), so
it shows exactly what other services read. Rendering is a pure function over plain dicts
(testable without Redis, and the same text whether or not stdout is a terminal); reading
is one small async function; the loop around them only redraws and retries. Redis being
away is a normal state here: a one-line message, and the next tick tries again.

The trap is the terminal: the full table is 144 characters, and a row that wraps turns the
table into noise. Each frame asks the terminal its width (``shutil.get_terminal_size``;
a pipe gets the full table) and keeps the columns that fit, most telling first (spend,
CPL, clicks, sign-ups, ...). Breaches are red: the CPL of a scope whose ``cpl_spike``
condition holds, and a cost KPI left undefined although money was spent. Colour is only
for a terminal (and never with ``NO_COLOR``), and the escape codes wrap padded cells, so
they never count towards a width. A library such as rich (tables, live display) could
replace this hand-made layout; it is not a dependency today.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from metrics.alerts import CplSpikeRule, breach, reading_from
from metrics.durations import format_duration, parse_seconds
from metrics.redis_client import connect, describe

from .credentials import redact_url
from .security import redis_client_kwargs
from .settings import Settings

Row = Mapping[str, object]  # one Redis hash as read (strings) or built by hand (numbers)

ABSENT = "—"
CLEAR_SCREEN = "\x1b[H\x1b[2J"
RED, RESET = "\x1b[1;31m", "\x1b[0m"
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
MIN_SCOPE_WIDTH = 12
GAP = "  "
TABLE_WIDTH = SCOPE_WIDTH + sum(len(GAP) + c.width for c in COLUMNS)
# What a narrow terminal keeps first: is money going out, what does a lead cost, is traffic
# arriving. Columns are shown in table order; this only decides which ones stay.
_FIRST = ("spend", "cpl", "clicks", "signups", "roas", "ctr", "impressions", "cac")
PRIORITY = _FIRST + tuple(c.field for c in COLUMNS if c.field not in _FIRST)


@dataclass(frozen=True)
class Layout:
    """The columns a frame shows, and the scope column's width."""

    scope_width: int
    columns: tuple[Column, ...]

    @property
    def width(self) -> int:
        return self.scope_width + sum(len(GAP) + c.width for c in self.columns)


def fitting(costs: Sequence[int], budget: int) -> list[bool]:
    """Which items to keep, taken in order while their costs fit in ``budget``."""
    kept = []
    for cost in costs:
        kept.append(cost <= budget)
        budget -= cost if kept[-1] else 0
    return kept


def layout(width: int | None) -> Layout:
    """The columns that fit in ``width`` characters (all of them for None), in table order;
    the scope column (at least MIN_SCOPE_WIDTH when a column is kept) takes the rest."""
    if width is None or width >= TABLE_WIDTH:
        return Layout(SCOPE_WIDTH, COLUMNS)
    ranked = sorted(COLUMNS, key=lambda c: PRIORITY.index(c.field))
    scope = min(SCOPE_WIDTH, max(MIN_SCOPE_WIDTH, width // 3))
    keep = fitting([len(GAP) + c.width for c in ranked], width - scope)
    fields = {c.field for c, kept in zip(ranked, keep, strict=True) if kept}
    columns = tuple(c for c in COLUMNS if c.field in fields)
    return Layout(max(1, width - Layout(0, columns).width), columns)


def clip(line: str, width: int | None) -> str:
    """``line`` cut to ``width`` characters, the cut marked with an ellipsis."""
    if width is None or len(line) <= width:
        return line
    return line[: max(0, width - 1)] + "…"


def window_name(text: str) -> str:
    """``--window`` in its canonical spelling (``300s`` → ``5m``), as the keys use it."""
    try:
        return format_duration(parse_seconds(text))
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


def breached(row: Row, alerting: Collection[str] = ()) -> set[str]:
    """The fields to show in red: the CPL of a scope in ``alerting``, and every cost KPI
    that is undefined although money was spent (spend without leads, without customers)."""
    spent = (number(row, "spend") or 0.0) > 0
    red = {
        c.field
        for c in COLUMNS
        if spent and c.style == "money" and c.field != "spend" and number(row, c.field) is None
    }
    return red | {"cpl"} if row.get("scope") in alerting else red


def _paint(text: str, red: bool) -> str:
    return f"{RED}{text}{RESET}" if red else text


def _line(view: Layout, scope: str, cells: Sequence[str], red: Collection[str] = ()) -> str:
    parts = [clip(scope, view.scope_width).ljust(view.scope_width)]
    for column, text in zip(view.columns, cells, strict=True):
        parts.append(_paint(text.rjust(column.width), column.field in red))
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


def _title(rows: Sequence[Row], window: str, now: float, width: int | None) -> str:
    """The title's parts that fit in ``width``; the program's name goes first (the user
    typed it), then the date and time."""
    clock = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [("funnelpulse top", 4), (f"window {window}", 0), (clock, 3)]
    parts.append((f"{len(rows)} scopes", 1))
    updates = [u for u in (number(row, "updated_at") for row in rows) if u is not None]
    if updates:
        parts.append((f"newest update {max(0.0, now - max(updates)):.0f} s ago", 2))
    ranked = sorted(parts, key=lambda part: part[1])
    keep = fitting([len(text) + 3 for text, _ in ranked], (width or TABLE_WIDTH) + 3)  # " · "
    kept = {text for (text, _), fits in zip(ranked, keep, strict=True) if fits}
    return clip(" · ".join(text for text, _ in parts if text in kept), width)


def render(
    rows: Sequence[Row],
    window: str,
    now: float,
    *,
    limit: int | None = 20,
    width: int | None = None,
    colour: bool = False,
    alerting: Collection[str] = (),
) -> str:
    """The whole frame as text: a title, a header, one line per scope (no trailing newline).

    ``width=None`` shows every column and each table line is exactly ``TABLE_WIDTH``
    characters, whatever the values; a width keeps the columns that fit (``layout``) and
    no line is longer. ``colour`` paints the ``breached`` cells red (ANSI).
    """
    view = layout(width)
    lines = [_title(rows, window, now, width), ""]
    lines.append(_line(view, "scope", [column.header for column in view.columns]))
    lines.append("─" * view.width)
    shown, hidden = order(rows, limit)
    for row in shown:
        red = breached(row, alerting) if colour else set()
        cells = [cell(row, column) for column in view.columns]
        lines.append(_line(view, str(row.get("scope", "?")), cells, red))
    if not rows:
        lines.append(clip(f"(no KPIs for window {window} yet: is the worker running?)", width))
    if hidden:
        lines.append(clip(f"… {hidden} more campaign(s) (raise --limit to see them)", width))
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


def _reading_row(row: Row) -> dict[str, float]:
    return {"spend": number(row, "spend") or 0.0, "signups": int(number(row, "signups") or 0)}


async def read_alerting(
    client: Redis, prefix: str, rule: CplSpikeRule, scopes: Iterable[str]
) -> set[str]:
    """Which of ``scopes`` meet the ``cpl_spike`` condition now, from the rule's two windows.

    This is the condition, not the worker's alert state (which also waits for two ticks in
    a row and clears with hysteresis): that state is not kept in Redis. Channels are not
    evaluated, as in the worker.
    """
    candidates = [scope for scope in scopes if not scope.startswith("channel:")]
    if not candidates:
        return set()
    async with client.pipeline(transaction=False) as pipe:
        for scope in candidates:
            pipe.hgetall(f"{prefix}kpi:{rule.short_window}:{scope}")
            pipe.hgetall(f"{prefix}kpi:{rule.long_window}:{scope}")
        hashes: list[dict[str, str]] = await pipe.execute()
    pairs = zip(candidates, hashes[::2], hashes[1::2], strict=True)
    return {
        scope
        for scope, short, long in pairs
        if long and breach(rule, reading_from(_reading_row(short), _reading_row(long)), rule.factor)
    }


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
        self.colour = self.tty and not os.environ.get("NO_COLOR")  # https://no-color.org
        self.last_error: str | None = None
        self.frames = 0

    def width(self) -> int | None:
        """The terminal's width, asked at every frame (it may have been resized); None,
        meaning every column, when the output is not a terminal and COLUMNS is not set."""
        if not self.tty and "COLUMNS" not in os.environ:
            return None
        return shutil.get_terminal_size((TABLE_WIDTH, 24)).columns

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


async def read_frame(
    client: Redis, settings: Settings, window: str, limit: int, screen: Screen
) -> str:
    """One frame from Redis, laid out for the screen (breaches read only to be coloured)."""
    rows = await read_rows(client, settings.redis_prefix, window)
    alerting: set[str] = set()
    if screen.colour:
        shown = [str(row.get("scope", "")) for row in order(rows, limit)[0]]
        alerting = await read_alerting(client, settings.redis_prefix, settings.cpl_rule, shown)
    return render(
        rows, window, time.time(), limit=limit, width=screen.width(), colour=screen.colour,
        alerting=alerting,
    )  # fmt: skip


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
                frame = await read_frame(client, settings, window, limit, screen)
            except (RedisError, OSError) as exc:
                if once:
                    print(failure_line(settings.redis_url, exc, None), file=screen.err)
                    return 1
                screen.error(failure_line(settings.redis_url, exc, interval))
            else:
                screen.frame(frame)
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
