"""Bad input goes to dead-letters with a precise reason, and never takes good events with it."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from tests.integration.conftest import produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

AT = "2026-01-05T08:00:00Z"


def vitals(event_id: str, patient: str = "bed1", **values: Any) -> dict[str, Any]:
    return {"event_id": event_id, "patient_id": patient, "observed_at": AT, **(values or {"heart_rate": 82})}


def labs(event_id: str, code: str, value: float, unit: str, patient: str = "bed1") -> dict[str, Any]:
    return {"event_id": event_id, "patient_id": patient, "observed_at": AT, "results": [{"code": code, "value": value, "unit": unit}]}


def fhir_heart_rate(resource_id: str, patient: str = "bed1") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": resource_id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": AT,
        "valueQuantity": {"value": 91, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


OVERSIZE = orjson.dumps(vitals("big", note="x" * 1_200_000))

#: name -> (input kind, payload, field the reason must name, words its problem must contain)
BAD: dict[str, tuple[str, bytes, str, str]] = {
    "bad JSON": ("vitals", b'{"event_id": "j1", "patient_id": "bed1",', "$", "malformed JSON"),
    "impossible HR": ("vitals", orjson.dumps(vitals("hr1", heart_rate=900)), "heart_rate", "plausible range"),
    "unknown lab code": ("labs", orjson.dumps(labs("lab1", "unobtanium", 1.0, "mmol/L")), "results[0].code", "unknown lab code"),
    "unconvertible unit": ("labs", orjson.dumps(labs("lab2", "creatinine", 80, "kg")), "results[0].unit", "cannot be converted"),
    "missing patient_id": ("vitals", orjson.dumps({"event_id": "m1", "observed_at": AT, "heart_rate": 80}), "patient_id", "missing"),
    "naive timestamp": ("vitals", orjson.dumps(vitals("t1") | {"observed_at": "2026-01-05T08:00:00"}), "observed_at", "offset"),
    "oversize payload": ("vitals", OVERSIZE, "$", "over the limit"),
    "FHIR Patient resource": ("fhir", orjson.dumps({"resourceType": "Patient", "id": "bed1"}), "resourceType", "Observation"),
}


def test_each_bad_message_is_dead_lettered_with_its_reason_while_neighbours_are_scored(
    start_worker, producer, topics, read_output
) -> None:
    worker = start_worker()
    good: list[str] = []
    for i, (name, (kind, payload, _, _)) in enumerate(BAD.items()):
        produce(producer, topics["vitals"], "bed1", vitals(f"before-{i}", heart_rate=80 + i))
        produce(producer, topics[kind], "bed1", payload)
        produce(producer, topics["labs"], "bed1", labs(f"lab-after-{i}", "lactate", 1.0 + i / 10, "mmol/L"))
        produce(producer, topics["fhir"], "bed1", fhir_heart_rate(f"fhir-after-{i}"))
        good += [f"before-{i}", f"lab-after-{i}", f"fhir-after-{i}"]
    producer.flush()

    letters = read_output(topics["dead_letters"]).until(lambda r: len(r) >= len(BAD), 60, [worker])
    scores = read_output(topics["risk_scores"]).until(lambda r: len(r) >= len(good), 30, [worker])
    assert sorted(s["event_id"] for s in scores) == sorted(good)
    assert len(letters) == len(BAD)

    by_digest = {letter["original_sha256"]: letter for letter in letters}
    for name, (kind, payload, field, words) in BAD.items():
        letter = by_digest.get(hashlib.sha256(payload).hexdigest())
        assert letter is not None, f"{name}: not dead-lettered"
        assert letter["source"]["topic"] == topics[kind] and letter["source"]["key"] == "bed1", name
        assert isinstance(letter["source"]["offset"], int) and isinstance(letter["source"]["partition"], int)
        assert letter["reason"]["stage"] == "decode", name
        problems = {e["field"]: e["problem"] for e in letter["reason"]["errors"]}
        assert field in problems and words in problems[field], f"{name}: {problems}"
        assert letter["original_size"] == len(payload)

    big = by_digest[hashlib.sha256(OVERSIZE).hexdigest()]
    assert big["truncated"] is True and len(big["original"].encode()) == 64 * 1024
    small = by_digest[hashlib.sha256(BAD["bad JSON"][1]).hexdigest()]
    assert small["truncated"] is False and small["original"].encode() == BAD["bad JSON"][1]

    metrics = worker.metrics()
    assert f'vitalwatch_events_total{{outcome="invalid",topic="{topics["vitals"]}"}} 5.0' in metrics
