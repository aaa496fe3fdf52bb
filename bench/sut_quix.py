"""Quix Streams peer: per-minute counts per campaign (the message key) per event type,
a tumbling 60 s window count on each input topic; batch messages are expanded to rows.

Runs in its own virtualenv (``.bench-venv``): imports only the standard library,
quixstreams, orjson and ``bench.child``.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application

from bench.child import Reporter, load_config


def main() -> None:
    cfg = load_config()
    reporter = Reporter(cfg)
    expected = int(cfg["expected_events"])
    app = Application(
        broker_address=cfg["bootstrap"],
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        state_dir=cfg["state_dir"],
        loglevel="WARNING",
    )
    seen = {"events": 0}

    def count(_value: Any) -> None:
        n = seen["events"] = seen["events"] + 1
        if n == 1:
            reporter.first()
        if n >= expected:
            reporter.done(-1, n, False)
            app.stop()
        elif n % 1000 == 0 and reporter.tick(-1, n):
            reporter.done(-1, n, True)
            app.stop()

    for name in cfg["topics"].values():
        sdf = app.dataframe(app.topic(name, value_deserializer="json"))
        if cfg["form"] == "batch":
            sdf = sdf.apply(lambda batch: batch, expand=True)
        sdf = sdf.update(count)
        sdf = sdf.tumbling_window(60_000).count().final()
    app.run()


if __name__ == "__main__":
    main()
