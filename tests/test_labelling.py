"""Labelled predictions: the one labelling rule (models.evaluation.outcome_labels), the score
history in the state record, and the engine labelling its own scores as outcomes, deaths, ICU
transfers and discharges arrive — equal to the offline rule on the same events, each score once
across a restart, a redelivery and a discarded batch (against a real Redis)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Callable

import numpy as np
import pytest

from models.evaluation.outcome_labels import EXCLUDED, NEGATIVE, PENDING, POSITIVE, RESOLUTIONS, label_scores, resolve
from schemas.decode import decode
from schemas.errors import ContractError
from schemas.outcome import Outcome
from tests.test_engine import T0, ev
from tests.test_engine import engine as plain_engine
from tests.test_engine_encounters import SHAPE, admit, enc, stored
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.codec import pack_many, unpack
from worker.state.history import ScoreEntry, ScoreHistory
from worker.state.store import RedisStateStore

H = 3600.0


def test_the_rule_offline() -> None:
    """Within the horizon before the first outcome: positive; after it: excluded; earlier:
    negative, 'discharged_alive' only when the patient left before the horizon passed."""
    labels = label_scores([0, 1 * H, 3 * H, 9 * H, 10 * H], [9.5 * H, 7 * H], ["death", "sepsis_onset"], 6.0)
    assert labels.label.tolist() == [NEGATIVE, POSITIVE, POSITIVE, EXCLUDED, EXCLUDED]
    assert labels.outcome_ts.tolist()[1:3] == [7 * H, 7 * H], "the first outcome, whatever the order given"
    assert labels.outcome_kind.tolist()[1] == 0 and RESOLUTIONS[labels.resolution[0]] == "horizon_passed"
    alive = label_scores([0, 5 * H], [], [], 6.0, discharged_alive_at=8 * H)
    assert alive.label.tolist() == [NEGATIVE, NEGATIVE]
    assert [RESOLUTIONS[r] for r in alive.resolution] == ["horizon_passed", "discharged_alive"]
    assert label_scores([2 * H], [8 * H], ["icu_transfer"], 6.0).label.tolist() == [POSITIVE], "t + horizon inclusive"


def test_the_rule_live_waits_for_the_horizon_and_the_delay() -> None:
    none = np.full(3, math.nan)
    pending = resolve(np.array([0, H, 2 * H]), none, np.full(3, -1), none, 6 * H, clock_ts=np.full(3, 8.5 * H), delay_s=2 * H)
    assert pending.label.tolist() == [NEGATIVE, PENDING, PENDING]


def test_outcomes_v1_decodes_and_names_the_bad_field() -> None:
    good = b'{"event_id":"o1","patient_id":"p1","kind":"sepsis_onset","occurred_at":"2026-01-01T10:00:00Z","source":"adjudicated"}'
    (outcome,) = decode("outcomes", good)
    assert isinstance(outcome, Outcome) and outcome.kind == "sepsis_onset" and outcome.occurred_ts == 1767261600.0
    for bad, name in (
        (good.replace(b"sepsis_onset", b"fever"), "kind"),
        (good.replace(b'"source":"adjudicated"', b'"source":"rumour"'), "source"),
        (good.replace(b"2026-01-01T10:00:00Z", b"yesterday"), "occurred_at"),
        (good[:-1] + b',"recorded_at":"2026-01-01T09:00:00Z"}', "recorded_at"),
        (good[:-1] + b',"value":1}', "value"),
    ):
        with pytest.raises(ContractError) as caught:
            decode("outcomes", bad)
        assert caught.value.errors[0].field == name


def test_a_history_travels_in_the_record() -> None:
    history = ScoreHistory(
        [ScoreEntry(1.7e9, 0.25, 1, 5, "e-1", "m-1", True), ScoreEntry(1.7e9 + 60, 0.5, 2, 7, "é-2", "m-0", False)],
        clock=1.7e9 + 90, outcome_ts=math.nan, outcome_kind=-1,
    )
    columns = {
        "h": np.zeros((1, 2, 16), np.float32), "c": np.zeros((1, 2, 16), np.float32),
        "last_value": np.full((1, 37), np.nan, np.float32), "last_time": np.full((1, 37), np.nan),
        "counts": np.zeros((1, 37), np.float32), "recent_ids": np.zeros((1, 32), np.int64),
        "prev_time": np.zeros(1), "level": np.zeros(1, np.int8), "cleared_level": np.zeros(1, np.int8),
        "cleared_ts": np.zeros(1), "age": np.zeros(1, np.float32), "sex": np.zeros(1, np.int8),
        "unit": np.zeros(1, np.int8), "admitted_ts": np.zeros(1), "first_time": np.zeros(1),
    }
    (record,) = pack_many(columns, [{("vitals", 0): 3}], "m-1", histories=[history])
    back = unpack(record, model_version="m-1", **SHAPE)
    assert back.history.entries == history.entries and back.history.clock == history.clock
    assert back.watermark == {("vitals", 0): 3}


# -- the engine ------------------------------------------------------------------------------

HORIZON_H, DELAY_H = 6.0, 1.0


@pytest.fixture
async def store(redis_url: str, unique: str):
    s = RedisStateStore(redis_url, prefix=f"test:{unique}:", ttl_s=600, tombstone_ttl_s=60)
    yield s
    await s.close()


def engine(store: RedisStateStore) -> RiskEngine:
    e = plain_engine(store)
    e._labeller.delay_s = DELAY_H * H  # noqa: SLF001 - the test's engine, the worker's rule
    return e


def outcome(patient: str, offset: int, minute: float, kind: str) -> InputEvent:
    return InputEvent(Outcome(f"{patient}-out-{offset}", patient, kind, T0 + timedelta(minutes=minute), "adjudicated"), "outcomes", 0, offset, None)


def cohort() -> list[InputEvent]:
    """Eight patients scored every 30 min for 14 h, in time order: p0 septic at 8 h (its record
    arriving 40 min later), p1 dies at 10 h, p2 moves ward -> ICU at 5 h, p3 goes home at 9 h,
    p4 has a rapid-response call at 2 h; the rest have no outcome. Offsets per topic in arrival order."""
    timed: list[tuple[float, str, Callable[[int], InputEvent]]] = []
    ends = {"p1": 600, "p3": 540}
    for p in range(8):
        pid = f"p{p}"
        timed.append((0, "encounters", lambda off, pid=pid: admit(pid, off, 0, unit="ward")))
        for step in range(28):
            minute = 30 * step + p + 0.5
            if minute < ends.get(pid, 10_000):
                hr = 70.0 + 5 * (step % 7) + p
                timed.append((minute, "vitals", lambda off, pid=pid, m=minute, hr=hr: ev(pid, off, m, heart_rate=hr)))
    timed += [
        (520, "outcomes", lambda off: outcome("p0", off, 480, "sepsis_onset")),
        (600, "encounters", lambda off: enc("p1", off, 600, "discharge", disposition="died")),
        (300, "encounters", lambda off: enc("p2", off, 300, "transfer", unit="icu")),
        (540, "encounters", lambda off: enc("p3", off, 540, "discharge", disposition="home")),
        (120, "outcomes", lambda off: outcome("p4", off, 120, "rapid_response")),
    ]
    offsets: Counter[str] = Counter()
    events = []
    for _, topic, build in sorted(timed, key=lambda t: t[0]):
        events.append(build(offsets[topic]))
        offsets[topic] += 1
    return events


def offline(events: list[InputEvent], scores: dict[str, tuple[str, float]]) -> dict[str, int]:
    """The offline rule on the same events: event_id -> label of every score it settles."""
    per: dict[str, dict] = {}
    for e in events:
        stay = per.setdefault(e.patient_id, {"scores": [], "outcomes": [], "kinds": [], "alive": None})
        item = e.item
        if isinstance(item, Outcome):
            stay["outcomes"].append(item.occurred_ts)
            stay["kinds"].append(item.kind)
        elif e.topic == "encounters" and item.kind == "discharge":
            if item.disposition == "died":
                stay["outcomes"].append(item.occurred_ts)
                stay["kinds"].append("death")
            else:
                stay["alive"] = item.occurred_ts
        elif e.topic == "encounters" and item.kind == "transfer" and item.unit == "icu":
            stay["outcomes"].append(item.occurred_ts)
            stay["kinds"].append("icu_transfer")
        elif e.event_id in scores:
            stay["scores"].append(e.event_id)
    labels = {}
    for stay in per.values():
        times = [scores[i][1] for i in stay["scores"]]
        got = label_scores(times, stay["outcomes"], stay["kinds"], HORIZON_H, stay["alive"])
        labels.update(zip(stay["scores"], got.label.tolist()))
    return labels


def batches(events: list[InputEvent], size: int) -> list[list[InputEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def run(store: RedisStateStore, parts: list[list[InputEvent]], restart_at: int | None = None) -> tuple[list, dict]:
    e = engine(store)
    labelled, scored = [], {}
    for i, batch in enumerate(parts):
        if i == restart_at:
            e = engine(store)  # a new process: state only in Redis
            assert not (await e.score(parts[i - 1])).labelling.scores, "a redelivered batch labels nothing"
        out = await e.score(batch)
        scored.update({s.event.event_id: (s.event.patient_id, s.observation.observed_ts) for s in out.scored})
        labelled.extend(out.labelling.scores)
        await e.persist()
    return labelled, scored


async def test_the_worker_labels_each_score_once_as_the_offline_rule_does(store: RedisStateStore) -> None:
    events = cohort()
    labelled, scores = await run(store, batches(events, 13))
    ids = [s.score.event_id for s in labelled]
    assert len(ids) == len(set(ids)), "each score labelled once"
    expected = offline(events, scores)
    got = {s.score.event_id: int(s.label) for s in labelled}
    assert got == {i: lab for i, lab in expected.items() if i in got}
    assert all(expected[i] in (EXCLUDED, NEGATIVE) or i in got for i in expected if scores[i][0] in {"p0", "p1", "p2", "p3", "p4"}), \
        "every score of a stay with an outcome or a discharge is settled"
    kinds = {(s.patient_id, s.outcome_kind) for s in labelled if s.label}
    assert kinds == {("p0", "sepsis_onset"), ("p1", "death"), ("p2", "icu_transfer"), ("p4", "rapid_response")}
    assert {s.resolution for s in labelled if s.patient_id == "p3"} == {"horizon_passed", "discharged_alive"}
    last = max(t for _, t in scores.values())
    quiet = [i for i, (p, t) in scores.items() if p == "p7"]
    assert {i for i in quiet if i in got} == {i for i in quiet if scores[i][1] + (HORIZON_H + DELAY_H) * H < last - 3 * 60}, \
        "a quiet patient's scores wait for horizon + delay of its own clock"
    pending = (await stored(store, "p7")).history.entries
    assert {p.event_id for p in pending} == set(quiet) - set(got), "the rest waits in the Redis record"
    assert not (await stored(store, "p1")).history.entries, "a discharge leaves nothing pending"


async def test_a_restart_and_a_redelivery_label_nothing_twice(store: RedisStateStore, redis_url: str, unique: str) -> None:
    events = cohort()
    reference, _ = await run(RedisStateStore(redis_url, prefix=f"test:{unique}:ref:", ttl_s=600), batches(events, 13))
    labelled, _ = await run(store, batches(events, 13), restart_at=9)
    assert sorted((s.score.event_id, s.label, s.resolution) for s in labelled) == sorted(
        (s.score.event_id, s.label, s.resolution) for s in reference
    )


async def test_a_discarded_batch_labels_the_same_scores_again(store: RedisStateStore) -> None:
    e = engine(store)
    parts = batches(cohort(), 40)
    for batch in parts[:-1]:
        await e.score(batch)
        await e.persist()
    first = await e.score(parts[-1])
    e.discard_unpersisted()  # the publish failed
    again = await e.score(parts[-1])
    assert [(s.score.event_id, s.label) for s in again.labelling.scores] == [(s.score.event_id, s.label) for s in first.labelling.scores]
    assert first.labelling.scores, "the last batch settles scores"


async def test_a_new_model_labels_the_old_models_pending_scores_under_their_version(store: RedisStateStore) -> None:
    old = plain_engine(store, version="m-old")
    await old.score([admit("a", 0, 0), ev("a", 0, 10), ev("a", 1, 70)])
    await old.persist()
    new = plain_engine(store, version="m-new")  # its state of another model: the patient starts fresh, history kept
    out = await new.score([ev("a", 2, 130), outcome("a", 0, 200, "cardiac_arrest")])
    assert [(s.score.event_id, s.score.model_version, s.label) for s in out.labelling.scores] == [
        ("a-vitals-0", "m-old", True), ("a-vitals-1", "m-old", True), ("a-vitals-2", "m-new", True),
    ]
