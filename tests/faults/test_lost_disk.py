"""The RocksDB store losing its disk: ``kill -9``, the worker's data folder
(``FUNNELPULSE_DATA_DIR``) deleted, restart; then ``kill -9`` again with the disk kept.
Every count and KPI exact at the end.

What it guards: a worker that lost its local store must rebuild every table from the
changelogs (nothing on disk claims an offset any more) and say so on ``/healthz``
(``restore.rebuilding`` = every partition), while a restart that kept its disk starts
from the stored offsets. The deleted folder is the worst case for the pane marks: the
input re-read after the restart meets marks restored from the changelog only.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Figures, Stack
from tests.integration.scenario import build

from .conftest import Scale
from .harness import Streaming, health
from .probes import kill9

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.seconds(60)]
SEED = 20261206


async def test_kill9_with_the_local_store_deleted_recounts_exactly(
    stack: Stack, namespace: str, tmp_path: Path, redis: Redis, scale: Scale, figures: Figures
) -> None:
    sc = build(seed=SEED, now=time.time(), target_events=scale.events // 4)
    run = Streaming(stack, namespace, tmp_path, redis, sc, rate=150, FUNNELPULSE_STORE="rocksdb")
    restores: list[tuple[str, dict[str, Any], float]] = []
    try:
        await run.start()
        for share, lose_disk in ((1 / 3, True), (2 / 3, False)):
            await run.reach(share)
            assert run.worker is not None and not run.feed.done
            data = Path(run.worker.env["FUNNELPULSE_DATA_DIR"])
            assert any(data.rglob("*.sst")) or any(data.rglob("*.log")), "nothing on disk"
            kill9(run.worker)
            if lose_disk:
                shutil.rmtree(data)
            recovery = await run.start()
            restore = (await health(run.worker))["restore"]
            restores.append(("disk lost" if lose_disk else "disk kept", restore, recovery.ready))
            assert restore["store"] == "rocksdb" and restore["state"] == "done"
            assert restore["partitions"] > 0 and restore["progress"] == 1.0, restore
            if lose_disk:  # nothing local: every partition read from the changelog's start
                assert restore["rebuilding"] == restore["partitions"], restore
            else:  # the stored offsets were found
                assert restore["rebuilding"] < restore["partitions"], restore
        await run.finish()
    finally:
        code = run.close()
    assert code == 0, run.worker.tail() if run.worker else ""
    (_, lost, lost_ready), (_, kept, kept_ready) = restores
    figures.append(
        f"lost disk: kill -9 + FUNNELPULSE_DATA_DIR deleted at 1/3 of {run.feed.events_sent:,} "
        f"events, kill -9 with the disk kept at 2/3; restore after the lost disk: "
        f"{lost['rebuilding']}/{lost['partitions']} partitions rebuilt, {lost['to_apply']:,} "
        f"changelog offsets read; with the disk kept: {kept['rebuilding']}/{kept['partitions']} "
        f"rebuilt, {kept['to_apply']:,} offsets read; restart -> /healthz ok {lost_ready:.1f} s "
        f"(disk lost) and {kept_ready:.1f} s (disk kept); recount: exact (every count and KPI)"
    )
