"""Redis as the durable copy of per-patient state: one key per patient, packed bytes, TTL.

Every call is exactly one network round trip (one MGET to read, one EVALSHA that runs
SET ... EX per key to write) because a round trip per patient caps the worker near 2 k
events/s (DESIGN.md, measured facts), while one per batch keeps Redis off the critical path.
The write is a tiny Lua script rather than a pipeline of SETs: same round trip, same
commands on the server, but redis-py spends ~50 us of Python per pipelined command, so
for 512 patients the script measured ~4x faster (≈75 k vs ≈20 k patients/s here). MSET
would be faster still but cannot set a TTL. The script is not a transaction that matters
(each key is independent). Errors are not swallowed: the pipeline must not commit Kafka offsets
for a batch whose state did not reach Redis, so it needs the exception to retry or stop.

Where the keys live: one Redis — standalone, or the primary a Sentinel set names (redis-py's
Sentinel pool finds the new primary after a failover) — takes the calls above; a Redis
Cluster takes them once per primary (worker.state.cluster: MGET and a script with declared
keys must stay within one hash slot there). With ``Replication.replicas`` > 0 every write is
followed by WAIT on the same connection (worker.state.replication): a write that too few
replicas acknowledged raises, and the batch is retried instead of committed. With 0 (the
default) the write is exactly the one EVALSHA it always was.

Two TTLs: a patient's state lives ``ttl_s`` (it should exceed the longest gap between two
observations of one patient that should still share history); a discharged patient's
tombstone (its watermark and recent event ids, no clinical state) lives ``tombstone_ttl_s``,
long enough to recognise a redelivered or resent event of the closed stay, short enough that
nothing of the patient lingers. Both kinds go in the same round trip: the script takes the
two TTLs once, not one per key, so a batch without discharges costs what it did.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from worker.state.cluster import ClusterNodes
from worker.state.replication import Replication

#: KEYS = patient keys (states first, then tombstones), ARGV = their values followed by the
#: state TTL, the tombstone TTL (seconds) and how many of the keys are states.
_SET_MANY_WITH_TTL = """
local states = tonumber(ARGV[#ARGV])
local state_ttl, tombstone_ttl = ARGV[#ARGV - 2], ARGV[#ARGV - 1]
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i], 'EX', i <= states and state_ttl or tombstone_ttl)
end
return #KEYS
"""


class SingleRedis:
    """One Redis holds every key: a standalone server, or the primary of a Sentinel set."""

    def __init__(self, client: redis.Redis, replication: Replication) -> None:
        self._client = client
        self._replication = replication
        self._set_many = client.register_script(_SET_MANY_WITH_TTL)

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._client.mget(keys)

    async def set(self, keys: Sequence[str], values: Sequence[bytes], ttls: tuple[int, int], states: int) -> None:
        """SET … EX every key (the first ``states`` with ``ttls[0]``, the rest with ``ttls[1]``)
        in one round trip; with replicas wanted, WAIT for them in the same round trip."""
        args = [*values, *ttls, states]
        if not self._replication.wanted:
            await self._set_many(keys=keys, args=args)
            return
        # EVAL, not EVALSHA: a pipeline cannot load a script the server lost (a promoted
        # replica, a restart) without another round trip, and hashing the script is nothing
        # next to the values it carries.
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.eval(_SET_MANY_WITH_TTL, len(keys), *keys, *args)
            pipe.execute_command(*self._replication.wait_args())
            _, acknowledged = await pipe.execute()
        self._replication.check(primary_name(self._client), acknowledged)


def primary_name(client: redis.Redis) -> str:
    """The Redis a client writes to, for messages: host:port, or the Sentinel service and the
    primary it last named."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        at = f" at {pool.master_address[0]}:{pool.master_address[1]}" if pool.master_address else ""
        return f"the primary of {pool.service_name!r}{at}"
    kwargs = pool.connection_kwargs
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class RedisStateStore:
    """Batched get/set of packed patient states under ``prefix + patient_id``.

    A client passed in must return bytes (``decode_responses=False``, redis-py's default):
    the records are binary. A ``RedisCluster`` client spreads each call over the primaries.
    """

    def __init__(
        self,
        client: str | redis.Redis | RedisCluster,
        *,
        prefix: str = "vitalwatch:state:",
        ttl_s: int = 7 * 24 * 3600,
        tombstone_ttl_s: int = 24 * 3600,
        replication: Replication = Replication(),
    ) -> None:
        if ttl_s <= 0 or tombstone_ttl_s <= 0:
            raise ValueError(f"TTLs must be positive, got ttl_s={ttl_s}, tombstone_ttl_s={tombstone_ttl_s}")
        self._owns_client = isinstance(client, str)
        self._client = redis.Redis.from_url(client) if isinstance(client, str) else client
        self._nodes: SingleRedis | ClusterNodes = (
            ClusterNodes(self._client, replication) if isinstance(self._client, RedisCluster)
            else SingleRedis(self._client, replication)
        )
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._tombstone_ttl_s = tombstone_ttl_s

    def key(self, patient_id: str) -> str:
        return self._prefix + patient_id

    async def load_many(self, patient_ids: Iterable[str]) -> dict[str, bytes]:
        """The stored state of each patient that has one (absent ids are left out)."""
        ids = list(patient_ids)
        if not ids:
            return {}
        values = await self._nodes.get([self.key(p) for p in ids])
        return {p: v for p, v in zip(ids, values) if v is not None}

    async def save_many(self, states: Mapping[str, bytes], tombstones: Mapping[str, bytes] | None = None) -> None:
        """Write every state with the state TTL and every tombstone with the tombstone TTL, in
        one round trip per Redis primary (a patient is in one of the two, not both)."""
        tombstones = tombstones or {}
        if not states and not tombstones:
            return
        await self._nodes.set(
            [self.key(p) for p in (*states, *tombstones)], [*states.values(), *tombstones.values()],
            (self._ttl_s, self._tombstone_ttl_s), len(states),
        )

    async def close(self) -> None:
        """Close the connection pool if this store created the client."""
        if self._owns_client:
            await self._client.aclose()
