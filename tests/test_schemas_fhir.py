"""FHIR R4 Observation / Bundle input: mapping, grouping, ids, and every refusal."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from schemas.decode import decode
from schemas.errors import ContractError
from schemas.units import CODE_UNITS, convert
from schemas.variables import VARIABLES, Variable

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def concept(*codes: str, system: str = LOINC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": c} for c in codes]}


def quantity(value: Any, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def observation(loinc: str = "8867-4", value: Any = 80, unit: str = "/min", **fields: Any) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": [concept("vital-signs", system=CATEGORY)],
        "code": concept(loinc),
        "subject": {"reference": "Patient/P000123"},
        "effectiveDateTime": "2024-05-01T10:00:00+02:00",
        "valueQuantity": quantity(value, unit),
        # Elements outside the modelled subset are ignored, as FHIR servers send many.
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "performer": [{"reference": "Practitioner/1"}],
    }
    resource.update(fields)
    return {k: v for k, v in resource.items() if v is not ...}


def blood_pressure(sbp: Any = 120, dbp: Any = 80, unit: str = "mm[Hg]", **fields: Any) -> dict:
    return observation(
        "85354-9",
        valueQuantity=...,
        component=[
            {"code": concept("8480-6"), "valueQuantity": quantity(sbp, unit)},
            {"code": concept("8462-4"), "valueQuantity": quantity(dbp, unit)},
        ],
        **fields,
    )


def bundle(*resources: dict, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": "bundle-9",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def errors(doc: Any, **kwargs: Any) -> list[tuple[str, str, Any]]:
    with pytest.raises(ContractError) as caught:
        decode("fhir", orjson.dumps(doc), **kwargs)
    return [(e.field, e.problem, e.value) for e in caught.value.errors]


def test_single_observation() -> None:
    [obs] = decode("fhir", orjson.dumps(observation()))
    assert obs.event_id == "obs-1"
    assert obs.patient_id == "P000123"
    assert obs.observed_at == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
    assert obs.values == {"heart_rate": 80.0}


LOINC_CODES = [(v, code) for v in VARIABLES for code in v.loinc]


@pytest.mark.parametrize(("variable", "code"), LOINC_CODES, ids=[c for _, c in LOINC_CODES])
def test_every_catalogue_loinc_code(variable: Variable, code: str) -> None:
    """Each code, in its variable's category, reaches its variable (a code that takes only some
    units, urea, in the first of them); a FiO2 also sets on_oxygen."""
    category = "vital-signs" if variable.kind == "vital" else "laboratory"
    unit = CODE_UNITS[code][0][0] if code in CODE_UNITS else variable.unit
    doc = observation(
        code,
        variable.normal / convert(variable, 1.0, unit),
        unit,
        category=[concept(category, system=CATEGORY)],
    )
    [obs] = decode("fhir", orjson.dumps(doc))
    derived = {"on_oxygen": 0.0} if variable.name == "fio2" else {}  # its normal is room air
    assert obs.values == pytest.approx({variable.name: variable.normal, **derived}, rel=1e-12)


def test_every_catalogue_loinc_code_has_a_valid_check_digit() -> None:
    """LOINC's mod-10 check digit: a mistyped code (48664-8 for fibrinogen's 48664-7) fails it."""
    def valid(code: str) -> bool:
        digits = [int(d) for d in reversed(code.replace("-", ""))]
        doubled = [d * 2 - 9 * (d > 4) if i % 2 else d for i, d in enumerate(digits)]
        return sum(doubled) % 10 == 0

    assert valid("48664-7") and not valid("48664-8")
    assert [code for _, code in LOINC_CODES if not valid(code)] == []


def test_units_are_converted() -> None:
    doc = observation("8310-5", 100.4, "[degF]")
    [obs] = decode("fhir", orjson.dumps(doc))
    assert obs.values["temperature"] == pytest.approx(38.0)


def test_non_loinc_codings_are_ignored_and_the_loinc_one_used() -> None:
    code = {
        "coding": [
            {"system": "http://snomed.info/sct", "code": "364075005"},
            {"system": LOINC, "code": "8867-4"},
        ]
    }
    [obs] = decode("fhir", orjson.dumps(observation(code=code)))
    assert obs.values == {"heart_rate": 80.0}


def test_two_loinc_codes_for_one_variable_are_fine() -> None:
    [obs] = decode("fhir", orjson.dumps(observation("2708-6", 97, "%", code=concept("2708-6", "59408-5"))))
    assert obs.values == {"spo2": 97.0}


def test_blood_pressure_panel_components() -> None:
    [obs] = decode("fhir", orjson.dumps(blood_pressure(16, 10, "kPa")))
    assert obs.values == pytest.approx({"sbp": 120.0099, "dbp": 75.0062}, rel=1e-5)


@pytest.mark.parametrize(
    "subject", ["Patient/P000123", "https://fhir.example.org/r4/Patient/P000123",
                "Patient/P000123/_history/3"]
)
def test_subject_reference_forms(subject: str) -> None:
    [obs] = decode("fhir", orjson.dumps(observation(subject={"reference": subject})))
    assert obs.patient_id == "P000123"


def test_bundle_groups_by_patient_and_instant() -> None:
    doc = bundle(
        observation("8867-4", 88, id="hr-1"),
        observation("9279-1", 22, id="rr-1"),
        blood_pressure(id="bp-1"),
        observation("8867-4", 70, id="hr-other", subject={"reference": "Patient/P2"}),
        observation("2524-7", 4.2, "mmol/L", id="lac-1",
                    effectiveDateTime="2024-05-01T07:30:00Z"),
    )
    result = decode("fhir", orjson.dumps(doc))
    assert [(o.event_id, o.patient_id, o.observed_at.isoformat(), o.values) for o in result] == [
        ("hr-1", "P000123", "2024-05-01T08:00:00+00:00",
         {"heart_rate": 88.0, "resp_rate": 22.0, "sbp": 120.0, "dbp": 80.0}),
        ("hr-other", "P2", "2024-05-01T08:00:00+00:00", {"heart_rate": 70.0}),
        ("lac-1", "P000123", "2024-05-01T07:30:00+00:00", {"lactate": 4.2}),
    ]


def test_one_instant_in_two_offsets_is_one_group() -> None:
    doc = bundle(observation(id="a"), observation("9279-1", 18, effectiveDateTime="2024-05-01T08:00:00Z"))
    [obs] = decode("fhir", orjson.dumps(doc))
    assert obs.values == {"heart_rate": 80.0, "resp_rate": 18.0}


def test_ids_without_resource_id_are_deterministic() -> None:
    doc = bundle(observation(id=...), observation("9279-1", 18, id=..., subject={"reference": "Patient/P2"}))
    raw = orjson.dumps(doc)
    first = [o.event_id for o in decode("fhir", raw)]
    assert first == ["bundle-9#0", "bundle-9#1"]
    assert [o.event_id for o in decode("fhir", raw)] == first

    anonymous = orjson.dumps(bundle(observation(id=...), id=...))
    digest = hashlib.sha256(anonymous).hexdigest()
    assert [o.event_id for o in decode("fhir", anonymous)] == [f"sha256:{digest}#0"]

    single = orjson.dumps(observation(id=...))
    assert [o.event_id for o in decode("fhir", single)] == [
        f"sha256:{hashlib.sha256(single).hexdigest()}"
    ]


@pytest.mark.parametrize("kind", ["collection", "transaction", "batch"])
def test_bundle_types(kind: str) -> None:
    assert len(decode("fhir", orjson.dumps(bundle(observation(), type=kind)))) == 1


def test_message_bundle_starts_with_a_message_header() -> None:
    doc = bundle({"resourceType": "MessageHeader", "id": "mh"}, observation(), type="message")
    [obs] = decode("fhir", orjson.dumps(doc))
    assert obs.event_id == "obs-1"


def test_missing_status_is_accepted() -> None:
    assert decode("fhir", orjson.dumps(observation(status=...)))[0].values == {"heart_rate": 80.0}


# --- refusals ------------------------------------------------------------------------------


def test_wrong_resource_type() -> None:
    assert errors({"resourceType": "Patient", "id": "P1"}) == [
        ("resourceType", "must be one of 'Observation', 'Bundle'", "Patient")
    ]
    assert errors({"id": "x"}) == [("resourceType", "required field is missing", None)]


def test_wrong_resource_type_inside_a_bundle() -> None:
    doc = bundle(observation(), {"resourceType": "Patient", "id": "P1"})
    assert errors(doc) == [
        ("entry[1].resource.resourceType", "must be one of 'Observation', 'MessageHeader'", "Patient")
    ]


def test_message_header_elsewhere() -> None:
    doc = bundle(observation(), {"resourceType": "MessageHeader"}, type="message")
    assert errors(doc) == [
        (
            "entry[1].resource.resourceType",
            "MessageHeader is only allowed as the first entry of a message Bundle",
            "MessageHeader",
        )
    ]
    assert errors(bundle({"resourceType": "MessageHeader"}, type="message")) == [
        ("entry", "contains no Observation", None)
    ]


def test_missing_subject() -> None:
    assert errors(observation(subject=...)) == [("subject", "required field is missing", None)]


@pytest.mark.parametrize("reference", ["Group/7", "Patient/", "P000123", "Patient/a b"])
def test_subject_is_not_a_patient(reference: str) -> None:
    assert errors(observation(subject={"reference": reference})) == [
        (
            "subject.reference",
            "must be 'Patient/<id>' with an id of 1–64 characters [A-Za-z0-9._:-]",
            reference,
        )
    ]


def test_impossible_value_in_a_bundle_entry() -> None:
    doc = bundle(observation(), observation("59408-5", 140, "%"))
    assert errors(doc) == [
        ("entry[1].resource.valueQuantity.value", "out of plausible range 40–100 %", 140)
    ]


def test_unknown_loinc_code() -> None:
    assert errors(observation("8302-2", 180, "cm")) == [
        ("code.coding[0].code", "LOINC code '8302-2' is not a variable vitalwatch uses", "8302-2")
    ]


def test_no_loinc_coding() -> None:
    code = concept("364075005", system="http://snomed.info/sct")
    assert errors(observation(code=code)) == [
        ("code.coding", "no LOINC coding (system http://loinc.org)", ["364075005"])
    ]


def test_codings_that_disagree() -> None:
    assert errors(observation(code=concept("8867-4", "9279-1"))) == [
        ("code.coding", "LOINC codings name different variables (heart_rate, resp_rate)",
         ["8867-4", "9279-1"])
    ]


def test_unconvertible_unit() -> None:
    assert errors(observation(valueQuantity=quantity(80, "Hz"))) == [
        (
            "valueQuantity.code",
            "unit 'Hz' cannot be converted to /min for heart_rate "
            "(accepted: /min, 1/min, {beats}/min, {beat}/min)",
            "Hz",
        )
    ]


def test_quantity_must_be_ucum() -> None:
    value = {"value": 80, "unit": "bpm", "system": "http://example.org/units", "code": "bpm"}
    assert errors(observation(valueQuantity=value)) == [
        ("valueQuantity.system", "must be one of 'http://unitsofmeasure.org'",
         "http://example.org/units")
    ]


def test_missing_value() -> None:
    assert errors(observation(valueQuantity=...)) == [
        ("valueQuantity", "required field is missing", None)
    ]


def test_boolean_is_not_a_quantity_value() -> None:
    assert errors(observation(valueQuantity=quantity(True, "/min"))) == [
        ("valueQuantity.value", "must be a number", True)
    ]


def test_panel_without_components() -> None:
    assert errors(observation("85354-9", valueQuantity=...)) == [
        ("component", "required for a panel", None)
    ]


def test_unknown_component_code() -> None:
    doc = blood_pressure()
    doc["component"][1]["code"] = concept("8478-1")
    assert errors(doc) == [
        ("component[1].code.coding[0].code",
         "LOINC code '8478-1' is not a variable vitalwatch uses", "8478-1")
    ]


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered", "unknown"])
def test_unusable_status(status: str) -> None:
    assert errors(observation(status=status)) == [
        ("status", "must be one of 'preliminary', 'final', 'amended' or 'corrected'", status)
    ]


def test_category_must_be_vital_signs_or_laboratory() -> None:
    problem = (
        "must include a coding http://terminology.hl7.org/CodeSystem/observation-category "
        "with code vital-signs or laboratory"
    )
    survey = [concept("survey", system=CATEGORY)]
    assert [(f, p) for f, p, _ in errors(observation(category=survey))] == [("category", problem)]
    assert errors(observation(category=...)) == [("category", "required field is missing", None)]


def test_naive_and_partial_effective_times() -> None:
    assert [(f, p) for f, p, _ in errors(observation(effectiveDateTime="2024-05-01T10:00:00"))] == [
        ("effectiveDateTime", "bad timestamp: no UTC offset (add Z or ±hh:mm)")
    ]
    assert [(f, p) for f, p, _ in errors(observation(effectiveDateTime="2024-05"))] == [
        ("effectiveDateTime",
         "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)")
    ]


def test_future_time_in_a_bundle_entry() -> None:
    now = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc).timestamp()
    doc = bundle(observation(effectiveDateTime="2024-05-01T07:00:00Z"), observation())
    assert errors(doc, now=now) == [
        ("entry[1].resource.effectiveDateTime",
         "bad timestamp: 3600 s in the future (tolerance 300 s)", "2024-05-01T08:00:00+00:00")
    ]


def test_conflicting_values_at_one_instant() -> None:
    doc = bundle(observation("59408-5", 97, "%"), observation("2708-6", 92, "%", id="b"))
    assert errors(doc) == [
        ("entry[1].resource.valueQuantity.value",
         "conflicts with entry[0].resource.valueQuantity.value (spo2 = 97 %)", 92)
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (bundle(observation(), type="searchset"), [("type", "must be one of 'collection', 'transaction', "
                                              "'batch' or 'message'", "searchset")]),
        (bundle(), [("entry", "must contain at least 1 item(s)", [])]),
        (bundle(entry=[{"resource": "x"}]), [("entry[0].resource", "must be a JSON object", "x")]),
        (bundle(entry=[{}]), [("entry[0].resource", "required field is missing", None)]),
    ],
)
def test_bad_bundle_shape(doc: dict, expected: list) -> None:
    assert errors(doc) == expected


def test_every_bad_entry_is_reported() -> None:
    shape = bundle(observation(subject=...), observation(), observation(status="cancelled"))
    assert [(f, p) for f, p, _ in errors(shape)] == [
        ("entry[0].resource.subject", "required field is missing"),
        ("entry[2].resource.status",
         "must be one of 'preliminary', 'final', 'amended' or 'corrected'"),
    ]
    values = bundle(observation("8867-4", 900), observation(), observation("9279-1", 1))
    assert [(f, p) for f, p, _ in errors(values)] == [
        ("entry[0].resource.valueQuantity.value", "out of plausible range 20–300 /min"),
        ("entry[2].resource.valueQuantity.value", "out of plausible range 2–80 /min"),
    ]


# --- the wider catalogue: 2708-6 by category, FiO2, EtCO2, labs --------------------------------


def laboratory(loinc: str, value: Any, unit: str, **fields: Any) -> dict:
    return observation(loinc, value, unit, category=[concept("laboratory", system=CATEGORY)], **fields)


def test_2708_6_is_spo2_as_a_vital_sign_and_sao2_as_a_lab_result() -> None:
    [vital] = decode("fhir", orjson.dumps(observation("2708-6", 95, "%")))
    [lab] = decode("fhir", orjson.dumps(laboratory("2708-6", 91, "%")))
    both = observation("2708-6", 95, "%", category=[concept("laboratory", "vital-signs", system=CATEGORY)])
    [either] = decode("fhir", orjson.dumps(both))
    assert (vital.values, lab.values, either.values) == ({"spo2": 95.0}, {"sao2": 91.0}, {"spo2": 95.0})


def test_spo2_and_sao2_of_one_instant_are_two_variables() -> None:
    doc = bundle(observation("59408-5", 95, "%", id="a"), laboratory("2708-6", 0.91, "1", id="b"))
    [obs] = decode("fhir", orjson.dumps(doc))
    assert obs.values == pytest.approx({"spo2": 95.0, "sao2": 91.0})


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected"),
    [
        ("3150-0", 40, "%", {"fio2": 0.4, "on_oxygen": 1.0}),
        ("3150-0", 0.21, "1", {"fio2": 0.21, "on_oxygen": 0.0}),
        ("19996-8", 0.6, "1", {"fio2": 0.6, "on_oxygen": 1.0}),
        ("19891-1", 5.0, "kPa", {"etco2": 37.503}),
        ("19889-5", 38, "mm[Hg]", {"etco2": 38.0}),
    ],
)
def test_fio2_and_etco2_as_vital_signs(loinc: str, value: float, unit: str, expected: dict) -> None:
    [obs] = decode("fhir", orjson.dumps(observation(loinc, value, unit)))
    assert obs.values == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("doc", "field", "problem"),
    [
        (observation("3150-0", 40, "1"), "valueQuantity.value",
         "out of plausible range 0.21–1 1"),  # a percentage sent as a fraction: never guessed
        (observation("3150-0", 4, "L/min"), "valueQuantity.code",
         "unit 'L/min' cannot be converted to 1 for fio2 (accepted: 1, %)"),  # a flow, not a FiO2
        (observation("19889-5", 5.2, "%"), "valueQuantity.code",
         "unit '%' cannot be converted to mm[Hg] for etco2 (accepted: mm[Hg], kPa)"),
        (laboratory("2708-6", 1.2, "1"), "valueQuantity.value",
         "out of plausible range 20–100 % (1.2 1 = 120 %)"),
        (laboratory("22664-7", 40, "mg/dL"), "valueQuantity.code",
         "unit 'mg/dL' cannot be converted to mg/dL for bun (accepted: mmol/L for LOINC 22664-7; "
         "urea, not urea nitrogen, in a mass unit is refused)"),
        (laboratory("17861-6", 30, "mg/dL"), "valueQuantity.value", "out of plausible range 2–20 mg/dL"),
    ],
)
def test_new_variables_refused_with_their_reason(doc: dict, field: str, problem: str) -> None:
    assert [(f, p) for f, p, _ in errors(doc)] == [(field, problem)]


def test_a_urea_coding_beside_a_bun_coding_still_decides_the_units() -> None:
    code = {"coding": [{"system": LOINC, "code": "3094-0"}, {"system": LOINC, "code": "22664-7"}]}
    assert [f for f, _, _ in errors(laboratory("3094-0", 40, "mg/dL", code=code))] == ["valueQuantity.code"]
    [obs] = decode("fhir", orjson.dumps(laboratory("3094-0", 7.14, "mmol/L", code=code)))
    assert obs.values == pytest.approx({"bun": 20.002}, rel=1e-4)


def test_a_blood_gas_bundle_is_one_event() -> None:
    doc = bundle(
        laboratory("2744-1", 7.21, "[pH]", id="ph"),
        laboratory("2019-8", 6.5, "kPa", id="pco2"),
        laboratory("1925-7", -8, "mmol/L", id="be"),
        laboratory("1963-8", 17, "meq/L", id="hco3"),
        laboratory("2708-6", 93, "%", id="sat"),
        observation("3150-0", 35, "%", id="fio2"),
    )
    [obs] = decode("fhir", orjson.dumps(doc))
    assert obs.event_id == "ph"
    assert obs.values == pytest.approx(
        {"ph": 7.21, "paco2": 48.754, "base_excess": -8.0, "bicarbonate": 17.0, "sao2": 93.0,
         "fio2": 0.35, "on_oxygen": 1.0}, rel=1e-4)
