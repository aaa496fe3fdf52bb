"""Quix Streams peer, two variants (``variant`` in the config):

- ``scopes`` (system ``quix``, the parity peer): the per-minute event counts funnelpulse
  and the raw consumer keep, per (event type, scope) for the ``all``, ``channel:*`` and
  ``campaign:*`` scopes. Each event (batch messages are expanded to rows) takes its event
  time from ``ts`` and fans out to its three scopes; ``group_by`` re-keys the rows by scope
  through a repartition topic (three messages per event; one per input topic, as
  ``concat`` of the seven inputs would name its repartition topic after all of them, over
  Kafka's 255 characters), then a tumbling 60 s window counts per scope.
- ``campaign`` (system ``quix-campaign``, cheaper, not the same result): a tumbling 60 s
  count per campaign (the message key) on each input topic; no channel or ``all`` scopes,
  so no repartition topic.

Windows use the event time (``ts``) with a grace as long as the data's time span, so no
row is dropped as late. Commits every 2.8 s (Faust's default, as funnelpulse and the Faust
peers), so the harness reads the drain's end from the group lag alike. Runs in its own
virtualenv (``.bench-venv``): imports only the standard library, quixstreams and
``bench.child``.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application

from bench.child import Reporter, load_config


def _event_ms(value: Any, _key: Any, _timestamp: int, _headers: Any) -> int:
    return int(value["ts"] * 1000)


def main() -> None:
    cfg = load_config()
    reporter = Reporter(cfg)
    expected = int(cfg["expected_events"])
    scopes = cfg["variant"] == "scopes"
    rows_per_event = 3 if scopes else 1
    app = Application(
        broker_address=cfg["bootstrap"],
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        state_dir=cfg["state_dir"],
        loglevel="WARNING",
        commit_interval=2.8,
    )
    grace_ms = int(float(cfg["span_s"]) * 1000) + 120_000
    seen = {"rows": 0}

    def count(_value: Any) -> None:
        n = seen["rows"] = seen["rows"] + 1
        if n == 1:
            reporter.first()
        if n >= expected * rows_per_event:
            reporter.done(-1, n // rows_per_event, False)
            app.stop()
        elif n % 1000 == 0 and reporter.tick(-1, n // rows_per_event):
            reporter.done(-1, n // rows_per_event, True)
            app.stop()

    for name in cfg["topics"].values():
        sdf = app.dataframe(app.topic(name, value_deserializer="json"))
        if cfg["form"] == "batch":
            sdf = sdf.apply(lambda batch: batch, expand=True)
        sdf = sdf.set_timestamp(_event_ms)
        if not scopes:
            sdf = sdf.update(count)
            sdf = sdf.tumbling_window(60_000, grace_ms=grace_ms).count().final()
            continue
        sdf = sdf.apply(
            lambda ev: ["all", f"channel:{ev['channel']}", f"campaign:{ev['campaign_id']}"],
            expand=True,
        )
        sdf = sdf.group_by(lambda scope: scope, name="scope")
        sdf = sdf.update(count)
        sdf = sdf.tumbling_window(60_000, grace_ms=grace_ms).count().final()
    app.run()


if __name__ == "__main__":
    main()
