"""interleave: the feed order every consumer of the simulator (CLI, tests, bench) relies on."""

from __future__ import annotations

from models.datasets.simulator import interleave, simulate_patient


def test_each_event_travels_with_its_own_patient_in_time_order() -> None:
    stable = simulate_patient("bed-a", seed=3, pattern="stable")
    septic = simulate_patient("bed-b", seed=3, pattern="sepsis")
    merged = list(interleave([stable, septic]))
    assert len(merged) == len(stable.events) + len(septic.events)
    assert all(event.payload["patient_id"] == patient.patient_id for patient, event in merged)
    times = [event.observed_ts for _, event in merged]
    assert times == sorted(times)


def test_ties_in_time_are_ordered_by_patient_then_event_without_comparing_patients() -> None:
    patient = simulate_patient("bed-c", seed=4, pattern="stable")
    merged = list(interleave([patient, patient]))
    assert len(merged) == 2 * len(patient.events)
    first = [event for _, event in merged if event.observed_ts == patient.events[0].observed_ts]
    assert first[0] is patient.events[0]
