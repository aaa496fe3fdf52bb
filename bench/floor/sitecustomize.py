"""Diagnostic only: funnelpulse's worker with an intake that counts nothing.

    PYTHONPATH=$PWD/bench/floor python -m bench.run --systems faust-bare,funnelpulse \
        --inputs single --reps 1 --phases "" --events 300000 --output /tmp/floor.md

Python imports ``sitecustomize`` at start-up from the path; in a funnelpulse worker this
one replaces the intake's batch handler with one that only marks the messages processed
(so the harness sees progress), leaving the rest of the app as it is: Faust, the three
agents, the tables, the timers, the publisher. The difference between this worker and
the bare Faust agent is what funnelpulse's Faust app costs before it counts anything
(docs/PERFORMANCE.md). Never used by the product or by ``make bench``.
"""

from __future__ import annotations

import sys
from typing import Any

if "funnelpulse.cli" in sys.orig_argv:
    import streams.intake as intake_module

    async def _mark_processed(self: Any, messages: Any) -> None:
        last = {(m.topic, m.partition): m.offset for m in messages}
        self.counts.metrics.processed.labels("intake").inc(len(messages))
        self.progress.done(last, len(messages))

    intake_module.Intake.handle = _mark_processed  # type: ignore[method-assign]
