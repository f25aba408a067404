"""End to end on a real broker and Redis: simulated ICU stays in, one risk score per event out,
an alert for the patient who turns septic and none for the one who does not, from the shipped
model (trained on PhysioNet 2019 set A) on the simulator profile that imitates set A."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from models.datasets.simulator import interleave, simulate_patient
from tests.integration.conftest import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

#: Pinned so the outcome is a property of the shipped model, not of chance. Scored offline with
#: the shipped checkpoint, this seed's septic stay peaks at risk 0.077 (NEWS2 12) and its stable
#: one at 0.008 (NEWS2 3), under the medium threshold (0.016). Not every stable stay stays quiet:
#: the medium threshold runs at 73 % per-event specificity, the challenge's utility optimum
#: (docs/model-card.md).
SEED = 10


def test_deteriorating_patient_alerts_stable_does_not_and_every_event_is_scored_once(
    start_worker, producer, topics, read_output
) -> None:
    started = time.monotonic()
    sick = simulate_patient("icu-bed3", seed=SEED, pattern="sepsis", profile="icu")
    well = simulate_patient("icu-bed4", seed=SEED, pattern="stable", profile="icu")
    worker = start_worker()
    reader = read_output(topics["risk_scores"])
    sent: list[str] = []
    previous_topic = None
    for patient, event in interleave([sick, well]):
        if event.topic != previous_topic:
            # Vitals and labs travel on different topics, so a burst of both may reach the worker in
            # either order (a late one is scored against newer state). Letting the worker catch up at
            # each change of topic feeds it the stays in time order, as the offline scoring above saw them.
            producer.flush()
            reader.until(lambda r: len(r) >= len(sent), 30, [worker])
            previous_topic = event.topic
        produce(producer, topics[event.topic], patient.patient_id, event.payload)
        sent.append(event.payload["event_id"])
    producer.flush()
    reader.until(lambda r: len(r) >= len(sent), 60, [worker])
    time.sleep(1.0)  # a second record for any event would have arrived by now
    scores = reader.poll()
    per_event = Counter(s["event_id"] for s in scores)
    assert set(per_event) == set(sent)
    assert max(per_event.values()) == 1, [e for e, n in per_event.items() if n > 1]
    assert all(0.0 <= s["risk"] <= 1.0 and s["level"] in ("none", "medium", "high") for s in scores)

    alerts = read_output(topics["alerts"]).poll()
    alerted = {a["patient_id"] for a in alerts}
    assert sick.patient_id in alerted
    assert well.patient_id not in alerted
    raised = [a for a in alerts if a["patient_id"] == sick.patient_id and a["previous_level"] == "none"]
    assert raised and raised[0]["reasons"] and raised[0]["news2"]["components"]
    assert read_output(topics["dead_letters"]).poll() == []

    metrics = worker.metrics()
    assert f'vitalwatch_events_total{{outcome="scored",topic="{topics["vitals"]}"}}' in metrics
    assert "vitalwatch_model_info{" in metrics
    print(f"{len(sent)} events scored in {time.monotonic() - started:.1f} s")
