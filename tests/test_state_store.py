"""RedisStateStore against a real Redis: round trip, TTL, errors surface, batch throughput; the
WAIT rule against a primary with a replica, and the same store on a Redis Cluster."""

from __future__ import annotations

import re
import time
from typing import Iterator

import pytest
import redis as sync_redis
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.operations.config import load_settings
from worker.state.connect import connect
from worker.state.replication import NotReplicated, Replication
from worker.state.store import RedisStateStore
from worker.stream.pipeline import is_outage
from worker.tools.embedded import EmbeddedCluster, EmbeddedRedis, wait_replicating


@pytest.fixture
async def store(redis_url: str, unique: str):
    s = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=60)
    yield s
    await s.close()


async def test_round_trip_with_ttl(store: RedisStateStore, redis_url: str) -> None:
    states = {"p1": b"\x00\x01binary\xff", "p2": bytes(900)}
    await store.save_many(states)
    assert await store.load_many(["p1", "missing", "p2"]) == states
    client = redis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(store.key("p1"))
    finally:
        await client.aclose()
    assert 0 < ttl <= 60


async def test_states_and_tombstones_get_their_own_ttl_in_one_call(redis_url: str, unique: str) -> None:
    store = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=600, tombstone_ttl_s=30)
    client = redis.Redis.from_url(redis_url)
    try:
        await store.save_many({"kept": b"state"}, {"gone": b"tombstone", "gone-too": b"tombstone 2"})
        await store.save_many({}, {"only-tombstone": b"t"})
        assert await store.load_many(["kept", "gone", "gone-too", "only-tombstone"]) == {
            "kept": b"state", "gone": b"tombstone", "gone-too": b"tombstone 2", "only-tombstone": b"t"
        }
        ttls = {p: await client.ttl(store.key(p)) for p in ("kept", "gone", "gone-too", "only-tombstone")}
    finally:
        await client.aclose()
        await store.close()
    assert 30 < ttls["kept"] <= 600
    assert all(0 < ttls[p] <= 30 for p in ("gone", "gone-too", "only-tombstone"))


def test_ttls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tombstone_ttl_s=0"):
        RedisStateStore("redis://127.0.0.1:1/0", tombstone_ttl_s=0)


async def test_empty_calls_do_not_touch_redis() -> None:
    dead = RedisStateStore("redis://127.0.0.1:1/0")
    assert await dead.load_many([]) == {}
    await dead.save_many({})
    await dead.close()


async def test_errors_surface_to_the_caller() -> None:
    dead = RedisStateStore("redis://127.0.0.1:1/0")
    with pytest.raises(RedisConnectionError):
        await dead.save_many({"p": b"x"})
    with pytest.raises(RedisConnectionError):
        await dead.load_many(["p"])
    await dead.close()


async def test_batch_of_512_throughput(store: RedisStateStore) -> None:
    """Prints patients/s; asserts only a loose floor (the CI machine is shared and noisy)."""
    states = {f"patient-{i}": bytes(range(256)) * 3 + bytes(90) for i in range(512)}
    await store.save_many(states)
    await store.load_many(states)
    rounds = 10
    t0 = time.perf_counter()
    for _ in range(rounds):
        await store.save_many(states)
    t1 = time.perf_counter()
    for _ in range(rounds):
        loaded = await store.load_many(states)
    t2 = time.perf_counter()
    assert loaded == states
    save_rate, load_rate = rounds * 512 / (t1 - t0), rounds * 512 / (t2 - t1)
    print(f"\nredis state store, 512 x {len(states['patient-0'])} B: save {save_rate:,.0f}/s, load {load_rate:,.0f}/s")
    assert save_rate > 2_000 and load_rate > 2_000


# -- where the keys live: one Redis with a replica, and a Redis Cluster --------------------------


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    """A primary and its replica of this module's own: command counts and replica counts must
    be ours alone (REDIS_URL may be shared)."""
    primary = EmbeddedRedis().start()
    try:
        replica = EmbeddedRedis(args=("--replicaof", "127.0.0.1", str(primary.port))).start()
        try:
            wait_replicating(replica)
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()


