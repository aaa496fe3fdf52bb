"""A stop (SIGTERM, Ctrl-C) lets the batch under way finish before the tables close.

Faust's ``App.on_stop`` stops the consumer and closes every table's store
(``_stop_consumer`` → ``tables.stop``) *before* it stops its children, the agents among
them. A batch under way then went on against closed stores: one that read a RocksDB
store after an await asked Faust for the partition's database again, RocksDB refused
(“lock hold by current process”: the dedup index still held the old handle), the
intake agent crashed mid-batch, and the acks of that half-written batch were committed
on the way out (the SIGTERM fault test: 1,149 USD of spend short after the restart).

So ``on_stop`` first runs ``before_stop`` — the app closes the ownership gate and waits
for the batch under way (``Ownership.stop``) — and only then lets Faust stop the consumer:
the commit Faust makes on stopping covers exactly the batches that finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust


class GracefulApp(faust.App):
    """``faust.App`` with a hook that runs before Faust stops its consumer and tables."""

    before_stop: Callable[[], Awaitable[object]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()
