"""A worker's claim on its data folder, and the Kafka group identity kept in it.

Why: after ``kill -9`` a restarted worker used to join its consumer group as a stranger,
and the group held every partition back until the dead member's session (10 s) had
expired: most of a restart (measured: 8.2 s of 14.8 s from spawn to the first probe in
Redis, 100,000 events of history, ``make bench-state``). Kafka's static membership
(KIP-345, ``group.instance.id``) lets a member that comes back under the same instance id
take its partitions back at once, without a rebalance of the others. The id belongs with
the state — the tables on disk are what make taking the partitions back cheap — so it
lives in the data folder, made on the first start. A worker that lost its folder gets a
new id and joins as a stranger; the old id's member expires with its session, as before.

The traps:
- Two live members with one instance id fence each other (FENCED_INSTANCE_ID), and two
  workers on one RocksDB folder fight over its locks. So the folder is claimed with an
  exclusive lock for the life of the process, and a second worker on the same folder is
  refused, saying so. A folder copied for a second worker (a volume snapshot restored
  twice) carries the id with it: delete ``group-member-id`` in the copy.
- A static member that comes back while its group is stable gets the assignment the
  group computed for its previous process, and Faust's assignment carries the URL of the
  member it was made for (``/kpis`` asks peers there): Faust asserts that it is its own,
  and the group would route to the old address. So the identity also names the URL the
  worker advertises: a worker restarted on another address joins as a new member (and
  waits for the old one's session, as before).
- A static member does not leave the group when it stops (aiokafka sends no LeaveGroup
  for one): after SIGTERM its partitions wait for the session timeout unless it comes back
  within it — which is the point for a rolling restart (no rebalance at all), and costs a
  scale-down 10 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCK_FILE = ".worker.lock"
ID_FILE = "group-member-id"
_ID = re.compile(r"funnelpulse-[0-9a-f]{32}")


class DataDirInUse(RuntimeError):
    """Another live worker holds this data folder."""


@dataclass(frozen=True)
class DataDirClaim:
    """Held while the worker runs: the lock goes with the open file (closed at exit)."""

    path: Path
    group_member: str  # the consumer's group.instance.id
    lock: IO[str]


def claim_data_dir(data_dir: str | Path, url: str) -> DataDirClaim:
    """Locks ``data_dir`` for this process and returns its group identity at ``url`` (the
    worker's advertised URL), making the folder's id on first use. Raises ``DataDirInUse``
    (naming the holder's pid) if another process holds the folder."""
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    lock = (path / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DataDirInUse(
            f"data folder {path} (FUNNELPULSE_DATA_DIR) is in use by another worker "
            f"(pid {holder}): each worker needs a folder of its own"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    at = hashlib.blake2s(url.encode(), digest_size=4).hexdigest()
    return DataDirClaim(path, f"{_folder_id(path)}-{at}", lock)


def _folder_id(path: Path) -> str:
    """The id in the folder, or a new one written atomically (a crash mid-write must not
    leave a half id that the next start would read)."""
    id_file = path / ID_FILE
    try:
        known = id_file.read_text().strip()
    except FileNotFoundError:
        known = ""
    if _ID.fullmatch(known):
        return known
    member = f"funnelpulse-{uuid.uuid4().hex}"
    partial = path / f".{ID_FILE}.partial"
    partial.write_text(member + "\n")
    os.replace(partial, id_file)
    return member