def calls(port: int, *commands: str) -> dict[str, int]:
    """How many times each command has run on the server at ``port`` (INFO commandstats)."""
    client = sync_redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {c: after[c] - before[c] for c in before}


STATES = {f"bed-{i}": bytes([i % 251]) * 1_000 for i in range(300)}
TOMBSTONES = {f"gone-{i}": f"tombstone {i}".encode() for i in range(20)}


async def test_standalone_write_is_still_one_script_call_and_no_wait(primary_and_replica, unique: str) -> None:
    """MIN_REPLICAS 0, the default: exactly the EVALSHA (and one MGET) it always was."""
    primary, _ = primary_and_replica
    store = RedisStateStore(primary.url, prefix=f"{unique}:", ttl_s=60)
    await store.save_many({"warm": b"x"})  # the script is loaded once, by the first call
    before = calls(primary.port, "evalsha", "eval", "wait", "mget", "get")
    await store.save_many(STATES, TOMBSTONES)
    assert await store.load_many([*STATES, *TOMBSTONES]) == {**STATES, **TOMBSTONES}
    await store.close()
    assert delta(before, calls(primary.port, *before)) == {"evalsha": 1, "eval": 0, "wait": 0, "mget": 1, "get": 0}


async def test_min_replicas_waits_in_the_same_round_trip_and_the_replica_holds_the_batch(
    primary_and_replica, unique: str
) -> None:
    primary, replica = primary_and_replica
    store = RedisStateStore(primary.url, prefix=f"{unique}:", ttl_s=60, replication=Replication(1, 2_000))
    before = calls(primary.port, "eval", "wait")
    await store.save_many(STATES, TOMBSTONES)
    after = calls(primary.port, *before)
    on_replica = RedisStateStore(replica.url, prefix=f"{unique}:")
    try:
        # WAIT returned 1: the replica has every key now, not eventually.
        assert await on_replica.load_many([*STATES, *TOMBSTONES]) == {**STATES, **TOMBSTONES}
    finally:
        await on_replica.close()
        await store.close()
    assert delta(before, after) == {"eval": 1, "wait": 1}


async def test_too_few_replicas_is_a_failed_write_that_names_the_counts(primary_and_replica, unique: str) -> None:
    primary, _ = primary_and_replica
    store = RedisStateStore(primary.url, prefix=f"{unique}:", ttl_s=60, replication=Replication(2, 200))
    started = time.monotonic()
    with pytest.raises(NotReplicated) as info:
        await store.save_many({"p": b"state"})
    waited = time.monotonic() - started
    await store.close()
    assert str(info.value) == f"1 of 2 replicas of 127.0.0.1:{primary.port} acknowledged the write within 200 ms"
    assert 0.19 <= waited < 2.0, waited  # WAIT is bounded by its timeout
    assert is_outage(info.value)  # so the pipeline retries the batch and commits nothing


def cluster_client(cluster: EmbeddedCluster) -> RedisCluster:
    return RedisCluster.from_url(cluster.url)


async def test_cluster_batch_is_one_script_per_primary_with_no_crossslot(redis_cluster: EmbeddedCluster, unique: str) -> None:
    """300 states and 20 tombstones over three primaries: each primary runs one script per
    save and one per load (not one command per key), and every value comes back."""
    client = cluster_client(redis_cluster)
    store = RedisStateStore(client, prefix=f"{unique}:", ttl_s=600, tombstone_ttl_s=30, replication=Replication(1, 2_000))
    try:
        await client.initialize()
        primaries = {client.get_node_from_key(store.key(p)).port for p in [*STATES, *TOMBSTONES]}
        assert len(primaries) == 3
        before = {port: calls(port, "eval", "wait", "set", "get", "mget") for port in primaries}
        await store.save_many(STATES, TOMBSTONES)
        loaded = await store.load_many([*STATES, "never-seen", *TOMBSTONES])
        after = {port: calls(port, *before[port]) for port in primaries}
        ttls = {p: await client.ttl(store.key(p)) for p in ("bed-0", "bed-299", "gone-0", "gone-19")}
    finally:
        await client.aclose()
    assert loaded == {**STATES, **TOMBSTONES}
    for port in primaries:  # SET and GET run inside the scripts: 2 scripts, 1 WAIT, no command per key
        assert delta(before[port], after[port])["eval"] == 2, (port, delta(before[port], after[port]))
        assert delta(before[port], after[port])["wait"] == 1
        assert delta(before[port], after[port])["mget"] == 0
    assert 30 < ttls["bed-0"] <= 600 and 30 < ttls["bed-299"] <= 600
    assert 0 < ttls["gone-0"] <= 30 and 0 < ttls["gone-19"] <= 30


