"""Fixtures of the store tests (helpers in ``tests/unit/stores.py``)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from streams import local_store

from .stores import Changelog


@pytest.fixture(autouse=True)
def land_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """RocksDB stores write acked records to disk at once, not ``LAND_AFTER`` seconds
    later: the tests read the disk right after an ack (``test_local_store`` sets the delay
    on the stores whose landing it tests)."""
    monkeypatch.setattr(local_store, "LAND_AFTER", 0.0)


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
