"""Which worker owns which merge partition, and asking it over HTTP.

Each scope is published by the worker active for its merge partition, so a worker holds
only its own scopes' KPIs; ``/kpis`` and ``/alerts`` on any worker ask the others, the way
Faust's ``table_route`` does. Two traps:

- Faust's router (``app.router.key_store``) places a key with the producer's partitioner
  (murmur2), but scopes go to merge partitions by crc32 (``streams.codec.partition_for``):
  it would name the wrong worker. The owner is looked up by partition number in the
  assignor's changelog distribution of the ``merged`` table instead.
- Faust advertises ``http://<web_host>:<web_port>``: bound to ``0.0.0.0`` (a container),
  that is an address nobody else can reach. ``advertised_url`` uses the host's FQDN then
  (a StatefulSet pod's name in its headless Service), or ``FUNNELPULSE_WEB_URL``.

A routed request carries ``ROUTED`` and is answered from what the worker holds, never
routed again: during a rebalance two workers may each believe the other owns a partition.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

log = logging.getLogger("funnelpulse.peers")

ROUTED = "X-Funnelpulse-Routed"  # on a request one worker sends another
SOURCE = "X-Funnelpulse-Source"  # on an answer: local, owner:<host:port> or redis
PEER_TIMEOUT = 2.0  # seconds; past it the answer comes from Redis
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})

Distribution = Mapping[str, Mapping[str, Sequence[int]]]  # url → topic → partitions


def advertised_url(web_url: str, host: str, port: int) -> str:
    """The URL other workers reach this one at (Faust's ``canonical_url``)."""
    if web_url:
        return web_url
    name = socket.getfqdn() if host in _WILDCARDS else host
    return str(URL.build(scheme="http", host=name, port=port))


def owners(distribution: Distribution, topic: str) -> dict[int, str]:
    """Partition of ``topic`` → URL of the worker active for it (as last assigned)."""
    return {
        partition: url
        for url, topics in distribution.items()
        for partition in topics.get(topic, ())
    }


def host_port(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


class Peers:
    """GETs a JSON document from another worker; ``None`` when it cannot answer."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    async def get(self, url: str, path: str, params: Mapping[str, str]) -> tuple[int, Any] | None:
        """(status, JSON body) of a 200 or a 404 (no data: an answer too)."""
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT)
        try:
            async with self._session().get(
                URL(url).with_path(path), params=dict(params), headers={ROUTED: "1"},
                timeout=timeout,
            ) as response:  # fmt: skip
                if response.status not in (200, 404):
                    log.info("%s%s answered %d", url, path, response.status)
                    return None
                return response.status, await response.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.info("%s%s did not answer: %r", url, path, exc)
            return None
