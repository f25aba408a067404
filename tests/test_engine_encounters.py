"""RiskEngine with encounters (admission, transfer, discharge) against a real Redis: the
context in the state, encounters never scored nor changing a score, discharge releasing the
patient at persist (a tombstone, not a DEL), and every rule the same across batches and
restarts."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
import redis.asyncio as redis

from schemas.encounter import Encounter, sex_code, unit_code
from tests.test_engine import T0, engine, ev, resent, risks
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.codec import PatientState, id_hashes, unpack
from worker.state.store import RedisStateStore

STATE_TTL_S, TOMBSTONE_TTL_S = 600, 60
SHAPE = {"num_layers": 2, "hidden_size": 16}  # tests.test_engine's stand_in_lstm


@pytest.fixture
async def store(redis_url: str, unique: str):
    s = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=STATE_TTL_S, tombstone_ttl_s=TOMBSTONE_TTL_S)
    yield s
    await s.close()


def enc(patient: str, offset: int, minute: float, kind: str, **fields) -> InputEvent:
    """An encounter on the encounters topic (partition 0) at ``offset``."""
    encounter = Encounter(f"{patient}-enc-{offset}", patient, kind, T0 + timedelta(minutes=minute), **fields)
    return InputEvent(encounter, "encounters", 0, offset, None)


def admit(patient: str, offset: int, minute: float, unit: str = "ward", age: float | None = 72.0, sex: str | None = "female") -> InputEvent:
    return enc(patient, offset, minute, "admission", unit=unit, age=age, sex=sex)


async def stored(store: RedisStateStore, patient: str, version: str = "test-model-1") -> PatientState:
    (raw,) = (await store.load_many([patient])).values()
    return unpack(raw, model_version=version, **SHAPE)


async def ttl(store: RedisStateStore, redis_url: str, patient: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return await client.ttl(store.key(patient))
    finally:
        await client.aclose()


def context(state: PatientState) -> tuple:
    return (state.age, state.sex, state.unit, state.admitted_ts)


def same_context(a: tuple, b: tuple) -> bool:
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


UNKNOWN = (math.nan, -1, -1, math.nan)


async def test_admission_sets_the_context_and_a_transfer_moves_the_unit(store: RedisStateStore) -> None:
    e = engine(store)
    events = [admit("a", 0, 0, unit="ward", age=72.0, sex="female"), ev("a", 0, 5), enc("a", 1, 30, "transfer", unit="icu"), ev("a", 1, 40)]
    outcome = await e.score(events)
    assert [s.event for s in outcome.scored] == [events[1], events[3]], "encounters are not scored"
    assert outcome.encounters == [events[0], events[2]] and not outcome.duplicates
    await e.persist()
    state = await stored(store, "a")
    admitted = (T0).timestamp()
    assert same_context(context(state), (72.0, sex_code("female"), unit_code("icu"), admitted))
    assert state.watermark == {("encounters", 0): 1, ("vitals", 0): 1}
    assert not state.discharged


@pytest.mark.parametrize(
    "order, unit",
    [(("admission", "transfer"), "icu"), (("transfer", "admission"), "ward")],
    ids=["admit-then-transfer", "transfer-then-admit"],
)
async def test_encounters_of_one_batch_apply_in_order(store: RedisStateStore, order: tuple, unit: str) -> None:
    made = {"admission": lambda o: admit("a", o, o, unit="ward"), "transfer": lambda o: enc("a", o, o, "transfer", unit="icu")}
    e = engine(store)
    await e.score([made[kind](offset) for offset, kind in enumerate(order)])
    await e.persist()
    assert (await stored(store, "a")).unit == unit_code(unit)


async def test_encounters_change_no_score_and_no_model_state(store: RedisStateStore, redis_url: str, unique: str) -> None:
    """The shipped model does not read the context: a stream with admissions and transfers
    between its observations scores exactly like the same observations alone, in one batch
    or one event per batch."""
    observations = [ev(p, k, 10 * k + i, heart_rate=70.0 + 9 * k + i, spo2=97.0 - k) for k in range(4) for i, p in enumerate("abc")]
    encounters = {2: admit("a", 0, 1), 4: admit("b", 0, 2, unit="icu", age=None, sex=None), 8: enc("a", 1, 25, "transfer", unit="step_down")}
    mixed = [x for i, o in enumerate(observations) for x in ([encounters[i]] if i in encounters else []) + [o]]
    alone = await engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:")).score(observations)
    together = await engine(store).score(mixed)
    one_by_one = engine(RedisStateStore(redis_url, prefix=f"test:{unique}:single:"))
    separate = [s for x in mixed for s in (await one_by_one.score([x])).scored]
    assert [s.event for s in together.scored] == observations
    assert risks(together) == risks(alone) == [s.risk for s in separate]
    assert [s.news2 for s in together.scored] == [s.news2 for s in alone.scored]


async def test_an_observation_before_its_admission_is_scored_and_a_late_admission_fills_the_context_in(
    store: RedisStateStore,
) -> None:
    e = engine(store)
    first = await e.score([ev("a", 0, 0, heart_rate=120.0), ev("a", 1, 5, heart_rate=125.0)])
    assert len(first.scored) == 2
    await e.persist()
    before = await stored(store, "a")
    assert same_context(context(before), UNKNOWN)
    late = await e.score([admit("a", 0, -60, unit="step_down", age=55.5, sex="male")])  # admitted an hour before
    assert not late.scored and late.encounters
    await e.persist()
    after = await stored(store, "a")
    assert same_context(context(after), (55.5, sex_code("male"), unit_code("step_down"), (T0 - timedelta(hours=1)).timestamp()))
    for name in ("h", "c", "last_value", "last_time"):
        assert np.array_equal(getattr(after, name), getattr(before, name), equal_nan=True), f"{name} changed"
    assert (after.prev_time, after.level) == (before.prev_time, before.level)


async def test_discharge_releases_the_patient_at_persist_not_before(
    store: RedisStateStore, redis_url: str
) -> None:
    e = engine(store)
    events = [admit("a", 0, 0), ev("a", 0, 5, heart_rate=130.0), enc("a", 1, 60, "discharge", disposition="home"), ev("b", 0, 5)]
    outcome = await e.score(events)
    assert len(outcome.scored) == 2 and e.resident == 2, "still resident until the batch is safe"
    assert await store.load_many(["a"]) == {}, "nothing written before persist"
    assert await e.persist() == 2
    assert e.resident == 1, "a's slot is free, b stays"
    tombstone = await stored(store, "a")
    assert tombstone.discharged
    assert tombstone.watermark == {("encounters", 0): 1, ("vitals", 0): 0}
    assert set(id_hashes([x.event_id for x in events[:3]])) <= set(tombstone.recent_ids.tolist())
    assert not tombstone.h.any() and not tombstone.c.any() and np.isnan(tombstone.last_value).all()
    assert math.isnan(tombstone.prev_time) and tombstone.level == 0 and same_context(context(tombstone), UNKNOWN)
    assert 0 < await ttl(store, redis_url, "a") <= TOMBSTONE_TTL_S
    assert TOMBSTONE_TTL_S < await ttl(store, redis_url, "b") <= STATE_TTL_S
    assert not (await stored(store, "b")).discharged


async def test_redelivery_after_a_crash_between_persist_and_commit_skips_the_closed_stay(store: RedisStateStore) -> None:
    batch = [admit("a", 0, 0), ev("a", 0, 5), ev("a", 1, 10), enc("a", 1, 60, "discharge", disposition="died")]
    first = engine(store)
    await first.score(batch)
    await first.persist()  # ... and the worker dies before Kafka commits: the batch comes again
    restarted = engine(store)
    again = await restarted.score(batch)
    assert again.duplicates == batch and not again.scored and not again.encounters
    copies = [resent(batch[1], 2), resent(batch[3], 5)]  # the producer sent them twice
    assert (await restarted.score(copies)).duplicates == copies
    assert await restarted.persist() == 1
    assert (await stored(store, "a")).discharged, "still the closed stay's tombstone"
    assert restarted.resident == 0


@pytest.mark.parametrize("split", [False, True], ids=["one-batch", "next-batch"])
async def test_after_a_tombstone_a_readmission_starts_fresh_with_the_watermark(
    store: RedisStateStore, redis_url: str, unique: str, split: bool
) -> None:
    """Whatever follows a discharge starts from a fresh state, whether it arrives in the same
    batch or after the tombstone was written: the result is the same."""
    stay = [admit("a", 0, 0), ev("a", 0, 5, heart_rate=140.0, resp_rate=28.0), enc("a", 1, 60, "discharge", disposition="home")]
    readmission = [admit("a", 2, 600, unit="icu", age=73.0), ev("a", 1, 605, heart_rate=90.0)]
    e = engine(store)
    if split:
        await e.score(stay)
        await e.persist()
        outcome = await e.score(readmission)
    else:
        outcome = await e.score(stay + readmission)
        outcome.scored = outcome.scored[1:]
    await e.persist()
    fresh = await engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:")).score([ev("x", 1, 605, heart_rate=90.0)])
    assert risks(outcome) == risks(fresh), "scored from an empty history"
    assert e.resident == 1, "readmitted: resident again"
    state = await stored(store, "a")
    assert not state.discharged
    assert state.watermark == {("encounters", 0): 2, ("vitals", 0): 1}
    assert same_context(context(state), (73.0, sex_code("female"), unit_code("icu"), (T0 + timedelta(minutes=600)).timestamp()))
    assert TOMBSTONE_TTL_S < await ttl(store, redis_url, "a") <= STATE_TTL_S
    assert (await e.score([resent(stay[1], 7)])).duplicates, "the closed stay's ids are still remembered"


async def test_a_late_observation_after_discharge_is_scored_from_a_fresh_state(store: RedisStateStore, redis_url: str, unique: str) -> None:
    e = engine(store)
    await e.score([admit("a", 0, 0), ev("a", 0, 5, heart_rate=140.0), enc("a", 1, 60, "discharge")])
    await e.persist()
    late = await e.score([ev("a", 1, 30, lactate=4.0)])  # a lab drawn before discharge, resulted after
    blank = await engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:")).score([ev("x", 1, 30, lactate=4.0)])
    assert risks(late) == risks(blank)
    await e.persist()
    assert same_context(context(await stored(store, "a")), UNKNOWN)


async def test_discarded_discharge_is_re_read_not_released(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([admit("a", 0, 0), ev("a", 0, 5)])
    await e.persist()
    await e.score([enc("a", 1, 60, "discharge")])
    e.discard_unpersisted()  # the publish failed: the discharge is scored again from Redis
    assert e.resident == 0
    assert await e.persist() == 0
    assert not (await stored(store, "a")).discharged
    retry = await e.score([enc("a", 1, 60, "discharge")])
    assert retry.encounters and not retry.duplicates
    await e.persist()
    assert (await stored(store, "a")).discharged and e.resident == 0


async def test_a_discharged_patient_evicted_before_persist_is_written_as_a_tombstone(
    store: RedisStateStore, redis_url: str
) -> None:
    e = engine(store, capacity=2)  # three patients in the batch: a is evicted, dirty, before persist
    await e.score([admit("a", 0, 0), enc("a", 1, 5, "discharge"), ev("b", 0, 5), ev("c", 0, 5)])
    assert e.resident == 2
    await e.persist()
    assert (await stored(store, "a")).discharged
    assert 0 < await ttl(store, redis_url, "a") <= TOMBSTONE_TTL_S


async def test_a_resent_encounter_in_the_same_batch_applies_once(store: RedisStateStore) -> None:
    e = engine(store)
    first = admit("a", 0, 0, unit="ward")
    batch = [first, enc("a", 1, 5, "transfer", unit="icu"), resent(first, 2)]
    outcome = await e.score(batch)
    assert outcome.duplicates == [batch[2]] and outcome.encounters == batch[:2]
    await e.persist()
    assert (await stored(store, "a")).unit == unit_code("icu"), "the copy did not move the patient back"


async def test_state_of_another_model_keeps_the_context(store: RedisStateStore) -> None:
    old = engine(store, version="model-A")
    await old.score([admit("a", 0, 0, unit="icu", age=64.0, sex="other"), ev("a", 0, 5, heart_rate=140.0)])
    await old.persist()
    new: RiskEngine = engine(store, version="model-B")
    await new.score([ev("a", 1, 10)])
    await new.persist()
    state = await stored(store, "a", version="model-B")
    assert same_context(context(state), (64.0, sex_code("other"), unit_code("icu"), T0.timestamp()))
