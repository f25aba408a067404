"""Property: whatever arrives, decode returns valid Observations (or Encounters) or raises
ContractError.

The worker dead-letters a ContractError and keeps going; any other exception would stop a
partition. Generated inputs range from random bytes to valid messages with one field
replaced by arbitrary JSON, so every layer (parser, shape, units, ranges, FHIR mapping) is hit.
"""

from __future__ import annotations

from datetime import timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import KINDS, decode
from schemas.encounter import AGE_HIGH, AGE_LOW, Encounter
from schemas.errors import ContractError
from schemas.variables import BY_NAME

SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["A", "U", "%", "mmol/L", "umol/L", "[degF]", "2024-05-01T10:00:00Z",
                       "Patient/p1", "8867-4", "85354-9", "http://loinc.org", "Observation",
                       "admission", "transfer", "discharge", "icu", "died", "1954-03-14",
                       "in-progress", "finished", "Encounter", "active", "completed"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20,
)

CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs"}]}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "category": [CATEGORY],
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-05-01T10:00:00+02:00",
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 16, "system": "http://unitsofmeasure.org", "code": "kPa"}},
    ],
}
VALID: dict[str, dict[str, Any]] = {
    "vitals": {"event_id": "e1", "patient_id": "p1", "observed_at": "2024-05-01T10:00:00Z",
               "heart_rate": 80, "consciousness": "A", "on_oxygen": False, "spo2": 97},
    "labs": {"event_id": "e1", "patient_id": "p1", "observed_at": "2024-05-01T10:00:00Z",
             "results": [{"code": "creatinine", "value": 88, "unit": "umol/L"}]},
    "fhir": {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": OBSERVATION}, {"resource": {**OBSERVATION, "id": "o2"}}]},
    "encounters": {"event_id": "a1", "patient_id": "p1", "kind": "admission",
                   "admitted_at": "2024-05-01T10:00:00Z", "unit": "icu", "birth_date": "1950-01-31",
                   "sex": "female"},
}
#: The encounters topic also takes FHIR Encounters: a transfer into a contained ICU Location.
FHIR_ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter", "id": "e1", "status": "in-progress",
    "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-05-01T08:00:00Z"},
    "contained": [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-31"},
                  {"resourceType": "Location", "id": "icu",
                   "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                         "code": "ICU"}]}]}],
    "location": [{"location": {"reference": "Location/ward-4"}, "status": "completed"},
                 {"location": {"reference": "#icu"}, "status": "active",
                  "period": {"start": "2024-05-01T10:00:00Z"}}],
}
DOCUMENTS: list[tuple[str, dict[str, Any]]] = [*VALID.items(), ("encounters", FHIR_ENCOUNTER)]


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location inside a JSON document, containers included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*prefix, i))
    return found


def replaced(document: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = orjson.loads(orjson.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


def check(kind: str, raw: bytes) -> None:
    try:
        observations = decode(kind, raw, now=1.8e9)  # type: ignore[arg-type]
    except ContractError as exc:
        assert exc.errors
        orjson.dumps(exc.to_list())
        return
    assert observations
    for obs in observations:
        if isinstance(obs, Encounter):
            assert obs.occurred_at.tzinfo is timezone.utc
            assert obs.age is None or AGE_LOW <= obs.age <= AGE_HIGH
            continue
        assert obs.observed_at.tzinfo is timezone.utc
        assert obs.values
        for name, value in obs.values.items():
            assert BY_NAME[name].low <= value <= BY_NAME[name].high


@SETTINGS
@given(kind=st.sampled_from(KINDS), raw=st.binary(max_size=400))
def test_arbitrary_bytes(kind: str, raw: bytes) -> None:
    check(kind, raw)


@SETTINGS
@given(kind=st.sampled_from(KINDS), document=json_values)
def test_arbitrary_json(kind: str, document: Any) -> None:
    check(kind, orjson.dumps(document))


@SETTINGS
@given(seed=st.sampled_from(DOCUMENTS), data=st.data(), new=json_values)
def test_valid_message_with_one_location_replaced(
    seed: tuple[str, dict[str, Any]], data: st.DataObject, new: Any
) -> None:
    kind, document = seed
    path = data.draw(st.sampled_from(paths(document)))
    check(kind, orjson.dumps(replaced(document, path, new)))


@SETTINGS
@given(
    seed=st.sampled_from(DOCUMENTS),
    extra=st.dictionaries(st.sampled_from(["heart_rate", "results", "entry", "component",
                                           "valueQuantity", "schema", "source", "hr", "id", "kind",
                                           "age", "birth_date", "disposition", "status",
                                           "location", "contained", "resourceType"]),
                          json_values, max_size=3),
)
def test_valid_message_with_fields_added(seed: tuple[str, dict[str, Any]], extra: dict[str, Any]) -> None:
    kind, document = seed
    check(kind, orjson.dumps({**document, **extra}))


def test_the_valid_seeds_decode() -> None:
    for kind, document in DOCUMENTS:
        assert decode(kind, orjson.dumps(document))  # type: ignore[arg-type]