async def test_cluster_primary_with_too_few_replicas_fails_the_write(redis_cluster: EmbeddedCluster, unique: str) -> None:
    client = cluster_client(redis_cluster)
    store = RedisStateStore(client, prefix=f"{unique}:", ttl_s=60, replication=Replication(2, 100))
    try:
        with pytest.raises(NotReplicated, match=r"1 of 2 replicas of 127\.0\.0\.1:\d+ acknowledged the write within 100 ms"):
            await store.save_many(STATES)
    finally:
        await client.aclose()


async def test_probe_names_what_the_worker_waits_for(primary_and_replica, redis_cluster: EmbeddedCluster) -> None:
    """/health's Redis probe: PING every primary, and count its online replicas when some are required."""
    primary, _ = primary_and_replica
    ok = connect(load_settings(redis_url=primary.url, redis_min_replicas=1))
    short = connect(load_settings(redis_url=primary.url, redis_min_replicas=2))
    cluster = connect(load_settings(redis_url=redis_cluster.url, redis_cluster=True, redis_min_replicas=1))
    cluster_short = connect(load_settings(redis_url=redis_cluster.url, redis_cluster=True, redis_min_replicas=2))
    try:
        await ok.probe()
        await cluster.probe()
        with pytest.raises(NotReplicated) as standalone:
            await short.probe()
        with pytest.raises(NotReplicated) as sharded:
            await cluster_short.probe()
    finally:
        for conn in (ok, short, cluster, cluster_short):
            await conn.close()
    assert short.waiting_for(standalone.value) == f"2 replica(s) of 127.0.0.1:{primary.port} online (1 now)"
    assert re.fullmatch(r"2 replica\(s\) of 127\.0\.0\.1:\d+ online \(1 now\)", cluster_short.waiting_for(sharded.value))


def move_slot(port_from: int, port_to: int, slot: int, primaries: list[int]) -> None:
    """Reshard one slot by hand, as `redis-cli --cluster reshard` does: IMPORTING / MIGRATING,
    MIGRATE its keys, then give it to the target on every primary."""
    source, target = sync_redis.Redis(port=port_from), sync_redis.Redis(port=port_to)
    try:
        source_id, target_id = source.execute_command("CLUSTER MYID"), target.execute_command("CLUSTER MYID")
        target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        keys = source.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        if keys:
            source.execute_command("MIGRATE", "127.0.0.1", port_to, "", 0, 5000, "KEYS", *keys)
        for port in primaries:
            node = sync_redis.Redis(port=port)
            try:
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            finally:
                node.close()
    finally:
        source.close()
        target.close()


async def test_cluster_write_after_a_reshard_fails_once_then_follows_the_new_map(
    redis_cluster: EmbeddedCluster, unique: str
) -> None:
    """A slot moved under a client with the old map: the script on the old owner refuses the key
    (no MOVED for an undeclared key), the error is an outage the pipeline retries, and the retry
    goes by the re-read map."""
    client = cluster_client(redis_cluster)
    store = RedisStateStore(client, prefix=f"{unique}:", ttl_s=60)
    try:
        await store.save_many(STATES)
        owner = client.get_node_from_key(store.key("bed-7"))
        other = next(n for n in client.get_primaries() if n.port != owner.port)
        move_slot(owner.port, other.port, client.keyslot(store.key("bed-7")), [n.port for n in client.get_primaries()])
        changed = {**STATES, "bed-7": b"after the reshard"}
        with pytest.raises(sync_redis.exceptions.ResponseError, match="non local key") as info:
            await store.save_many(changed)
        assert is_outage(info.value)
        await store.save_many(changed)
        assert await store.load_many(changed) == changed
        assert client.get_node_from_key(store.key("bed-7")).port == other.port
    finally:
        await client.aclose()
