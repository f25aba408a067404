"""The worker's Redis, as the settings describe it: one server, a Sentinel set, or a cluster.

``connect(settings)`` builds the client the state store writes through and the probe /health
runs. The three topologies differ only in how the client finds the server that holds a key:

* standalone (``VITALWATCH_REDIS_URL``): that server.
* Sentinel (``VITALWATCH_REDIS_SENTINELS`` + ``_SENTINEL_MASTER``): redis-py's Sentinel pool asks
  the sentinels for the service's primary whenever it opens a connection, and drops its
  connections when the primary they name changes or a server answers that it is now a
  replica. A batch in flight during a failover fails, is retried by the pipeline with backoff
  (nothing acked, nothing committed) and goes to whichever primary the sentinels name once one
  answers. The URL's scheme, credentials and database apply to the primary; its host is not
  used. TLS (``rediss://``) applies to the sentinels as well, with their own credentials.
* Cluster (``VITALWATCH_REDIS_CLUSTER``): the URL names one node to discover the rest from;
  worker.state.cluster routes each batch by the slot map.

Every call is bounded by ``REDIS_TIMEOUT_S``: a call that takes longer is an outage, retried.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.operations.config import Settings
from worker.state.replication import NotReplicated, Replication
from worker.state.store import primary_name

#: Redis calls that take longer than this are treated as a Redis outage and retried.
REDIS_TIMEOUT_S = 5.0

Topology = Literal["standalone", "sentinel", "cluster"]


@dataclass
class RedisConnection:
    """The client, how it finds its servers, and the replication the worker requires of them."""

    client: aioredis.Redis | RedisCluster
    topology: Topology
    replication: Replication
    sentinels: tuple[str, ...] = ()  # host:port of each sentinel, for messages
    service: str | None = None  # the Sentinel service name
    sentinel: Sentinel | None = None  # the sentinels' own clients

    async def probe(self) -> None:
        """Raise unless every primary answers PING and, when replicas are required, has that
        many replicas attached and online (NotReplicated)."""
        if isinstance(self.client, RedisCluster):
            await self.client.ping(target_nodes=RedisCluster.PRIMARIES)
            if self.replication.wanted:
                primaries = self.client.get_primaries()
                infos = await asyncio.gather(*(self.client.info("replication", target_nodes=n) for n in primaries))
                for node, info in zip(primaries, infos):
                    self.replication.check_online(node.name, info)
            return
        await self.client.ping()
        if self.replication.wanted:
            self.replication.check_online(primary_name(self.client), await self.client.info("replication"))

    def waiting_for(self, exc: BaseException) -> str:
        """What a worker whose probe failed with ``exc`` is waiting for, in words for /health."""
        if isinstance(exc, NotReplicated):
            return f"{exc.wanted} replica(s) of {exc.node} online ({exc.acknowledged} now)"
        if self.topology == "sentinel":
            return f"a primary for {self.service!r} from the sentinels at {', '.join(self.sentinels)}"
        if self.topology == "cluster":
            return "every hash slot of the Redis Cluster served by a primary that answers"
        return f"Redis at {primary_name(self.client)}"

    async def close(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()


def connect(settings: Settings) -> RedisConnection:
    """The client the settings call for (nothing is contacted until the first command)."""
    replication = Replication(settings.redis_min_replicas, settings.redis_replica_timeout_ms)
    timeouts: dict[str, Any] = dict(socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    if settings.redis_cluster:
        # No retries inside redis-py: a retry must re-group the batch by the new slot map
        # (worker.state.cluster), and the worker's own backoff keeps a shutdown prompt.
        client = RedisCluster.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0), **timeouts)
        return RedisConnection(client, "cluster", replication)
    if settings.redis_sentinels:
        return _sentinel(settings, replication, timeouts)
    client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=30, **timeouts)
    return RedisConnection(client, "standalone", replication)


def _sentinel(settings: Settings, replication: Replication, timeouts: dict[str, Any]) -> RedisConnection:
    """A client of the primary the sentinels name; the URL's scheme, credentials, database and
    TLS options go to the primary, the TLS options also to the sentinels."""
    primary = parse_url(settings.redis_url)
    for unused in ("host", "port"):
        primary.pop(unused, None)
    if primary.pop("connection_class", None) is SSLConnection:
        primary["ssl"] = True
    tls = {k: v for k, v in primary.items() if k == "ssl" or k.startswith("ssl_")}
    password = settings.redis_sentinel_password
    sentinel = Sentinel(
        settings.sentinel_addresses,
        sentinel_kwargs={
            **timeouts, **tls, "username": settings.redis_sentinel_username,
            "password": password.get_secret_value() if password is not None else None,
        },
        health_check_interval=30, **timeouts, **primary,
    )
    addresses = tuple(f"{host}:{port}" for host, port in settings.sentinel_addresses)
    return RedisConnection(
        sentinel.master_for(settings.redis_sentinel_master), "sentinel", replication,
        sentinels=addresses, service=settings.redis_sentinel_master, sentinel=sentinel,
    )
