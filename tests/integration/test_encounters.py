"""Admissions, transfers and discharges through a real worker, across two kill -9s.

A ward of ten patients streams vitals and encounters: most are admitted before their first
observation, one's admission arrives late (after three of its observations were scored with
the context unknown), one is never admitted, two are transferred. The worker is killed
mid-stream. Three patients are then discharged (one died), the worker is killed again right
after their tombstones reach Redis (before or after Kafka commits: either way the discharge
must not be applied twice), and one of them is readmitted under the same id. The run is held
to the uninterrupted pass (fault_harness): every observation scored with the reference's
risk, the same alerts, and every patient's Redis record — LSTM state, context, watermark,
discharge flag — equal; the discharged patients' keys are tombstones with the short TTL and
their slots are free.

A patient's events cross from one topic to the other only once those sent before are safe in
Redis (a discharge after its observations, an observation after its admission or readmission,
a late admission after the observations it follows): Kafka keeps no order between the vitals
and the encounters topics, the model reads the admission's age, sex and time, and an
observation applied after a discharge belongs to a new stay (see fault_harness).
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from models.datasets.simulator import SimEvent, simulate_cohort
from schemas.encounter import sex_code, unit_code
from tests.integration.fault_harness import (
    PacedStream,
    all_scored,
    metric,
    persisted_in,
    produce_now,
    reference_run,
    score_differences,
    stored_states,
    wait_for_states,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

DISCHARGED_TTL_S = 300
VITALS_PER_STAY = 9
DISCHARGED = {"p0": "home", "p1": "died", "p4": "other_facility"}  # p0 comes back
BIRTH_DATE = "1950-06-15"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def encounter(patient: str, name: str, kind: str, ts: float, **fields: Any) -> SimEvent:
    time_field = {"admission": "admitted_at", "transfer": "transferred_at", "discharge": "discharged_at"}[kind]
    payload = {"event_id": f"{patient}-{name}", "patient_id": patient, "kind": kind, time_field: _iso(ts), **fields}
    return SimEvent("encounters", payload, ts)


def later(event: SimEvent, name: str, shift_s: float) -> SimEvent:
    """A copy of a vitals event ``shift_s`` later, under a new event id."""
    ts = event.observed_ts + shift_s
    payload = {**event.payload, "event_id": f"{event.payload['event_id']}-{name}", "observed_at": _iso(ts)}
    return SimEvent(event.topic, payload, ts)


def ward(seed: int) -> tuple[list[SimEvent], list[SimEvent], list[SimEvent], dict[str, list[SimEvent]]]:
    """(first phase, discharges, readmission and a last observation of everyone still in,
    each patient's vitals of the first phase), patients renamed p0..p9."""
    cohort = simulate_cohort(10, seed=seed, deteriorating_fraction=0.5)
    vitals: dict[str, list[SimEvent]] = {}
    for i, patient in enumerate(cohort):
        pid = f"p{i}"
        own = [e for e in patient.events if e.topic == "vitals"][: VITALS_PER_STAY + 1]
        vitals[pid] = [SimEvent("vitals", {**e.payload, "patient_id": pid, "event_id": f"{pid}-{e.payload['event_id']}"},
                                e.observed_ts) for e in own]
    timeline: list[tuple[float, SimEvent]] = []
    for i, (pid, own) in enumerate(vitals.items()):
        first = own[0].observed_ts
        timeline += [(e.observed_ts, e) for e in own[:VITALS_PER_STAY]]
        if i <= 7:  # admitted before the first observation, each a little differently
            fields: dict[str, Any] = {"unit": ("ward", "step_down", "icu")[i % 3], "sex": ("female", "male", "other")[i % 3]}
            fields |= {"birth_date": BIRTH_DATE} if i == 3 else {"age": 40.0 + 5 * i}
            timeline.append((first - 600, encounter(pid, "admission", "admission", first - 600, **fields)))
        if i == 8:  # admitted an hour before its first observation, sent after its third
            late = encounter(pid, "admission", "admission", first - 3600, unit="ward", age=81.0, sex="female")
            timeline.append((own[2].observed_ts + 1, late))
    for pid, after, unit in (("p1", 5, "icu"), ("p2", 7, "step_down")):
        at = vitals[pid][after].observed_ts + 1
        timeline.append((at, encounter(pid, "transfer", "transfer", at, unit=unit)))
    first_phase = [e for _, e in sorted(timeline, key=lambda item: item[0])]

    discharges = [
        encounter(pid, "discharge", "discharge", vitals[pid][VITALS_PER_STAY - 1].observed_ts + 1800, disposition=how)
        for pid, how in DISCHARGED.items()
    ]
    back = discharges[0].observed_ts + 2 * 86400
    readmission = [encounter("p0", "readmission", "admission", back, unit="icu", age=45.0, sex="male")]
    readmission += [later(e, "readmitted", back - vitals["p0"][0].observed_ts + 60) for e in vitals["p0"][:3]]
    still_in = [own[VITALS_PER_STAY] for pid, own in vitals.items() if pid not in DISCHARGED]
    return first_phase, discharges, readmission + still_in, vitals


def test_admissions_transfers_and_discharges_survive_kill_9_equal_to_the_reference(
    start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    started = time.monotonic()
    rng = random.Random(13)
    prefix = f"test-{unique}:state:"
    first_phase, discharges, last_phase, vitals = ward(seed=16)
    scores = read_output(topics["risk_scores"])
    env = {"VITALWATCH_DISCHARGED_TTL_S": str(DISCHARGED_TTL_S)}

    worker = start_worker(**env)
    worker.wait_ready()
    safe = persisted_in(redis_url, prefix)
    # Each patient's events cross between the two topics only once the ones before are safe
    # (see the module notes): the worker then applies them in list order, as the reference does.
    stream = PacedStream(producer, topics, first_phase, per_second=60, allowed=len(first_phase) // 2, safe=safe).start()
    scores.until(lambda r: len(r) >= 15, 60, [worker])
    time.sleep(rng.uniform(0.0, 0.5))
    worker.kill()
    scored_before_kill = len(scores.poll())
    stream.allow(len(first_phase))
    worker = start_worker(**env)
    coordinates = stream.join(timeout_s=60)
    assert scored_before_kill < sum(e.topic == "vitals" for e in first_phase), "the first kill must land mid-stream"

    # Discharge only once the stays' observations are safe (see the module notes).
    leaving = {pid: coordinates[vitals[pid][VITALS_PER_STAY - 1].payload["event_id"]] for pid in DISCHARGED}
    wait_until(lambda: safe(leaving) == set(leaving), 60, "the leaving patients' vitals in Redis", [worker])
    coordinates |= produce_now(producer, topics, discharges)
    wait_until(lambda: all(s.discharged for s in stored_states(redis_url, prefix, list(DISCHARGED)).values())
               and len(stored_states(redis_url, prefix, list(DISCHARGED))) == 3, 60, "the tombstones", [worker])
    time.sleep(rng.uniform(0.0, 0.3))  # between the tombstones' write and the commit, or just after
    worker.kill()
    worker = start_worker(**env)
    coordinates |= PacedStream(producer, topics, last_phase, per_second=1e9, safe=safe).start().join(timeout_s=60)

    events = [*first_phase, *discharges, *last_phase]
    expected = reference_run(events, coordinates, redis_url, f"ref-{unique}:state:")
    observations = {e.payload["event_id"] for e in events if e.topic == "vitals"}
    assert set(expected.risks) == observations, "the reference scores every observation, no encounter"
    records = scores.until(all_scored(observations), 90, [worker])
    time.sleep(1.0)  # re-published duplicates of the last batches arrive too
    records = scores.poll()

    wrong = score_differences(records, expected.risks)
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    assert {r["event_id"] for r in records} == observations, "a risk score for every observation and nothing else"
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).until(
        lambda r: {a["alert_id"] for a in r} >= expected.alerts, 30, [worker])}
    assert alerts == expected.alerts
    problems = wait_for_states(redis_url, prefix, expected)
    assert not problems, f"{len(problems)} state differences, e.g. {problems[:5]}"
    assert read_output(topics["dead_letters"]).poll() == []

    states = stored_states(redis_url, prefix, sorted(vitals))
    assert {p for p, s in states.items() if s.discharged} == {"p1", "p4"}, "p0 was readmitted"
    assert (states["p0"].unit, states["p0"].sex, states["p0"].age) == (unit_code("icu"), sex_code("male"), 45.0)
    assert states["p2"].unit == unit_code("step_down") and states["p5"].unit == unit_code("icu")
    assert states["p3"].age == pytest.approx(
        (datetime.fromtimestamp(states["p3"].admitted_ts, timezone.utc) - datetime(1950, 6, 15, tzinfo=timezone.utc))
        / timedelta(days=365.2425), abs=0.01), "age from the birth date at admission"
    late = vitals["p8"][0].observed_ts - 3600
    assert (states["p8"].age, states["p8"].sex, states["p8"].unit, states["p8"].admitted_ts) == (
        81.0, sex_code("female"), unit_code("ward"), late), "the late admission filled the context in"
    assert (states["p9"].sex, states["p9"].unit) == (-1, -1), "never admitted: unknown"
    client = redis.Redis.from_url(redis_url)
    try:
        ttls = {p: client.ttl(f"{prefix}{p}") for p in states}
    finally:
        client.close()
    assert all(0 < ttls[p] <= DISCHARGED_TTL_S for p in ("p1", "p4")), ttls
    assert all(ttls[p] > DISCHARGED_TTL_S for p in states if p not in ("p1", "p4")), ttls
    # The last worker saw p1's and p4's discharge (or its redelivery) and everyone else's last
    # observation: only the eight patients still in hold a slot.
    still_in = len(vitals) - 2
    wait_until(lambda: metric(worker.metrics(), "vitalwatch_resident_patients") == still_in, 15,
               "the resident-patients gauge", [worker])
    health = worker.health()
    assert health is not None and health[1]["engine"]["resident_patients"] == still_in
    print(
        f"\n{len(events)} events ({len(observations)} observations) for {len(vitals)} patients, "
        f"{scored_before_kill} scores before the first kill; {len(records)} risk-score records, {len(alerts)} alerts; "
        f"last worker skipped {metric(worker.metrics(), 'vitalwatch_events_total', outcome='duplicate'):.0f} "
        f"redelivered events; {time.monotonic() - started:.1f} s"
    )
