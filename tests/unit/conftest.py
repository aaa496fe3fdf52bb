"""Fixtures of the store tests (helpers in ``tests/unit/stores.py``)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from .stores import Changelog


@pytest.fixture
def changelog(monkeypatch: pytest.MonkeyPatch) -> Changelog:
    """The table views' changelog sends, recorded with futures the test resolves."""
    log = Changelog()
    monkeypatch.setattr("streams.table_state.send_changelog", log.send)
    return log


@pytest.fixture
def rocks_app(tmp_path: Path) -> faust.App:
    """A Faust app whose tables are RocksDB stores under ``tmp_path``."""
    return faust.App("store-test", store="rocksdb://", datadir=str(tmp_path))
