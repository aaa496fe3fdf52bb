"""The stages that count and merge, named once.

A stage's partitions are told apart on the wire and in the group caches by a one-letter
code: a partial snapshot's source is ``<code><partition>`` (``i3``, ``f0``), which the
merge stage keeps the newest version of. The codes are part of the stored state (merged
panes name their sources): changing one is a state-version change.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    INTAKE = "intake"  # input topics and the route topic: campaign-counted events
    FUNNEL = "funnel"  # the funnel topic: sign-ups, lead stages, purchases, by lead
    MERGE = "merge"  # partial snapshots, by scope

    @property
    def code(self) -> str:
        return self.value[0]

    def source(self, partition: int) -> str:
        """The name of one of this stage's partitions as a merge source."""
        return f"{self.code}{partition}"
