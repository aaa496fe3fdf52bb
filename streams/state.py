"""Per-lead and per-customer funnel state, and event_id dedup, as pure logic.

The trap is replay: after a crash, Kafka re-delivers messages whose effects may already
be stored. Every "first" (first sight of an event_id, a lead's first entry into a stage,
a customer's first purchase) therefore records *where* it happened, as a ``Marker``
(source topic index, offset). Seeing the same thing again at the same marker is a replay
and is treated exactly like the first time; at another marker it is a true repeat.
Whether a replayed contribution is added again is decided by the pane's high-water marks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from enum import Enum

from .id_index import Marker


class Seen(Enum):
    NEW = "new"  # first time: count it
    REPLAY = "replay"  # the very message that counted it first, re-delivered: count again
    DUPLICATE = "duplicate"  # another message with the same identity: never count


def first_sight(store: MutableMapping[str, Marker], key: str, marker: Marker) -> Seen:
    """Records ``key`` at ``marker`` if new; says whether this sighting counts."""
    known = store.get(key)
    if known is None:
        store[key] = marker
        return Seen.NEW
    return Seen.REPLAY if tuple(known) == marker else Seen.DUPLICATE


@dataclass
class Lead:
    """First-touch attribution of a lead, and where it first entered each stage.

    ``campaign == ""`` means the lead's stages were seen before its sign-up.
    """

    campaign: str
    channel: str
    stages: dict[str, Marker] = field(default_factory=dict)

    def to_json(self) -> list[object]:
        return [self.campaign, self.channel, {k: list(v) for k, v in self.stages.items()}]

    @classmethod
    def from_json(cls, raw: list[object]) -> Lead:
        campaign, channel, stages = raw
        assert isinstance(campaign, str) and isinstance(channel, str) and isinstance(stages, dict)
        return cls(campaign, channel, {k: (v[0], v[1], v[2]) for k, v in stages.items()})


def enter_stage(lead: Lead, stage: str, marker: Marker) -> Seen:
    """Each lead counts at most once per stage."""
    return first_sight(lead.stages, stage, marker)
