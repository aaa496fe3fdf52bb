"""A recovered partition's stored partial groups, read a slice at a time.

After a recovery a counting stage must learn two things from every group a partition
holds: the highest source offsets its panes hold (the applied high waters: above them a
batch is counted in one pass, ``batch.count_group``), and which groups hold a pane above
the partition's sent mark (their last snapshot may have been lost in a crash: they go to
the merge stage again). Read at once, that walk grew with the history on the first
batch's path; ``PartialCounts.read_stored`` makes it a slice per snapshot tick instead,
and this object keeps what the slices found. Only the marks are decoded
(``pane_groups.partial_marks``), never the counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .pane_groups import GroupKey, group_key_of, partial_marks, split_group_key


@dataclass
class StoredWalk:
    """A recovered partition's stored groups, read a slice at a time: the high waters
    found so far and, when ``mark`` is given (the stored sent mark), the groups holding
    a pane above it go to ``resend``."""

    mark: dict[int, int] | None
    resend: set[GroupKey]
    after: str | None = None  # the last key read
    high: dict[int, int] = field(default_factory=dict)
    groups: int = 0  # read so far
    found: int = 0  # of them, to send again
    started: float = field(default_factory=time.monotonic)

    def read(self, items: list[tuple[str, Any]]) -> None:
        mark = self.mark
        for full, raw in items:
            key = group_key_of(full)
            if key is None:
                continue
            self.groups += 1
            above = False
            for flat in partial_marks(raw):
                for j in range(0, len(flat), 2):
                    topic, offset = flat[j], flat[j + 1]
                    if offset > self.high.get(topic, -1):
                        self.high[topic] = offset
                    if mark is not None and offset > mark.get(topic, -1):
                        above = True
            if above:
                self.resend.add(split_group_key(key))
                self.found += 1
