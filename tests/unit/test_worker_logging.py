"""The worker's log level holds for every logger: a debug call below it builds no record
(mode leaves the root logger at DEBUG, and Faust's recovery logs per changelog message)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from funnelpulse.settings import Settings
from funnelpulse.worker import LEVELS, Worker
from streams.app import create_app


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


@pytest.mark.parametrize("level", ["warn", "info"])
def test_no_logger_builds_records_below_the_chosen_level(
    level: str, restored_logging: None
) -> None:
    settings = Settings.from_env({"FUNNELPULSE_LOG_LEVEL": level})
    loop = asyncio.new_event_loop()
    try:
        fp = create_app(settings)
        worker = Worker(fp.app, loglevel=LEVELS[level], quiet=True, redirect_stdouts=False,
                        loop=loop)  # fmt: skip
        worker._setup_logging()
        loggers = [logging.getLogger(), logging.getLogger("faust.tables.recovery"),
                   logging.getLogger("aiokafka"), logging.getLogger("streams.app")]  # fmt: skip
        assert not any(lg.isEnabledFor(LEVELS[level] - 1) for lg in loggers)
        assert logging.getLogger("streams.app").isEnabledFor(LEVELS[level])
    finally:
        loop.close()
