"""RedisStateStore against a real Redis: round trip, TTL, errors surface, batch throughput."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.state.store import RedisStateStore


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
