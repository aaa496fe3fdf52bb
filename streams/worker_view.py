"""What the HTTP views read of a worker: a narrow view, not the app.

The views (``web.py``, ``queries.py``) are registered by ``app.py``; were they to import
the app's class for its type, the two would import each other. They take this protocol
instead, which ``app.FunnelPulse`` satisfies: the Faust app (for routing and the web
server), the settings, the publisher's state, and the few facts of progress that
``/healthz`` reports (the restore's among them).
"""

from __future__ import annotations

from typing import Any, Protocol

from faust import App
from prometheus_client import CollectorRegistry

from funnelpulse.settings import Settings
from metrics.windows import WindowSpec

from .assignment import AssignmentCheck
from .events import Limits
from .publisher import KpiPublisher
from .restore import RestoreProgress
from .topics import TopicNames


class WorkerView(Protocol):
    app: App
    settings: Settings
    specs: tuple[WindowSpec, ...]
    names: TopicNames
    registry: CollectorRegistry
    publisher: KpiPublisher
    restore: RestoreProgress
    assignment: AssignmentCheck

    def clock(self) -> float: ...

    def limits(self, now: float) -> Limits: ...

    @property
    def merged(self) -> Any: ...

    @property
    def last_progress(self) -> float: ...

    @property
    def recovering(self) -> bool: ...

    @property
    def resending(self) -> int: ...

    @property
    def reading_stored(self) -> int: ...
