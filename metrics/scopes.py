"""Scope names (SPEC §2): ``all``, ``channel:<channel>``, ``campaign:<campaign_id>``."""

from __future__ import annotations

ALL = "all"


def scopes_for(campaign: str, channel: str) -> tuple[str, str, str]:
    """Every scope one event counts in."""
    return (ALL, f"channel:{channel}", f"campaign:{campaign}")


def kind_of(scope: str) -> str:
    """``all``, ``channel`` or ``campaign``: the Prometheus ``scope`` label."""
    return scope.partition(":")[0]
