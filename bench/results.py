"""Result records of the latency and memory phases (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LatencyResult:
    name: str  # e.g. "1k ev/s"
    target_rate: float
    sent_rate: float = 0.0
    events: int = 0
    seconds: float = 0.0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    signup_p99: float | None = None  # sign-ups pass the funnel topic too
    invisible: int = 0
    over: int = 0
    worker_cpu: float | None = None  # cores used by the worker while producing
    waited: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MemoryResult:
    campaigns: int
    store: str = "memory"  # FUNNELPULSE_STORE of the worker
    partial: bool = False  # the time budget ran out before every campaign was loaded
    campaigns_loaded: int = 0
    baseline_rss_mb: float | None = None  # VmRSS of the started worker before the data
    projected_peak_mb: float | None = None  # partial only: peak scaled to all campaigns
    events: int = 0
    events_per_campaign: int = 0
    messages: int = 0
    preload_s: float = 0.0
    drain_rate: float | None = None
    end_by: str = ""
    peak_rss_mb: float | None = None  # VmHWM at the end
    drain_rss_max_mb: float | None = None  # largest VmRSS sampled while draining
    steady_rss_mb: float | None = None  # VmRSS after the settle period
    settle_s: float = 0.0
    disk_mb: float | None = None  # bytes under the worker's data dir after the settle period
    state_keys: dict[str, float] = field(default_factory=dict)
    exact: str = "n/a"
    note: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RestartRep:
    """One ``kill -9`` and restart (or takeover): seconds from its start (see the report's
    definition) to each milestone; None: not reached within the patience."""

    web: float | None = None  # the new process answered /metrics (restart only)
    counted: float | None = None  # its (the survivor's) counters hold every probe event
    published: float | None = None  # every probe campaign's 24 h Redis hash holds its probes
    owning: float | None = None  # takeover: the survivor publishes every partition
    probes: int = 0
    exact: str = "n/a"
    note: str = ""
    profile: str | None = None  # py-spy of the new process from web up (--profile)


@dataclass
class RestartResult:
    """The restarts of one store at one history size (or the takeovers of one store)."""

    store: str
    level: int  # history multiple (1, 4, 16); 0 for the takeover
    history_events: int = 0  # events in the input topics before the kills
    changelog_records: int | None = None  # end offsets of the app's changelogs at the kill
    drain_s: float | None = None  # the (unmeasured) warm-up drain of this level's new events
    victim_partitions: list[list[int]] = field(default_factory=list)  # takeover, per rep
    reps: list[RestartRep] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["reps"] = [dict(r.__dict__) for r in self.reps]
        return out
