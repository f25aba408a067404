"""Logs leave the clinical boundary, so a real worker's log must carry no observation value,
no free text from a payload and no raw patient id at INFO and above — and /metrics no patient
id at all.

Values that cannot appear by chance are planted in good and bad messages: a heart rate of
173.37, a temperature of 38.91, an age of 87.63, a source string, a lab code, a unit, a unit
kind and an unknown field name that are all unique to this test, and patient ids that are
unique strings. The patient is admitted, and dies: its discharge is counted by disposition,
never by patient. A deteriorating
patient is included so that alert lines (which name the patient) are logged too: they must
carry the keyed pseudonym instead.
"""

from __future__ import annotations

import time

import orjson
import pytest

from models.datasets.simulator import simulate_patient
from tests.integration.conftest import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PATIENT = "PLANTEDPATIENT-77"
AT = "2026-01-05T08:00:00Z"
PLANTED_VALUES = ("173.37", "38.91", "91.27", "87.63")
PLANTED_TEXT = (
    "PLANTED-TEXT-x9", "PLANTEDCODE-z7", "PLANTEDUNIT-k3", "PLANTEDFIELD-w5", "PLANTED-BAD-q1", "PLANTED-ADT-m4",
    "PLANTEDKIND-u8",
)


def test_worker_logs_and_metrics_hold_no_values_free_text_or_patient_ids(
    start_worker, producer, topics, read_output
) -> None:
    sick = simulate_patient("PLANTEDSICK-88", seed=7, pattern="sepsis")
    worker = start_worker(VITALWATCH_LOG_LEVEL="INFO", VITALWATCH_PSEUDONYM_KEY="test-key")
    worker.wait_ready()
    produce(producer, topics["encounters"], PATIENT, {
        "event_id": "priv-adt-1", "patient_id": PATIENT, "kind": "admission", "admitted_at": AT, "unit": "ward",
        "age": 87.63, "sex": "female", "source": "PLANTED-ADT-m4",
    })
    produce(producer, topics["vitals"], PATIENT, {
        "event_id": "priv-1", "patient_id": PATIENT, "observed_at": AT, "heart_rate": 173.37,
        "temperature": 38.91, "spo2": 91.27, "source": "PLANTED-TEXT-x9",
    })
    bad = [
        ("labs", {"event_id": "priv-2", "patient_id": PATIENT, "observed_at": AT,
                  "results": [{"code": "PLANTEDCODE-z7", "value": 173.37, "unit": "mmol/L"}]}),
        ("labs", {"event_id": "priv-3", "patient_id": PATIENT, "observed_at": AT,
                  "results": [{"code": "lactate", "value": 38.91, "unit": "PLANTEDUNIT-k3"}]}),
        ("labs", {"event_id": "priv-4", "patient_id": PATIENT, "observed_at": AT,
                  "results": [{"code": "lactate", "value": 2.0, "unit": "mmol/L"}, {"code": "lactate", "value": 91.27, "unit": "mg/dL"}]}),
        ("vitals", {"event_id": "priv-5", "patient_id": PATIENT, "observed_at": AT, "heart_rate": 80, "PLANTEDFIELD-w5": 1}),
        ("vitals", {"event_id": "priv-6", "patient_id": PATIENT, "observed_at": AT, "heart_rate": 173.37, "source": 5,
                    "note": "PLANTED-BAD-q1"}),
        ("encounters", {"event_id": "priv-7", "patient_id": PATIENT, "kind": "transfer", "transferred_at": AT,
                        "unit": "PLANTEDKIND-u8"}),
    ]
    for topic, payload in bad:
        produce(producer, topics[topic], PATIENT, payload)
    sick_events = [event for event in sick.events if event.topic == "vitals"]
    for event in sick_events:
        produce(producer, topics["vitals"], sick.patient_id, event.payload)
    produce(producer, topics["encounters"], PATIENT, {
        "event_id": "priv-adt-2", "patient_id": PATIENT, "kind": "discharge", "discharged_at": AT, "disposition": "died",
    })
    producer.flush()

    read_output(topics["dead_letters"]).until(lambda r: len(r) >= len(bad), 60, [worker])
    read_output(topics["risk_scores"]).until(lambda r: len(r) >= 1 + len(sick_events), 60, [worker])
    alerts = read_output(topics["alerts"]).until(lambda r: len(r) >= 1, 30, [worker])
    deadline = time.monotonic() + 30
    while 'vitalwatch_discharges_total{disposition="died"} 1.0' not in (metrics := worker.metrics()):
        assert time.monotonic() < deadline, "the death was not counted"
        time.sleep(0.2)
    assert worker.stop() == 0

    lines = [orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("level") in ("INFO", "WARNING", "ERROR", "CRITICAL")]
    assert any(line.get("msg") == "dead-lettered" for line in logged), "the dead letters were logged"
    alert_lines = [line for line in logged if line.get("msg") == "alert"]
    assert len(alert_lines) >= len(alerts) >= 1
    assert all(str(line["patient"]).startswith("p-") for line in alert_lines), alert_lines[:2]
    text = "\n".join(orjson.dumps(line).decode() for line in logged)
    for planted in (PATIENT, sick.patient_id, *PLANTED_TEXT, *PLANTED_VALUES):
        leaks = [line for line in text.splitlines() if planted in line]
        assert not leaks, f"{planted!r} logged at INFO+: {leaks[:2]}"
    for planted in (PATIENT, sick.patient_id, "PLANTED"):
        assert planted not in metrics, f"{planted!r} in /metrics"
