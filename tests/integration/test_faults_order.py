"""Duplicates and out-of-order events through a real worker.

* A redelivered record (same topic, partition, offset — a crash or rebalance replays it) is
  skipped by the patient's watermark: the crash and rebalance tests prove that at scale.
* A producer-side duplicate (an interface engine resending a message after a lost
  acknowledgement: same event_id and bytes, a new offset) is applied once too: event_id is
  the contract's idempotence key, and the patient's record keeps its last 32 applied ids.
* A late event (observed before the patient's latest step) follows the documented rule in
  worker/scoring/engine.py: it is scored against the current state, applied in arrival order with its
  time clamped to the previous step's, so time never goes back; it is not dead-lettered.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from models.datasets.simulator import SimEvent
from tests.integration.fault_harness import (
    all_scored,
    metric,
    produce_now,
    reference_run,
    stored_states,
    wait_for_states,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def vitals_at(event_id: str, at: datetime, heart_rate: float, patient: str = "order-bed-1") -> SimEvent:
    payload = {
        "event_id": event_id, "patient_id": patient, "observed_at": at.isoformat().replace("+00:00", "Z"),
        "heart_rate": heart_rate, "resp_rate": 18, "spo2": 95, "sbp": 112, "temperature": 37.4,
    }
    return SimEvent("vitals", payload, at.timestamp())


def run_through_worker(sent: list[SimEvent], unique_events: list[SimEvent], start_worker, producer, topics,
                       read_output, redis_url: str, unique: str) -> tuple[dict[str, list[dict[str, Any]]], Any, Any]:
    """Send ``sent`` through a worker; return its records per event_id, the reference run of
    ``unique_events`` (the same events without resent copies) and the worker."""
    worker = start_worker()
    worker.wait_ready()
    coordinates = produce_now(producer, topics, sent)
    records = read_output(topics["risk_scores"]).until(all_scored(coordinates), 60, [worker])
    assert read_output(topics["dead_letters"]).poll() == [], "neither a resent nor a late event is bad input"
    expected = reference_run(unique_events, coordinates, redis_url, f"ref-{unique}:state:")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_id.setdefault(record["event_id"], []).append(record)
    return by_id, expected, worker


def test_a_late_event_is_scored_against_current_state_and_never_rewinds_time(
    start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    steps = [vitals_at(f"late-{i}", t0 + timedelta(minutes=10 * i), 80 + 10 * i) for i in range(3)]
    late = vitals_at("late-x", t0 + timedelta(minutes=5), 128)
    probe = vitals_at("late-probe", t0 + timedelta(minutes=30), 96)
    events = [*steps, late, probe]
    by_id, expected, _ = run_through_worker(events, events, start_worker, producer, topics, read_output, redis_url, unique)

    record = by_id["late-x"][0]
    assert record["observed_at"] == late.payload["observed_at"].replace("Z", "+00:00"), "reported at its own time"
    for event in events:
        assert abs(by_id[event.payload["event_id"]][0]["risk"] - expected.risks[event.payload["event_id"]]) < 1e-5
    problems = wait_for_states(redis_url, f"test-{unique}:state:", expected)
    assert not problems, problems
    state = stored_states(redis_url, f"test-{unique}:state:", ["order-bed-1"])["order-bed-1"]
    assert state.prev_time == probe.observed_ts, "time never went back: the late event did not rewind the patient"


def test_a_resent_event_id_is_applied_once(start_worker, producer, topics, read_output, redis_url, unique) -> None:
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    first, second, third = (vitals_at(f"dup-{i}", t0 + timedelta(minutes=10 * i), 80 + 10 * i) for i in range(3))
    probe = vitals_at("dup-probe", t0 + timedelta(minutes=30), 96)
    sent = [first, second, third, second, probe]  # ``second`` resent after ``third``, as after a lost ack
    by_id, expected, worker = run_through_worker(
        sent, [first, second, third, probe], start_worker, producer, topics, read_output, redis_url, unique
    )
    assert len(by_id["dup-1"]) == 1, "a resent event is not scored again"
    assert abs(by_id["dup-probe"][0]["risk"] - expected.risks["dup-probe"]) < 1e-5, (
        "the next event scores as if the copy had never arrived"
    )
    problems = wait_for_states(redis_url, f"test-{unique}:state:", expected)
    assert not problems, problems
    assert metric(worker.metrics(), "vitalwatch_events_total", outcome="duplicate") >= 1, "the copy is counted as a duplicate"
