"""The in-stream ``cpl_spike`` alert (SPEC §3 "Alerts"), as pure rule and state.

CPL over a short window is compared with its baseline over a long window: the alert
fires when short CPL exceeds ``factor`` × baseline, with at least ``min_leads`` leads in
the baseline and ``min_spend`` spend in the short window; and also when spend passes
``min_spend`` while the short window has no leads at all (the broken-form case, where the
ratio is undefined, not infinite). Hysteresis: a firing alert resolves only once short CPL
is back under ``clear_factor`` × baseline (below ``factor``), so a CPL hovering around the
threshold does not flap. Counts of different topics land a moment apart while a backlog
is being read (spend merged, its sign-ups not yet): the caller does not evaluate while the
worker is catching up, and a breach must be seen on two consecutive evaluations before it
fires, so the tail end of a burst cannot page anybody either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALERT = "cpl_spike"


@dataclass(frozen=True)
class CplSpikeRule:
    short_window: str = "15m"
    long_window: str = "24h"
    factor: float = 2.0
    clear_factor: float = 1.5
    min_leads: int = 20
    min_spend: float = 50.0


@dataclass(frozen=True)
class Reading:
    """Spend (reporting currency) and leads in both windows, for one scope."""

    short_spend: float
    short_leads: int
    long_spend: float
    long_leads: int

    @property
    def current_cpl(self) -> float | None:
        return self.short_spend / self.short_leads if self.short_leads else None

    @property
    def baseline_cpl(self) -> float | None:
        return self.long_spend / self.long_leads if self.long_leads else None


def breach(rule: CplSpikeRule, reading: Reading, factor: float) -> str | None:
    """Why the condition holds at this factor, or None."""
    if reading.short_spend < rule.min_spend:
        return None
    if reading.short_leads == 0:
        return "spend_without_leads"
    baseline = reading.baseline_cpl
    current = reading.current_cpl
    if baseline is None or reading.long_leads < rule.min_leads or current is None:
        return None
    return "cpl_above_baseline" if current > factor * baseline else None


@dataclass
class Active:
    scope: str
    reason: str
    started_at: float


@dataclass
class AlertTracker:
    """Which scopes are firing; turns readings into firing/resolved events."""

    rule: CplSpikeRule
    active: dict[str, Active] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # scope → first breach seen

    def observe(self, scope: str, reading: Reading, now: float) -> dict[str, Any] | None:
        current = self.active.get(scope)
        if current is None:
            reason = breach(self.rule, reading, self.rule.factor)
            if reason is None:
                self.pending.pop(scope, None)
                return None
            if scope not in self.pending:
                self.pending[scope] = now
                return None
            del self.pending[scope]
            self.active[scope] = Active(scope, reason, now)
            return event(self.rule, "firing", scope, reason, reading, now, now)
        reason = breach(self.rule, reading, self.rule.clear_factor)
        if reason is not None:
            current.reason = reason
            return None
        del self.active[scope]
        return event(self.rule, "resolved", scope, current.reason, reading, current.started_at, now)

    def forget(self, scope: str) -> None:
        self.active.pop(scope, None)
        self.pending.pop(scope, None)

    def watched(self) -> set[str]:
        """Scopes to evaluate again even if unchanged: pending or firing."""
        return set(self.pending) | set(self.active)


def event(
    rule: CplSpikeRule, state: str, scope: str, reason: str, reading: Reading,
    started_at: float, now: float,
) -> dict[str, Any]:  # fmt: skip
    kind, _, name = scope.partition(":")
    return {
        "alert": ALERT,
        "state": state,
        "scope": scope,
        "campaign": name if kind == "campaign" else "",
        "reason": reason,
        "current_cpl": _round(reading.current_cpl),
        "baseline_cpl": _round(reading.baseline_cpl),
        "factor": rule.factor,
        "short_window": rule.short_window,
        "long_window": rule.long_window,
        "short_spend": round(reading.short_spend, 6),
        "short_leads": reading.short_leads,
        "long_spend": round(reading.long_spend, 6),
        "long_leads": reading.long_leads,
        "started_at": started_at,
        "at": now,
    }


def reading_from(short: Mapping[str, Any], long: Mapping[str, Any]) -> Reading:
    """A reading from two KPI snapshots (money already in reporting-currency units)."""
    return Reading(
        float(short.get("spend", 0.0)), int(short.get("signups", 0)),
        float(long.get("spend", 0.0)), int(long.get("signups", 0)),
    )  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
