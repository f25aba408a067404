"""The encounters topic: encounters.v1 (admission, transfer, discharge) and FHIR R4 Encounter,
mapped onto Encounter, and every refusal with its field and reason."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from typing import Any

import orjson
import pytest

from schemas.decode import decode
from schemas.encounter import Encounter, age_at
from schemas.errors import ContractError
from schemas.fhir_encounter import DISCHARGE_DISPOSITION, DISPOSITIONS, UNIT_KIND_SYSTEM

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc).timestamp()
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
SNOMED = "http://snomed.info/sct"


def admission(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "adt-5521", "patient_id": "MRN-0048213", "kind": "admission",
        "admitted_at": "2026-03-13T22:40:00+00:00", "unit": "ward", "age": 72, "sex": "female",
        "source": "adt",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def transfer(**fields: Any) -> dict[str, Any]:
    doc = {"event_id": "adt-5522", "patient_id": "MRN-0048213", "kind": "transfer",
           "transferred_at": "2026-03-14T03:05:00+01:00", "unit": "icu"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def discharge(**fields: Any) -> dict[str, Any]:
    doc = {"event_id": "adt-5530", "patient_id": "MRN-0048213", "kind": "discharge",
           "discharged_at": "2026-03-14T11:00:00Z", "disposition": "home"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def decoded(doc: Any, **kwargs: Any) -> Encounter:
    [encounter] = decode("encounters", orjson.dumps(doc), **kwargs)
    return encounter


def errors(doc: Any, **kwargs: Any) -> list[tuple[str, str, Any]]:
    with pytest.raises(ContractError) as caught:
        decode("encounters", orjson.dumps(doc), **kwargs)
    return [(e.field, e.problem, e.value) for e in caught.value.errors]


# -- encounters.v1: every kind ------------------------------------------------------------------


def test_an_admission_carries_its_context() -> None:
    encounter = decoded(admission(schema="encounters.v1"), now=NOW)
    assert encounter == Encounter(
        "adt-5521", "MRN-0048213", "admission", datetime(2026, 3, 13, 22, 40, tzinfo=timezone.utc),
        unit="ward", age=72.0, sex="female", source="adt",
    )
    assert encounter.occurred_ts == encounter.occurred_at.timestamp()


def test_an_admission_needs_only_its_time() -> None:
    encounter = decoded(admission(unit=..., age=..., sex=..., source=...))
    assert (encounter.unit, encounter.age, encounter.sex, encounter.source) == (None, None, None, None)


def test_a_transfer_names_the_new_unit_in_utc() -> None:
    encounter = decoded(transfer(unit="step_down"))
    assert (encounter.kind, encounter.unit) == ("transfer", "step_down")
    assert encounter.occurred_at == datetime(2026, 3, 14, 2, 5, tzinfo=timezone.utc)
    assert (encounter.age, encounter.sex, encounter.disposition) == (None, None, None)


@pytest.mark.parametrize("disposition", ["home", "other_facility", "died", ...])
def test_a_discharge_and_its_disposition(disposition: Any) -> None:
    encounter = decoded(discharge(disposition=disposition))
    assert encounter.kind == "discharge"
    assert encounter.disposition == (None if disposition is ... else disposition)
    assert encounter.unit is None


@pytest.mark.parametrize("sex", ["female", "male", "other", "unknown"])
def test_every_sex(sex: str) -> None:
    assert decoded(admission(sex=sex)).sex == sex


@pytest.mark.parametrize("age", [0, 0.5, 72, 125])
def test_age_bounds_are_inclusive(age: float) -> None:
    assert decoded(admission(age=age)).age == age


def test_age_from_a_birth_date_in_fractional_years_at_admission() -> None:
    encounter = decoded(admission(age=..., birth_date="1954-03-14", admitted_at="2026-03-13T22:40:00-02:00"))
    admitted = datetime(2026, 3, 14, 0, 40, tzinfo=timezone.utc)
    assert encounter.age == age_at(date(1954, 3, 14), admitted)
    expected_days = (admitted - datetime(1954, 3, 14, tzinfo=timezone.utc)).total_seconds() / 86_400
    assert encounter.age == pytest.approx(expected_days / 365.2425, rel=1e-12)
    assert 72.0 < encounter.age < 72.01
    newborn = decoded(admission(age=..., birth_date="2026-03-13", admitted_at="2026-03-13T12:00:00Z"))
    assert newborn.age == pytest.approx(0.5 / 365.2425)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"age": 300}, ("age", "out of plausible range 0–125 years", 300)),
        ({"age": -1}, ("age", "out of plausible range 0–125 years", -1)),
        ({"age": 125.5}, ("age", "out of plausible range 0–125 years", 125.5)),
        ({"age": ..., "birth_date": "1890-01-01"},
         ("birth_date", "out of plausible range 0–125 years (an age of 136.2 years at admission)",
          "1890-01-01")),
        ({"age": ..., "birth_date": "2026-03-14"}, ("birth_date", "bad date: after admitted_at", "2026-03-14")),
        ({"age": 72, "birth_date": "1954-03-14"},
         ("birth_date", "conflicts with age: send one of age or birth_date", "1954-03-14")),
        ({"age": ..., "birth_date": "1954"}, ("birth_date", "bad date: not a calendar date YYYY-MM-DD", "1954")),
        ({"age": ..., "birth_date": "14/03/1954"},
         ("birth_date", "bad date: not a calendar date YYYY-MM-DD", "14/03/1954")),
        ({"age": ..., "birth_date": "1954-02-30"},
         ("birth_date", "bad date: day value is outside expected range", "1954-02-30")),
        ({"age": ..., "birth_date": 19540314}, ("birth_date", "bad date: not a calendar date YYYY-MM-DD", 19540314)),
        ({"age": "72"}, ("age", "must be a number", "72")),
        ({"age": True}, ("age", "must be a number", True)),
        ({"sex": "F"}, ("sex", "must be one of 'female', 'male', 'other' or 'unknown'", "F")),
        ({"unit": "ICU"}, ("unit", "must be one of 'ward', 'step_down' or 'icu'", "ICU")),
        ({"unit": 3}, ("unit", "must be one of 'ward', 'step_down' or 'icu'", 3)),
        ({"event_id": 5521}, ("event_id", "must be a string", 5521)),
        ({"patient_id": "MRN 1"}, ("patient_id", "must match ^[A-Za-z0-9._:-]{1,64}$", "MRN 1")),
        ({"schema": "encounters.v2"}, ("schema", "must be one of 'encounters.v1'", "encounters.v2")),
        ({"admitted_at": "2026-03-13T22:40:00"},
         ("admitted_at", "bad timestamp: no UTC offset (add Z or ±hh:mm)", "2026-03-13T22:40:00")),
        ({"admitted_at": 1773441600},
         ("admitted_at", "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)",
          1773441600)),
    ],
)
def test_bad_admission_fields(fields: dict[str, Any], expected: tuple[str, str, Any]) -> None:
    assert errors(admission(**fields)) == [expected]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (admission(kind=...), [("kind", "required field is missing", None)]),
        (admission(kind="discharged"),
         [("kind", "must be one of 'admission', 'transfer', 'discharge'", "discharged")]),
        (admission(kind=1), [("kind", "must be one of 'admission', 'transfer', 'discharge'", "1")]),
        (admission(admitted_at=...), [("admitted_at", "required field is missing", None)]),
        (transfer(transferred_at=...), [("transferred_at", "required field is missing", None)]),
        (transfer(unit=...), [("unit", "required field is missing", None)]),
        (transfer(unit=None), [("unit", "must be one of 'ward', 'step_down' or 'icu'", None)]),
        (discharge(discharged_at=...), [("discharged_at", "required field is missing", None)]),
        (discharge(disposition="dead"),
         [("disposition", "must be one of 'home', 'other_facility' or 'died'", "dead")]),
        (admission(event_id=...), [("event_id", "required field is missing", None)]),
        (discharge(patient_id=...), [("patient_id", "required field is missing", None)]),
    ],
)
def test_missing_and_wrong_kind_fields(doc: dict[str, Any], expected: list) -> None:
    assert errors(doc) == expected


def test_unknown_fields_with_did_you_mean_and_the_kind_they_belong_to() -> None:
    assert errors(admission(admited_at="2026-03-13T22:40:00Z", admitted_at=...)) == [
        ("admitted_at", "required field is missing", None),
        ("admited_at", "unknown field; did you mean 'admitted_at'?", "2026-03-13T22:40:00Z"),
    ]
    assert errors(admission(disposition="home")) == [
        ("disposition", "unknown field: it belongs to kind 'discharge', not 'admission'", "home")
    ]
    assert errors(discharge(age=80)) == [
        ("age", "unknown field: it belongs to kind 'admission', not 'discharge'", 80)
    ]
    assert errors(transfer(ward="4B")) == [("ward", "unknown field", "4B")]
    assert errors(transfer(units="icu")) == [("units", "unknown field; did you mean 'unit'?", "icu")]


@pytest.mark.parametrize(
    ("doc", "field"),
    [(admission(admitted_at="2026-03-14T12:05:01Z"), "admitted_at"),
     (transfer(transferred_at="2026-03-14T12:05:01Z"), "transferred_at"),
     (discharge(discharged_at="2026-03-14T12:05:01Z"), "discharged_at")],
)
def test_future_times_are_refused_only_when_now_is_given(doc: dict[str, Any], field: str) -> None:
    assert errors(doc, now=NOW) == [
        (field, "bad timestamp: 301 s in the future (tolerance 300 s)", "2026-03-14T12:05:01+00:00")
    ]
    assert decoded(doc).occurred_ts == NOW + 301


def test_times_before_2000_are_refused() -> None:
    [(field, problem, _)] = errors(discharge(discharged_at="1999-12-31T23:59:59Z"))
    assert (field, problem) == ("discharged_at", "bad timestamp: before 2000-01-01")


def test_every_problem_is_reported_at_once() -> None:
    doc = admission(patient_id="", unit="ICU", sex=1, colour="red")
    assert [(f, p) for f, p, _ in errors(doc)] == [
        ("patient_id", "must match ^[A-Za-z0-9._:-]{1,64}$"),
        ("unit", "must be one of 'ward', 'step_down' or 'icu'"),
        ("sex", "must be one of 'female', 'male', 'other' or 'unknown'"),
        ("colour", "unknown field"),
    ]


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"admission"', b"null"])
def test_the_document_must_be_an_object(raw: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        decode("encounters", raw)
    assert [(e.field, e.problem) for e in caught.value.errors] == [("$", "must be a JSON object")]


# -- FHIR R4 Encounter ------------------------------------------------------------------------


def coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def fhir(**fields: Any) -> dict[str, Any]:
    """An in-progress inpatient Encounter in a contained ICU (a ward-type place), with its Patient."""
    doc: dict[str, Any] = {
        "resourceType": "Encounter", "id": "enc-77", "status": "in-progress",
        "meta": {"versionId": "1"}, "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                              "code": "IMP"},
        "subject": {"reference": "Patient/MRN-0048213"},
        "period": {"start": "2026-03-13T22:40:00+00:00"},
        "contained": [
            {"resourceType": "Patient", "id": "MRN-0048213", "gender": "female", "birthDate": "1954-03-14"},
            {"resourceType": "Location", "id": "icu-3", "type": [coding(ROLE_CODE, "ICU")],
             "physicalType": coding(PHYSICAL_TYPE, "wa")},
        ],
        "location": [{"location": {"reference": "#icu-3"}, "status": "active",
                      "period": {"start": "2026-03-13T22:40:00+00:00"}}],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def moved(*, to: dict[str, Any], at: str = "2026-03-14T02:10:00Z", **fields: Any) -> dict[str, Any]:
    """The Encounter after a transfer: the admission ward completed, ``to`` active since ``at``."""
    ward = {"location": {"reference": "Location/ward-7"}, "status": "completed",
            "physicalType": coding(PHYSICAL_TYPE, "wa")}
    return fhir(location=[ward, {**to, "status": "active", "period": {"start": at}}], **fields)


def finished(disposition: Any = ..., **fields: Any) -> dict[str, Any]:
    hospitalization = ... if disposition is ... else {"dischargeDisposition": disposition}
    period = {"start": "2026-03-13T22:40:00Z", "end": "2026-03-14T11:00:00Z"}
    return fhir(**{"status": "finished", "period": period, "hospitalization": hospitalization, **fields})


def test_an_in_progress_encounter_is_an_admission_with_its_patient() -> None:
    encounter = decoded(fhir(), now=NOW)
    assert (encounter.kind, encounter.patient_id, encounter.unit, encounter.sex) == (
        "admission", "MRN-0048213", "icu", "female")
    assert encounter.age == age_at(date(1954, 3, 14), datetime(2026, 3, 13, 22, 40, tzinfo=timezone.utc))
    assert encounter.occurred_at == datetime(2026, 3, 13, 22, 40, tzinfo=timezone.utc)
    assert encounter.event_id == "enc-77/admission/2026-03-13T22:40:00Z"


@pytest.mark.parametrize(
    ("place", "unit"),
    [
        ({"physicalType": coding(PHYSICAL_TYPE, "wa")}, "ward"),
        ({"physicalType": coding(SNOMED, "225746001")}, "ward"),
        ({"physicalType": coding(SNOMED, "309904001")}, "icu"),
        ({"physicalType": coding(ROLE_CODE, "CCU")}, "icu"),
        ({"physicalType": coding(UNIT_KIND_SYSTEM, "step_down")}, "step_down"),
        ({"physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "wa"},
                                      {"system": ROLE_CODE, "code": "PEDICU"}]}}, "icu"),
        ({"physicalType": coding(PHYSICAL_TYPE, "ro")}, None),  # a room: the kind is not said
        ({}, None),
    ],
)
def test_the_unit_kind_of_the_current_location(place: dict[str, Any], unit: str | None) -> None:
    location = [{"location": {"reference": "Location/x"}, "status": "active", **place}]
    assert decoded(fhir(location=location)).unit == unit


def test_no_location_and_no_patient_leave_the_context_unknown() -> None:
    encounter = decoded(fhir(location=..., contained=...))
    assert (encounter.unit, encounter.age, encounter.sex) == (None, None, None)


def test_a_partial_birth_date_gives_no_age_but_the_sex_stays() -> None:
    for partial in ("1954", "1954-03"):
        patient = {"resourceType": "Patient", "id": "MRN-0048213", "gender": "male", "birthDate": partial}
        encounter = decoded(fhir(contained=[patient], location=...))
        assert (encounter.age, encounter.sex) == (None, "male")


def test_a_completed_location_makes_it_a_transfer_to_the_active_one() -> None:
    encounter = decoded(moved(to={"location": {"reference": "#icu-3"}}, at="2026-03-14T03:10:00+01:00"))
    assert (encounter.kind, encounter.unit) == ("transfer", "icu")
    assert encounter.occurred_at == datetime(2026, 3, 14, 2, 10, tzinfo=timezone.utc)
    assert encounter.event_id == "enc-77/transfer/2026-03-14T02:10:00Z"
    assert (encounter.age, encounter.sex) == (None, None)  # context belongs to the admission


@pytest.mark.parametrize("code", sorted(DISPOSITIONS))
def test_every_discharge_disposition_code(code: str) -> None:
    encounter = decoded(finished(coding(DISCHARGE_DISPOSITION, code)))
    assert (encounter.kind, encounter.disposition) == ("discharge", DISPOSITIONS[code])
    assert encounter.occurred_at == datetime(2026, 3, 14, 11, tzinfo=timezone.utc)
    assert encounter.event_id == "enc-77/discharge/2026-03-14T11:00:00Z"


def test_a_discharge_without_a_disposition_or_in_another_code_system() -> None:
    assert decoded(finished()).disposition is None
    assert decoded(finished(coding("http://example.org/dispo", "01"))).disposition is None
    two = {"coding": [{"system": "http://example.org/dispo", "code": "01"},
                      {"system": DISCHARGE_DISPOSITION, "code": "exp"}]}
    assert decoded(finished(two)).disposition == "died"


def test_ids_are_stable_across_redelivery_and_new_versions_and_distinct_per_event() -> None:
    first = decoded(fhir())
    assert decoded(fhir()).event_id == first.event_id
    assert decoded(fhir(meta={"versionId": "2"})).event_id == first.event_id  # same admission
    assert decoded(finished()).event_id != first.event_id
    anonymous = orjson.dumps(fhir(id=...))
    digest = hashlib.sha256(anonymous).hexdigest()
    [encounter] = decode("encounters", anonymous)
    assert encounter.event_id == f"sha256:{digest}/admission/2026-03-13T22:40:00Z"


@pytest.mark.parametrize(
    "status", ["planned", "arrived", "triaged", "onleave", "cancelled", "entered-in-error", "unknown"]
)
def test_statuses_that_are_no_admission_transfer_or_discharge(status: str) -> None:
    assert errors(fhir(status=status)) == [
        ("status", f"status '{status}' cannot be mapped: expected in-progress (an admission or a "
                   "transfer) or finished (a discharge)", status)
    ]


@pytest.mark.parametrize(
    ("doc", "field", "problem"),
    [
        (fhir(period=...), "period.start", "required for an in-progress Encounter (the admission time)"),
        (finished(period={"start": "2026-03-13T22:40:00Z"}), "period.end",
         "required for a finished Encounter (the discharge time)"),
        (finished(period={"start": "2026-03-13T22:40:00Z", "end": "2026-03-13T20:00:00Z"}), "period.end",
         "before period.start"),
        (finished(coding(DISCHARGE_DISPOSITION, "home-care")),
         "hospitalization.dischargeDisposition.coding[0].code",
         "unknown discharge-disposition code (expected one of home, alt-home, other-hcf, hosp, long, "
         "psy, rehab, snf, exp, aadvice, oth)"),
        (finished({"coding": [{"system": DISCHARGE_DISPOSITION, "code": "home"},
                              {"system": DISCHARGE_DISPOSITION, "code": "exp"}]}),
         "hospitalization.dischargeDisposition.coding", "codings name different dispositions"),
        (moved(to={"location": {"reference": "Location/bed-9"}, "physicalType": coding(PHYSICAL_TYPE, "bd")}),
         "location[1].physicalType",
         "no coding names a unit kind (ICU, CCU, PEDICU or PEDNICU in v3-RoleCode, SNOMED 309904001 or "
         "225746001, location-physical-type wa, or urn:vitalwatch:unit-kind)"),
        (moved(to={"location": {"reference": "Location/x"},
                   "physicalType": {"coding": [{"system": ROLE_CODE, "code": "ICU"},
                                               {"system": UNIT_KIND_SYSTEM, "code": "step_down"}]}}),
         "location[1].physicalType", "codings name different unit kinds (icu, step_down)"),
        (fhir(location=[{"location": {"reference": "Location/ward-7"}, "status": "completed"}]),
         "location", "a completed location but no active one: where the patient went is not stated"),
        (fhir(location=[{"location": {"reference": "Location/a"}, "status": "active"},
                        {"location": {"reference": "Location/b"}, "status": "active"}]),
         "location", "2 active locations: the patient is in one"),
        (fhir(location=[{"location": {"reference": "Location/ward-7"}, "status": "completed"},
                        {"location": {"reference": "#icu-3"}, "status": "active"}]),
         "location[1].period.start", "required for a transfer (when the patient arrived)"),
        (fhir(location=[{"location": {"reference": "#nowhere"}, "status": "active"}]),
         "location[0].location.reference", "names no contained Location"),
        (fhir(contained=[{"resourceType": "Patient", "id": "MRN-9", "gender": "male"}]),
         "contained[0].id", "a contained Patient that is not the subject (MRN-0048213): its age and "
         "sex would be another person's"),
        (fhir(contained=[{"resourceType": "Patient", "id": "MRN-0048213", "birthDate": "2027-01-01"}]),
         "contained[0].birthDate", "bad date: after period.start (the admission)"),
        (fhir(contained=[{"resourceType": "Patient", "id": "MRN-0048213", "birthDate": "1890-01-01"}]),
         "contained[0].birthDate", "out of plausible range 0–125 years (an age of 136.2 years at admission)"),
        (fhir(contained=[{"resourceType": "Patient", "id": "MRN-0048213", "birthDate": "14.03.1954"}]),
         "contained[0].birthDate", "bad date: not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"),
        (fhir(contained=[{"resourceType": "Patient", "id": "MRN-0048213", "gender": "F"}]),
         "contained[0].gender", "must be one of 'female', 'male', 'other' or 'unknown'"),
        (fhir(subject={"reference": "Group/ward-7"}), "subject.reference",
         "must be 'Patient/<id>' with an id of 1–64 characters [A-Za-z0-9._:-]"),
        (fhir(subject=...), "subject", "required field is missing"),
        (fhir(status=...), "status", "required field is missing"),
        (fhir(period={"start": "2026-03-13"}), "period.start",
         "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
        (fhir(resourceType="Observation"), "resourceType",
         "must be 'Encounter' (or send encounters.v1, without resourceType)"),
        (fhir(id="e" * 65), "id", "must be at most 64 characters"),
    ],
)
def test_fhir_encounters_refused_with_their_reason(doc: dict[str, Any], field: str, problem: str) -> None:
    assert (field, problem) in [(f, p) for f, p, _ in errors(doc)]


def test_a_future_fhir_admission_is_refused() -> None:
    doc = fhir(period={"start": "2026-03-14T13:00:00Z"}, location=...)
    assert errors(doc, now=NOW) == [
        ("period.start", "bad timestamp: 3600 s in the future (tolerance 300 s)", "2026-03-14T13:00:00+00:00")
    ]


def test_the_kinds_of_decode_keep_their_shapes() -> None:
    raw = orjson.dumps({"event_id": "e", "patient_id": "p", "observed_at": "2026-03-13T22:40:00Z", "fio2": 0.3})
    [observation] = decode("vitals", raw)
    assert observation.values == {"fio2": 0.3, "on_oxygen": 1.0}
    assert isinstance(decoded(admission()), Encounter)


@pytest.mark.parametrize("resource_type", [["Patient"], {"a": 1}, 7, None])
def test_a_contained_resource_of_no_readable_type_is_ignored(resource_type: Any) -> None:
    """Found by the property test: a list as a contained resourceType crashed the lookup."""
    doc = fhir(contained=[{"resourceType": resource_type, "id": "x"}], location=...)
    assert decoded(doc).kind == "admission"
