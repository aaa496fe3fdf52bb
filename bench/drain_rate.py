"""How fast does one worker drain a preloaded backlog? (issue #3's baseline numbers)

Preloads ``--events`` simulator events into fresh topics (batch or single-event
messages), then starts a worker and measures events/s from its first processed event
until everything is counted, reading the worker's own /metrics.

    .venv/bin/python -m bench.drain_rate --mode batch --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.spy import record
from funnelpulse.settings import Settings
from funnelpulse.simulator import simulate
from streams.topics import TopicNames, ensure_topics


def counted(url: str) -> float:
    wanted = "name[]=marketing_events_total&name[]=marketing_events_duplicate_total"
    text = httpx.get(f"{url}/metrics?{wanted}", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("marketing_events_total", "marketing_events_duplicate_total")
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["batch", "single"], default="batch")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--profile", help="py-spy the worker while it drains: collapsed stacks to this file"
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    args = parser.parse_args()
    ns = f"drain{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "FUNNELPULSE_APP_ID": ns, "FUNNELPULSE_TOPIC_PREFIX": f"{ns}.",
           "FUNNELPULSE_REDIS_PREFIX": f"{ns}:", "FUNNELPULSE_PARTITIONS": str(args.partitions),
           "FUNNELPULSE_WEB_PORT": "6099", "FUNNELPULSE_LOG_LEVEL": "warn",
           "FUNNELPULSE_DATA_DIR": tempfile.mkdtemp()}  # fmt: skip
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    started = time.time()
    sent = asyncio.run(
        simulate(settings.kafka_bootstrap_servers, TopicNames.from_settings(settings).inputs,
                 1e9, 7, None, args.mode == "single", 200, lambda n, _t: None, limit=args.events)
    )  # fmt: skip
    print(
        f"preloaded {sent:,} events ({args.mode}) in {time.time() - started:.1f} s", file=sys.stderr
    )
    worker = subprocess.Popen([sys.executable, "-m", "funnelpulse.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = "http://127.0.0.1:6099"
    try:
        first = None
        while True:
            time.sleep(0.2)
            try:
                n = counted(url)
            except httpx.HTTPError:
                continue
            if n > 0 and first is None:
                first = (time.monotonic(), n)
                if args.profile:
                    record(worker.pid, Path(args.profile), args.profile_seconds, rate=250)
            if n >= sent:
                break
        assert first is not None
        elapsed = time.monotonic() - first[0]
        rate = (sent - first[1]) / elapsed
        print(f"{args.mode}: {sent:,} events drained at {rate:,.0f} events/s ({elapsed:.1f} s)")
    finally:
        worker.terminate()
        worker.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
