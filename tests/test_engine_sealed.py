"""RiskEngine.seal against a real Redis: a batch scored while the one before it is not yet
written (pipelined batches, worker.stream.overlap) never leaks its state into that batch's write,
and a discard forgets both."""

from __future__ import annotations

import pytest

from tests.test_engine import engine, ev, risks, stream
from tests.test_engine_encounters import admit, enc, stored
from worker.state.store import RedisStateStore


@pytest.fixture
async def store(redis_url: str, unique: str):
    s = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=600, tombstone_ttl_s=60)
    yield s
    await s.close()


async def test_a_sealed_batch_writes_its_own_state_not_the_next_batchs(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([ev("a", 0, 0), ev("b", 0, 0)])
    first = e.seal()
    await e.score([ev("a", 1, 5, heart_rate=140.0), ev("c", 0, 5)])  # the next batch, scored ahead
    assert await e.persist(first) == 2
    assert (await stored(store, "a")).watermark == {("vitals", 0): 0}, "a as batch 1 left it"
    assert set(await store.load_many(["a", "b", "c"])) == {"a", "b"}, "nothing of batch 2 is written"
    second = e.seal()
    assert await e.persist(second) == 2
    assert (await stored(store, "a")).watermark == {("vitals", 0): 1}
    assert await e.persist(first) == 0, "written already"


async def test_persist_writes_sealed_batches_in_order_up_to_the_one_named(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([ev("a", 0, 0)])
    first = e.seal()
    await e.score([ev("a", 1, 5)])
    second = e.seal()
    await e.score([ev("a", 2, 10)])  # not sealed
    assert await e.persist(second) == 2, "the first, then the second"
    assert (await stored(store, "a")).watermark == {("vitals", 0): 1}
    assert await e.persist(first) == 0
    assert await e.persist() == 1, "then everything else"
    assert (await stored(store, "a")).watermark == {("vitals", 0): 2}


async def test_discard_forgets_sealed_and_unsealed_changes_and_rescores_identically(store: RedisStateStore) -> None:
    batches = stream(patients=5, steps=3)
    reference = engine(store)
    expected = [risks(await reference.score(b)) for b in batches]
    reference.discard_unpersisted()
    assert reference.resident == 0
    e = engine(store)
    assert risks(await e.score(batches[0])) == expected[0]
    await e.persist(e.seal())
    await e.score(batches[1])
    e.seal()
    await e.score(batches[2])
    e.discard_unpersisted()  # batch 1's publish failed while batch 2 was scored ahead
    assert e.resident == 0
    assert [risks(await e.score(b)) for b in batches[1:]] == expected[1:]


async def test_a_patient_evicted_before_its_sealed_state_is_written_is_restored_from_it(
    store: RedisStateStore, redis_url: str, unique: str
) -> None:
    roomy = engine(RedisStateStore(redis_url, prefix=f"test:{unique}:roomy:"))
    tight = engine(store, capacity=2)
    reference = [risks(await roomy.score(b)) for b in ([ev("a", 0, 0)], [ev("b", 0, 1), ev("c", 0, 1)], [ev("a", 1, 2)])]
    assert risks(await tight.score([ev("a", 0, 0)])) == reference[0]
    sealed = tight.seal()
    assert risks(await tight.score([ev("b", 0, 1), ev("c", 0, 1)])) == reference[1], "a is evicted, clean, unwritten"
    assert "a" not in tight._slab
    assert risks(await tight.score([ev("a", 1, 2)])) == reference[2], "restored from its sealed record, not from Redis"
    await tight.persist(sealed)
    assert (await stored(store, "a")).watermark == {("vitals", 0): 0}


async def test_a_discharge_sealed_keeps_the_slot_of_a_patient_the_next_batch_readmits(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([admit("a", 0, 0), ev("a", 0, 5), enc("a", 1, 60, "discharge", disposition="home")])
    closed = e.seal()
    await e.score([admit("a", 2, 90), ev("a", 1, 95)])  # readmitted in the batch scored ahead
    await e.persist(closed)
    assert (await stored(store, "a")).discharged, "batch 1 wrote the tombstone"
    assert e.resident == 1, "the readmitted stay keeps its slot"
    await e.persist()
    assert not (await stored(store, "a")).discharged
    assert (await stored(store, "a")).watermark == {("encounters", 0): 2, ("vitals", 0): 1}


async def test_a_written_discharge_frees_its_slot_at_the_next_score_not_mid_score(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([admit("a", 0, 0), ev("a", 0, 5), enc("a", 1, 60, "discharge", disposition="home")])
    closed = e.seal()
    await e.persist(closed)  # written without the engine's lock: a batch may be mid-score
    assert (await stored(store, "a")).discharged
    assert e.resident == 1, "the slot is freed by the next call that holds the lock"
    await e.score([ev("b", 0, 70)])
    assert e.resident == 1 and "a" not in e._slab
