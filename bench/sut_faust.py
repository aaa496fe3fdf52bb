"""Faust peers: ``bare`` (an agent doing nothing) and ``naive`` (one hopping-window table
write per event, 1 h size / 1 min step, the design funnelpulse must beat by far).

Run as ``python -m bench.sut_faust``; the variant comes from the config. Both keep Faust's
default commit interval (2.8 s), as funnelpulse does.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import Any

import faust
import orjson

from bench.child import Reporter, load_config

cfg = load_config()
reporter = Reporter(cfg)
app = faust.App(
    cfg["app_id"],
    broker=f"kafka://{cfg['bootstrap']}",
    store="memory://",
    datadir=cfg["state_dir"],  # a temp dir the harness removes, not ./<app id>-data
    topic_partitions=int(cfg["partitions"]),
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(*cfg["topics"].values(), key_serializer="raw", value_serializer="raw")
EXPECTED = int(cfg["expected_messages"])

if cfg["variant"] == "bare":

    @app.agent(source)
    async def bare(stream: Any) -> None:
        messages = 0
        async for _value in stream:
            if not messages:
                reporter.first()
            messages += 1
            if messages >= EXPECTED:
                reporter.done(messages, -1, False)
            elif messages % 1000 == 0 and reporter.tick(messages, -1):
                reporter.done(messages, -1, True)
                await asyncio.sleep(3600)  # stop consuming; the harness stops the worker

else:
    counts = app.Table("naive-counts", default=int, partitions=int(cfg["partitions"]))
    windowed = counts.hopping(3600, 60, expires=timedelta(hours=2)).relative_to_stream()

    @app.agent(source)
    async def naive(stream: Any) -> None:
        messages = events = 0
        async for event in stream.events():
            if not messages:
                reporter.first()
            doc = orjson.loads(event.value)
            for ev in doc if isinstance(doc, list) else (doc,):
                windowed[ev["campaign_id"]] += 1  # 60 windows, 60 changelog messages
                events += 1
            messages += 1
            if messages >= EXPECTED:
                reporter.done(messages, events, False)
            elif reporter.tick(messages, events):
                reporter.done(messages, events, True)
                await asyncio.sleep(3600)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
