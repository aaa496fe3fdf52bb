"""The Faust worker process, with logging that does not cost throughput.

mode's log setup leaves the root logger at DEBUG whatever ``--loglevel`` says (only its
handlers filter), so every ``log.debug`` builds a record first: Faust's recovery logs two
per changelog message a standby copy reads (7 % of a worker's CPU with two workers, by
py-spy), and aiokafka one per produced record. The worker sets the root logger to the
chosen level and clamps the client libraries to it (never below WARNING).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Any

import faust

from .connectivity import client_errors, explain
from .security import describe_kafka
from .settings import Settings

QUIET_LOGGERS = ("aiokafka", "kafka", "faust.transport", "mode.threads")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


class Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))


def freeze_start_up_objects() -> None:
    """Moves every object made so far (modules, classes, functions, the app: 75,000
    tracked by the collector after the imports alone, none of them ever garbage) out of
    the collector's sight (``gc.freeze``).

    Why: Faust's RocksDB store runs a full collection for each table at every rebalance
    (``Store.revoke_partitions``, to let go of closed databases): 8 tables, each walking
    every object of the process (27 ms each here) — a fifth of a restarted worker's
    Python time before its first batch (py-spy, the restart benchmark). The idle release
    and Python's own oldest generation collect past them too. The trap: an object frozen
    here that later becomes garbage in a cycle is never freed; what exists before the
    worker starts lives as long as the process anyway."""
    gc.collect()
    gc.freeze()


def run_worker(settings: Settings) -> int:
    """Creates the topics, then runs until SIGTERM/SIGINT (graceful: flush and commit)."""
    from streams.app import create_app
    from streams.peers import advertised_url
    from streams.topics import TopicLayoutError, ensure_topics

    from .data_dir import DataDirInUse, claim_data_dir
    from .malloc import limit_arenas, running_on

    try:
        url = advertised_url(settings.web_url, settings.web_host, settings.web_port)
        claim = claim_data_dir(settings.data_dir, url)  # held until the process exits
    except DataDirInUse as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    limit_arenas()  # before Faust starts its consumer thread (funnelpulse/malloc.py)
    print(f"worker: allocator {running_on()}", file=sys.stderr)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with client_errors() as logged:
        try:
            created = loop.run_until_complete(ensure_topics(settings))
        except TopicLayoutError as exc:  # counting on would put events in wrong partitions
            print(f"worker: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # unreachable, or refused our credentials: say which
            print(f"worker: cannot use Kafka at {describe_kafka(settings)}: "
                  f"{explain(exc, logged)}", file=sys.stderr)  # fmt: skip
            return 1
    if created:
        print(f"created topics: {', '.join(created)}", file=sys.stderr)
    fp = create_app(settings, group_member=claim.group_member)
    freeze_start_up_objects()
    options: dict[str, Any] = {"loglevel": LEVELS[settings.log_level], "quiet": True,
                               "redirect_stdouts": False, "loop": loop}  # fmt: skip
    Worker(fp.app, **options).execute_from_commandline()
    return 0
