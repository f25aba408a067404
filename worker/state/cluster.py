"""Redis Cluster: a batch's keys grouped by the primary that serves them, one round trip per primary.

Keys keep the standalone layout, ``prefix + patient_id``, with no hash tag. Why not a tag:
a tag per Kafka partition would tie a patient's key to the topic's partition count (adding
partitions would move patients to keys that hold nothing: their history silently gone), and a
tag per bucket of patient ids would make each bucket one slot, so one node, and the unit of
every reshard. Plain keys spread over all 16 384 slots, survive rebalances and partition
changes alike, and are the keys a standalone Redis or a Sentinel set already holds, so moving
a deployment into a cluster copies keys as they are (docs/operations.md).

The cost is that a batch's keys fall in hundreds of slots, and MGET or a script with declared
KEYS must stay in one slot (CROSSSLOT otherwise). Per-slot commands would be one command per
patient: for 512 patients redis-py's ``mget_nonatomic`` took ~12 ms and a pipeline of SETs
~20 ms here, against ~4 ms for one MGET or one script on one Redis. Instead each primary runs
one script over every key of the batch it serves: Redis 7's ``allow-cross-slot-keys`` script
flag lets a script touch keys of several slots of its own node, the keys being passed as
arguments (declared keys must share one slot whatever the flag). The scripts of the primaries
go out concurrently, each in a pipeline with its ``WAIT`` (worker.state.replication) on the
same connection, which ``WAIT`` requires: one round trip per primary, per batch.

A key whose slot is no longer served where the client's slot map says (a failover, a reshard)
fails that node's script ("non local key"), as a node that died fails with ConnectionError.
Either way the slot map is dropped, to be re-read from the cluster on the next call, and the
error goes to the pipeline, which retries the batch: the retry groups the keys by the new map.
A write is the same bytes each time, so a batch partly written before the error is simply
written again; a read is retried whole. redis-py's own retries are off (``connect``) for the
same reason: a retry must re-group, and the worker's backoff is what keeps shutdown prompt.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Sequence

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster

from worker.state.replication import Replication

#: ARGV = keys. Returns their values in order (nil for a missing key). Runs on replicas too.
_GET_ON_NODE = """#!lua flags=no-writes,allow-cross-slot-keys
local values = {}
for i, key in ipairs(ARGV) do
    values[i] = redis.call('GET', key)
end
return values
"""

#: ARGV = n keys (states first, then tombstones), their n values, the state TTL, the tombstone
#: TTL and how many of the keys are states: worker.state.store's script, keys undeclared.
_SET_ON_NODE = """#!lua flags=allow-cross-slot-keys
local n = (#ARGV - 3) / 2
local states = tonumber(ARGV[#ARGV])
local state_ttl, tombstone_ttl = ARGV[#ARGV - 2], ARGV[#ARGV - 1]
for i = 1, n do
    redis.call('SET', ARGV[i], ARGV[n + i], 'EX', i <= states and state_ttl or tombstone_ttl)
end
return n
"""


class ClusterUnavailable(redis.exceptions.ConnectionError):
    """The cluster cannot serve a batch now (a slot not covered, no node answering): an outage,
    retried like one (redis-py raises these as RedisClusterException, which is no RedisError)."""


class ClusterNodes:
    """Reads and writes of a batch of keys on a Redis Cluster, one script per primary."""

    def __init__(self, client: RedisCluster, replication: Replication) -> None:
        self._client = client
        self._replication = replication

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        groups = await self._by_primary(keys)
        pipe = self._client.pipeline()
        for node, indexes in groups:
            pipe.execute_command("EVAL", _GET_ON_NODE, 0, *(keys[i] for i in indexes), target_nodes=node)
        replies = await self._execute(pipe)
        values: list[bytes | None] = [None] * len(keys)
        for (_, indexes), reply in zip(groups, replies):
            for i, value in zip(indexes, reply):
                values[i] = value
        return values

    async def set(self, keys: Sequence[str], values: Sequence[bytes], ttls: tuple[int, int], states: int) -> None:
        """The keys each primary serves, set by one script there (then WAIT, when replicas are
        wanted); every primary concurrently."""
        groups = await self._by_primary(keys)
        wait = self._replication.wanted
        pipe = self._client.pipeline()
        for node, indexes in groups:
            node_states = sum(1 for i in indexes if i < states)  # indexes ascend: states first
            args = [*(keys[i] for i in indexes), *(values[i] for i in indexes), *ttls, node_states]
            pipe.execute_command("EVAL", _SET_ON_NODE, 0, *args, target_nodes=node)
            if wait:
                pipe.execute_command(*self._replication.wait_args(), target_nodes=node)
        replies = await self._execute(pipe)
        if wait:
            for (node, _), acknowledged in zip(groups, replies[1::2]):
                self._replication.check(node.name, acknowledged)

    async def _by_primary(self, keys: Sequence[str]) -> list[tuple[ClusterNode, list[int]]]:
        """The primaries serving ``keys`` by the client's slot map, each with the positions of
        its keys (ascending)."""
        async with self._forgetting_the_map():
            await self._client.initialize()  # a no-op unless the map was dropped
            groups: dict[str, tuple[ClusterNode, list[int]]] = {}
            for i, key in enumerate(keys):
                node = self._client.get_node_from_key(key)
                groups.setdefault(node.name, (node, []))[1].append(i)
        return list(groups.values())

    async def _execute(self, pipe: Any) -> list[Any]:
        replies: list[Any] = []
        async with self._forgetting_the_map():
            replies = await pipe.execute()
        return replies

    @contextlib.asynccontextmanager
    async def _forgetting_the_map(self) -> AsyncIterator[None]:
        """On failure, drop the slot map and the connections (re-read on the next call) and
        raise a RedisError, so that the pipeline treats it as the outage it is."""
        try:
            yield
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            await self._client.aclose()
            if isinstance(exc, redis.exceptions.RedisClusterException):
                raise ClusterUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise
