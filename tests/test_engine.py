"""RiskEngine against a real Redis: ordering, restore, idempotence, late events, alerts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import torch

from models.features import Context, Memory, Runs
from models.network import RiskLSTM
from schemas.observation import Observation
from schemas.variables import VARIABLES
from tests.old_state_formats import as_v1
from worker.scoring.alert_policy import AlertPolicy, alert_id
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.codec import RECENT_IDS
from worker.state.store import RedisStateStore

V = len(VARIABLES)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
CPU = torch.device("cpu")


class StandInEncoder:
    """FeatureEncoder.step contract: carry forward, count, normalise, mask, ages, step delta,
    time since admission (read unless ``legacy``, so context reaches the scores)."""

    def __init__(self, legacy: bool = False) -> None:
        self.legacy = legacy
        self.mean = torch.tensor([v.normal for v in VARIABLES])
        self.std = torch.tensor([max(abs(v.normal), 1.0) * 0.2 for v in VARIABLES])
        self.variables = tuple(v.name for v in VARIABLES)  # reads every catalogue variable
        self.columns = torch.arange(V)

    def step(self, values, t, memory: Memory, context: Context | None = None):
        observed = ~values.isnan()
        last_value = torch.where(observed, values, memory.last_value)
        last_time = torch.where(observed, t.unsqueeze(1), memory.last_time)
        counts = memory.counts + observed.float()
        first_time = torch.fmin(memory.first_time, t)
        z = (torch.where(last_value.isnan(), self.mean, last_value) - self.mean) / self.std
        age = torch.nan_to_num((t.unsqueeze(1) - last_time) / 3600.0, nan=48.0).float()
        dt = torch.nan_to_num((t - memory.prev_time) / 3600.0, nan=0.0).float().unsqueeze(1)
        start = first_time if context is None else torch.where(context.admitted.isnan(), first_time, context.admitted)
        stay = torch.nan_to_num((t - start) / 3600.0, nan=0.0).float().unsqueeze(1)
        x = torch.cat([z, observed.float(), age, dt, torch.zeros_like(stay) if self.legacy else stay / 100.0], dim=1)
        return x, Memory(last_value, last_time, t.clone(), counts, first_time)

    def runs(self, values, t, memory: Memory, runs: Runs, context: Context | None = None):
        """FeatureEncoder.runs contract: each event a step of its patient's memory, one after another."""
        state = Memory(*(f.clone() for f in memory.fields()))
        xs, trail = [], []
        for n in range(values.shape[0]):
            p = runs.patient[n : n + 1]
            at = None if context is None else Context(context.age[n : n + 1], context.sex[n : n + 1], context.admitted[n : n + 1])
            x, row = self.step(values[n : n + 1], t[n : n + 1], Memory(*(f.index_select(0, p) for f in state.fields())), at)
            for kept, new in zip(state.fields(), row.fields()):
                kept[p] = new
            xs.append(x)
            trail.append(row)
        stacked = Memory(*(torch.cat([getattr(m, f) for m in trail]) for f in ("last_value", "last_time", "prev_time", "counts")), state.first_time)
        return torch.cat(xs), stacked


def stand_in_lstm(hidden_size: int = 16, num_layers: int = 2) -> RiskLSTM:
    """A small, seeded, uncalibrated RiskLSTM over the stand-in encoder's features."""
    torch.manual_seed(0)
    return RiskLSTM(3 * V + 2, hidden_size, num_layers).eval()


def loaded(version: str = "test-model-1", legacy: bool = False) -> SimpleNamespace:
    return SimpleNamespace(model=stand_in_lstm(), encoder=StandInEncoder(legacy), manifest={"version": version})


@pytest.fixture
async def store(redis_url: str, unique: str):
    s = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=600)
    yield s
    await s.close()


def engine(
    store: RedisStateStore, *, capacity: int = 64, version: str = "test-model-1", policy: AlertPolicy | None = None,
    legacy: bool = False,
) -> RiskEngine:
    return RiskEngine(loaded(version, legacy), store, capacity=capacity, policy=policy or AlertPolicy(), device=CPU)


def ev(patient: str, offset: int, minute: float, topic: str = "vitals", partition: int = 0, **values: float) -> InputEvent:
    obs = Observation(f"{patient}-{topic}-{offset}", patient, T0 + timedelta(minutes=minute), values or {"heart_rate": 80.0})
    return InputEvent(obs, topic, partition, offset, None)


def stream(patients: int, steps: int) -> list[list[InputEvent]]:
    """``steps`` batches, each with one event per patient, varied vitals and an occasional lab."""
    batches = []
    for s in range(steps):
        batch = []
        for p in range(patients):
            values = {"heart_rate": 70.0 + 7 * ((p + s) % 9), "resp_rate": 12.0 + (p * s) % 14, "spo2": 99.0 - (s % 6)}
            if (p + s) % 4 == 0:
                values["lactate"] = 1.0 + 0.5 * ((p + s) % 7)
            batch.append(ev(f"p{p}", s, 15 * s + p / 10, **values))
        batches.append(batch)
    return batches


def resent(event: InputEvent, offset: int) -> InputEvent:
    """The same observation (same event_id) produced again, landing at a new offset."""
    return InputEvent(event.item, event.topic, event.partition, offset, None)


def risks(outcome) -> list[float]:
    return [s.risk for s in outcome.scored]


async def test_same_patient_events_in_one_batch_apply_in_order(store: RedisStateStore) -> None:
    events = [ev("a", 0, 0, heart_rate=80.0), ev("a", 1, 5, spo2=91.0), ev("a", 2, 9, heart_rate=130.0, resp_rate=26.0)]
    together = await engine(store).score(events)
    one_by_one = engine(store)
    separate = [s for e in events for s in (await one_by_one.score([e])).scored]
    assert [s.event for s in together.scored] == events
    assert risks(together) == [s.risk for s in separate]
    assert [s.news2 for s in together.scored] == [s.news2 for s in separate] == [0, 3, 3 + 2 + 3]  # spo2 91, heart rate 130, resp rate 26


async def test_mixed_batch_outputs_follow_input_order(store: RedisStateStore) -> None:
    events = [ev("a", 0, 0), ev("b", 0, 0), ev("a", 1, 1), ev("c", 0, 0), ev("a", 2, 2), ev("b", 1, 1)]
    outcome = await engine(store).score(events)
    assert [s.event for s in outcome.scored] == events


@pytest.mark.parametrize("left_in_format_1", [False, True], ids=["format-3", "format-1"])
async def test_restored_engine_scores_exactly_like_an_uninterrupted_one(
    store: RedisStateStore, redis_url: str, unique: str, left_in_format_1: bool
) -> None:
    """Also over state a format-1 worker left (before recent ids): an upgrade keeps every history.

    A format-1 record predates the measurement counts and the first event's time, so only a
    model that does not read them (the legacy inputs: every model a format-1 worker can have
    run) scores on exactly; the test's model is such a model in that case."""
    batches = stream(patients=20, steps=6)
    reference = engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:"), legacy=left_in_format_1)
    expected = [risks(await reference.score(b)) for b in batches]

    first = engine(store, legacy=left_in_format_1)
    for b in batches[:3]:
        await first.score(b)
    assert await first.persist() == 20
    if left_in_format_1:
        records = await store.load_many([f"p{i}" for i in range(20)])
        shape = {"num_layers": 2, "hidden_size": 16, "n_vars": V}  # stand_in_lstm's
        await store.save_many({p: as_v1(r, **shape) for p, r in records.items()})
    restarted = engine(store, legacy=left_in_format_1)  # a new process: empty slab, state only in Redis
    assert (await restarted.score(batches[2])).duplicates == batches[2], "the watermark came through"
    got = [risks(await restarted.score(b)) for b in batches[3:]]
    assert got == expected[3:]
    await restarted.persist()
    assert {r[2] for r in (await store.load_many([f"p{i}" for i in range(20)])).values()} == {4}, "written in format 4"


async def test_redelivered_events_are_duplicates(store: RedisStateStore) -> None:
    e = engine(store)
    batch = [ev("a", 0, 0), ev("a", 1, 1), ev("b", 7, 0, topic="labs", partition=1, lactate=3.0)]
    first = await e.score(batch)
    await e.persist()
    again = await e.score([*batch, ev("a", 2, 2)])
    assert again.duplicates == batch
    assert [s.event.offset for s in again.scored] == [2]
    # A different topic or partition has its own watermark.
    other = await e.score([ev("a", 0, 3, topic="labs", lactate=1.0)])
    assert len(other.scored) == 1 and not other.duplicates
    assert len(first.scored) == 3


async def test_discarded_changes_are_re_read_and_rescored_identically(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([ev("a", 0, 0, heart_rate=150.0, resp_rate=30.0, spo2=88.0)])
    await e.persist()
    retry = [ev("a", 1, 5, heart_rate=40.0, consciousness=3.0), ev("b", 0, 5)]
    first = await e.score(retry)
    e.discard_unpersisted()  # the publish failed
    assert e.resident == 0
    second = await e.score(retry)
    assert risks(second) == risks(first) and not second.duplicates
    alerts = [(s.alert.alert_id if s.alert else None) for s in second.scored]
    assert alerts == [(s.alert.alert_id if s.alert else None) for s in first.scored]


async def test_late_event_is_applied_at_the_previous_step_time(store: RedisStateStore) -> None:
    late, on_time = engine(store), engine(store)
    for e in (late, on_time):
        await e.score([ev("a", 0, 60, heart_rate=90.0)])
    got = await late.score([ev("a", 1, 30, heart_rate=120.0)])  # observed 30 min before the last step
    want = await on_time.score([ev("a", 1, 60, heart_rate=120.0)])
    assert risks(got) == risks(want)
    # Time did not go back: a later event sees the same history in both.
    assert risks(await late.score([ev("a", 2, 90)])) == risks(await on_time.score([ev("a", 2, 90)]))


async def test_full_slab_evicts_least_recent_and_restores_them(store: RedisStateStore, redis_url: str, unique: str) -> None:
    batches = stream(patients=6, steps=4)
    roomy = engine(RedisStateStore(redis_url, prefix=f"test:{unique}:roomy:"))
    expected = [risks(await roomy.score(b)) for b in batches]
    tight = engine(store, capacity=4)  # 6 patients per batch: chunks of 4, evicting as it goes
    got = [risks(await tight.score(b)) for b in batches]
    assert got == expected
    assert tight.resident == 4
    assert await tight.persist() == 6  # evicted dirty patients are written in the same round trip
    assert set(await store.load_many([f"p{i}" for i in range(6)])) == {f"p{i}" for i in range(6)}


async def test_state_of_another_model_version_starts_fresh_but_keeps_watermark(store: RedisStateStore) -> None:
    old = engine(store, version="model-A")
    await old.score([ev("a", 0, 0, heart_rate=140.0), ev("a", 1, 1, heart_rate=150.0)])
    await old.persist()
    new, blank = engine(store, version="model-B"), engine(store, version="model-B")
    outcome = await new.score([ev("a", 1, 1), ev("a", 2, 2, heart_rate=100.0)])
    assert [d.offset for d in outcome.duplicates] == [1]
    assert risks(outcome) == risks(await blank.score([ev("x", 2, 2, heart_rate=100.0)]))


async def test_release_partitions_persists_and_drops_their_patients(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([ev("a", 0, 0, partition=0), ev("b", 0, 0, partition=1), ev("c", 0, 0, topic="labs", partition=1, lactate=2.0)])
    await e.release_partitions({1})
    assert e.resident == 1
    assert set(await store.load_many(["a", "b", "c"])) == {"a", "b", "c"}
    assert await e.persist() == 0


async def test_alerts_carry_deterministic_ids_components_and_reasons(store: RedisStateStore) -> None:
    e = engine(store, policy=AlertPolicy(medium=0.9, high=0.99))  # only NEWS2 can alert here
    sick = ev("a", 0, 0, heart_rate=135.0, resp_rate=26.0, spo2=90.0, temperature=39.5, sbp=95.0)
    outcome = await e.score([ev("b", 0, 0), sick])
    quiet, loud = outcome.scored
    assert quiet.alert is None and quiet.level == "none"
    assert loud.news2 == 3 + 3 + 3 + 2 + 2 and loud.level == "high"
    alert = loud.alert
    assert (alert.previous_level, alert.level) == ("none", "high")
    assert alert.alert_id == alert_id("a", sick.event_id, "none", "high")
    assert alert.news2_components == {"resp_rate": 3, "spo2": 3, "on_oxygen": 0, "sbp": 2, "heart_rate": 3, "consciousness": 0, "temperature": 2}
    # NEWS2 set this level, not the model: the reasons are the NEWS2 parameters that scored,
    # most points first, with the values they scored on and their points.
    assert alert.raised_by == "news2"
    assert [(r["variable"], r["value"], r["unit"], r["contribution"]) for r in alert.reasons] == [
        ("resp_rate", 26.0, "/min", 3.0), ("spo2", 90.0, "%", 3.0), ("heart_rate", 135.0, "/min", 3.0),
        ("sbp", 95.0, "mm[Hg]", 2.0), ("temperature", 39.5, "Cel", 2.0),
    ]
    # Staying high is not a new alert; recovering resolves, and the model explains that.
    later = await e.score([ev("a", 1, 10, heart_rate=130.0), ev("a", 2, 20, heart_rate=75.0, resp_rate=16.0, spo2=97.0, temperature=37.0, sbp=120.0)])
    assert later.scored[0].alert is None
    resolved = later.scored[1].alert
    assert (resolved.previous_level, later.scored[1].level, resolved.raised_by) == ("high", "none", "model")
    assert 1 <= len(resolved.reasons) <= 5
    assert all(set(r) == {"variable", "value", "unit", "contribution"} for r in resolved.reasons)


async def test_an_alert_the_model_raised_is_explained_by_the_model(store: RedisStateStore) -> None:
    """Below NEWS2's emergency trigger the model set the level: occlusion reasons, raised_by model."""
    e = engine(store, policy=AlertPolicy(medium=0.01, high=0.99))  # the stand-in's ~0.5 risk is medium
    (scored,) = (await e.score([ev("a", 0, 0, heart_rate=95.0, lactate=3.0)])).scored
    assert scored.news2 < 7 and scored.level == "medium"
    assert scored.alert.raised_by == "model"
    assert {r["variable"] for r in scored.alert.reasons} <= {"heart_rate", "lactate"}


async def test_alerts_inside_a_run_of_events_match_the_events_scored_one_by_one(store: RedisStateStore) -> None:
    """A batch folds a patient's events together; an alert on a patient's 2nd or 3rd event of
    the batch must carry the id, levels, NEWS2 components and reasons it would have had with
    every event in a batch of its own (the reasons need the state from just before that step)."""
    policy = AlertPolicy(medium=0.9, high=0.99)  # only NEWS2 can alert here
    sick = dict(heart_rate=135.0, resp_rate=26.0, spo2=90.0, temperature=39.5, sbp=95.0)
    well = dict(heart_rate=75.0, resp_rate=16.0, spo2=97.0, temperature=37.0, sbp=120.0)
    events = [
        ev("a", 0, 0), ev("b", 0, 0), ev("a", 1, 5, **sick), ev("c", 0, 1, **sick), ev("b", 1, 3),
        ev("a", 2, 9, **well), ev("b", 2, 6, heart_rate=140.0, resp_rate=30.0, spo2=88.0, sbp=90.0), ev("a", 3, 12),
    ]
    together = (await engine(store, policy=policy).score(events)).scored
    one_by_one = engine(store, policy=policy)
    separate = [s for e in events for s in (await one_by_one.score([e])).scored]

    assert [s.event for s in together] == events
    assert [(s.risk, s.news2, s.level) for s in together] == [(s.risk, s.news2, s.level) for s in separate]
    alerts = [(s.alert, t.alert) for s, t in zip(together, separate)]
    assert [a is not None for a, _ in alerts] == [b is not None for _, b in alerts]
    assert sum(a is not None for a, _ in alerts) == 4, "a raised, a resolved, c raised, b raised"
    for batched, alone in ((a, b) for a, b in alerts if a is not None):
        assert (batched.alert_id, batched.level, batched.previous_level) == (alone.alert_id, alone.level, alone.previous_level)
        assert batched.news2_components == alone.news2_components
        assert [(r["variable"], r["value"]) for r in batched.reasons] == [(r["variable"], r["value"]) for r in alone.reasons]
        assert [r["contribution"] for r in batched.reasons] == pytest.approx([r["contribution"] for r in alone.reasons], abs=1e-6)


async def test_news2_carries_vitals_forward_for_24_hours(store: RedisStateStore) -> None:
    e = engine(store)
    await e.score([ev("a", 0, 0, resp_rate=26.0)])
    assert (await e.score([ev("a", 1, 60, heart_rate=135.0)])).scored[0].news2 == 3 + 3
    assert (await e.score([ev("a", 2, 24 * 60 + 1, heart_rate=135.0)])).scored[0].news2 == 3


async def test_a_resent_event_id_at_a_new_offset_is_skipped_and_changes_nothing(
    store: RedisStateStore, redis_url: str, unique: str
) -> None:
    e, never_resent = engine(store), engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:"))
    first, second = ev("a", 0, 0, heart_rate=120.0), ev("a", 1, 10, heart_rate=90.0)
    for x in (e, never_resent):
        await x.score([first, second])
    copy = resent(first, 2)
    outcome = await e.score([copy])
    assert outcome.duplicates == [copy] and not outcome.scored
    probe = ev("a", 3, 20, heart_rate=100.0)
    assert risks(await e.score([probe])) == risks(await never_resent.score([probe]))
    assert (await e.score([resent(first, 2)])).duplicates, "its offset advanced the watermark: a redelivery"


async def test_two_copies_in_one_batch_apply_once(store: RedisStateStore, redis_url: str, unique: str) -> None:
    events = [ev("a", 0, 0, heart_rate=80.0), ev("b", 0, 0), ev("a", 1, 5, spo2=91.0), ev("a", 4, 9, heart_rate=130.0)]
    batch = [events[0], events[1], events[2], resent(events[2], 2), resent(events[0], 3), events[3]]  # offsets rise
    outcome = await engine(store).score(batch)
    assert outcome.duplicates == [batch[3], batch[4]]
    assert [s.event for s in outcome.scored] == events
    reference = engine(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:"))
    assert risks(outcome) == risks(await reference.score(events))


async def test_recent_ids_survive_a_restart(store: RedisStateStore) -> None:
    first = engine(store)
    events = [ev("a", k, k) for k in range(3)]
    await first.score(events)
    await first.persist()
    restarted = engine(store)  # a new process, or the partition's new owner after a rebalance
    copies = [resent(events[1], 10), resent(events[0], 11)]
    assert (await restarted.score(copies)).duplicates == copies


async def test_a_copy_older_than_the_last_recent_ids_events_is_applied_again(store: RedisStateStore) -> None:
    """The documented bound: the ring holds RECENT_IDS ids; an older copy is a new event."""
    e = engine(store)
    events = [ev("a", k, k) for k in range(RECENT_IDS + 1)]
    await e.score(events)
    recent, forgotten = resent(events[1], 100), resent(events[0], 101)
    outcome = await e.score([recent, forgotten])
    assert outcome.duplicates == [recent]
    assert [s.event for s in outcome.scored] == [forgotten]


def _with_weights(version: str, sha: str, seed: int = 0) -> SimpleNamespace:
    model = loaded(version)
    model.manifest["weights_sha256"] = sha
    if seed:
        torch.manual_seed(seed)
        for parameter in model.model.parameters():
            parameter.data.normal_(0.0, 0.3)
    return model


async def test_reload_with_the_same_weights_keeps_every_patients_state(store, redis_url: str, unique: str) -> None:
    batches = stream(patients=3, steps=4)
    continuous = engine(store, capacity=8)
    reference = [await continuous.score(b) for b in batches]
    continuous.discard_unpersisted()

    other = RedisStateStore(redis_url, prefix=f"test:{unique}:reload:", ttl_s=600)
    reloading = RiskEngine(_with_weights("v1", "abc"), other, capacity=8, policy=AlertPolicy(), device=CPU)
    for b in batches[:2]:
        await reloading.score(b)
        await reloading.persist()
    assert await reloading.reload(_with_weights("v1-site", "abc"), AlertPolicy(medium=0.5, high=0.7)) is True
    assert reloading.resident == 3 and reloading.model_version == "v1-site"
    for want, b in zip(reference[2:], batches[2:]):
        got = await reloading.score(b)
        assert [s.risk for s in got.scored] == pytest.approx([s.risk for s in want.scored], abs=1e-6)
    await other.close()


async def test_reload_with_other_weights_starts_each_patients_model_state_fresh(store, redis_url: str, unique: str) -> None:
    batches = stream(patients=2, steps=3)
    reloading = engine(store, capacity=8)
    for b in batches[:2]:
        await reloading.score(b)
        await reloading.persist()
    assert await reloading.reload(_with_weights("v2", "def", seed=7), AlertPolicy()) is False
    assert reloading.resident == 0
    got = await reloading.score(batches[2])
    fresh_store = RedisStateStore(redis_url, prefix=f"test:{unique}:fresh:", ttl_s=600)
    fresh = RiskEngine(_with_weights("v2", "def", seed=7), fresh_store, capacity=8, policy=AlertPolicy(), device=CPU)
    want = await fresh.score(batches[2])
    assert [s.risk for s in got.scored] == pytest.approx([s.risk for s in want.scored], abs=1e-6)
    assert not (await reloading.score(batches[2])).scored  # watermarks survived the reset: a redelivery is still a duplicate
    await fresh_store.close()


async def test_a_reload_that_fails_changes_nothing(store) -> None:
    batches = stream(patients=2, steps=3)
    continuous = engine(store, capacity=8)
    reference = [await continuous.score(b) for b in batches]
    continuous.discard_unpersisted()
    reloading = engine(store, capacity=8)
    await reloading.score(batches[0])
    await reloading.persist()
    broken = _with_weights("v9", "other", seed=3)
    del broken.manifest["version"]
    with pytest.raises(KeyError):
        await reloading.reload(broken, AlertPolicy())
    assert reloading.model_version == "test-model-1" and reloading.resident == 2
    for want, b in zip(reference[1:], batches[1:]):
        got = await reloading.score(b)
        assert [s.risk for s in got.scored] == pytest.approx([s.risk for s in want.scored], abs=1e-6)


async def test_a_switch_to_the_model_that_ran_as_the_shadow_keeps_each_patients_lstm_state(
    store, redis_url: str, unique: str
) -> None:
    """The live engine meets records of the old model; with the shadow's keys as ``warm_from`` it
    takes each patient's state of the new model from there and scores on exactly as the shadow
    would have, its own watermarks kept; without them each patient starts fresh."""
    batches = stream(patients=3, steps=4)
    shadow_store = RedisStateStore(redis_url, prefix=f"test:{unique}:shadow:", ttl_s=600)
    old = RiskEngine(_with_weights("old", "aaa"), store, capacity=8, policy=AlertPolicy(), device=CPU)
    shadow = RiskEngine(_with_weights("new", "bbb", seed=7), shadow_store, capacity=8, policy=AlertPolicy(), device=CPU, role="shadow")
    for b in batches[:2]:
        for running in (old, shadow):
            await running.score(b)
            await running.persist()
    expected = [[s.risk for s in (await shadow.score(b)).scored] for b in batches[2:]]

    switched = RiskEngine(
        _with_weights("new", "bbb", seed=7), store, capacity=8, policy=AlertPolicy(), device=CPU, warm_from=shadow_store,
    )
    got = [[s.risk for s in (await switched.score(b)).scored] for b in batches[2:]]
    assert got == [pytest.approx(want, abs=1e-6) for want in expected]
    assert not (await switched.score(batches[1])).scored  # its own watermarks: a redelivery is still a duplicate

    cold = RiskEngine(_with_weights("new", "bbb", seed=7), store, capacity=8, policy=AlertPolicy(), device=CPU)
    first = [s.risk for s in (await cold.score(batches[2])).scored]
    assert all(abs(a - b) > 1e-4 for a, b in zip(first, expected[0]))
    await shadow_store.close()
