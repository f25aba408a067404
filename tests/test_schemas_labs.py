"""labs.v1: codes by name and by LOINC, unit conversion, and every class of bad value."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.decode import decode
from schemas.errors import ContractError
from schemas.units import CODE_UNITS, convert
from schemas.variables import LABS, Variable


def labs(*results: dict[str, Any], **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": "lab-0042",
        "patient_id": "P000123",
        "observed_at": "2024-05-01T06:30:00Z",
        "results": list(results) or [{"code": "lactate", "value": 2.1, "unit": "mmol/L"}],
    }
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not ...}


def errors(payload: Any) -> list[tuple[str, str, Any]]:
    with pytest.raises(ContractError) as caught:
        decode("labs", orjson.dumps(payload))
    return [(e.field, e.problem, e.value) for e in caught.value.errors]


def test_a_panel_becomes_one_canonical_observation() -> None:
    payload = labs(
        {"code": "creatinine", "value": 176.8, "unit": "umol/L"},
        {"code": "2524-7", "value": 3.1, "unit": "mmol/L"},
        {"code": "wbc", "value": 14.2, "unit": "10*9/L"},
        {"code": "glucose", "value": 7.0, "unit": "mmol/L"},
        schema="labs.v1",
        source="lis",
    )
    [obs] = decode("labs", orjson.dumps(payload))
    assert (obs.event_id, obs.patient_id, obs.source) == ("lab-0042", "P000123", "lis")
    assert obs.values == pytest.approx(
        {"creatinine": 2.0, "lactate": 3.1, "wbc": 14.2, "glucose": 126.11}, rel=1e-4
    )


CODES = [(lab, code) for lab in LABS for code in (lab.name, *lab.loinc)]


@pytest.mark.parametrize(("lab", "code"), CODES, ids=[c for _, c in CODES])
def test_every_lab_name_and_loinc_code(lab: Variable, code: str) -> None:
    """Each code reaches its lab; one that takes only some units (urea) in the first of them."""
    unit = CODE_UNITS[code][0][0] if code in CODE_UNITS else lab.unit
    value = lab.normal / convert(lab, 1.0, unit)
    [obs] = decode("labs", orjson.dumps(labs({"code": code, "value": value, "unit": unit})))
    assert obs.values == pytest.approx({lab.name: lab.normal}, rel=1e-12)


def test_the_same_result_twice_is_harmless() -> None:
    payload = labs(
        {"code": "sodium", "value": 140, "unit": "mmol/L"},
        {"code": "2951-2", "value": 140, "unit": "meq/L"},
    )
    [obs] = decode("labs", orjson.dumps(payload))
    assert obs.values == {"sodium": 140.0}


# --- bad values ----------------------------------------------------------------------------


def test_unknown_code() -> None:
    expected = (
        "unknown lab code '{}' (expected one of lactate, wbc, creatinine, platelets, bilirubin, "
        "potassium, sodium, glucose, hemoglobin, bun, bicarbonate, ph, paco2, base_excess, sao2, "
        "chloride, calcium, magnesium, phosphate, ast, alkaline_phosphatase, bilirubin_direct, "
        "troponin_i, hematocrit, ptt, fibrinogen or its LOINC code)"
    )
    assert errors(labs({"code": "troponin", "value": 1, "unit": "ng/L"})) == [
        ("results[0].code", expected.format("troponin") + "; did you mean 'troponin_i'?",
         "troponin")
    ]
    assert errors(labs({"code": "3091-6", "value": 40, "unit": "mg/dL"})) == [
        ("results[0].code", expected.format("3091-6"), "3091-6")  # urea mass: not BUN
    ]
    assert errors(labs({"code": "lactat", "value": 1, "unit": "mmol/L"})) == [
        ("results[0].code", expected.format("lactat") + "; did you mean 'lactate'?", "lactat")
    ]


def test_a_vital_is_not_a_lab_code() -> None:
    [(field, problem, _)] = errors(labs({"code": "heart_rate", "value": 80, "unit": "/min"}))
    assert field == "results[0].code"
    assert problem.startswith("unknown lab code 'heart_rate'")


def test_unconvertible_unit_names_the_result() -> None:
    payload = labs(
        {"code": "lactate", "value": 2, "unit": "mmol/L"},
        {"code": "potassium", "value": 4, "unit": "mmol/L"},
        {"code": "creatinine", "value": 1, "unit": "mg"},
    )
    assert errors(payload) == [
        (
            "results[2].unit",
            "unit 'mg' cannot be converted to mg/dL for creatinine "
            "(accepted: mg/dL, umol/L, mmol/L)",
            "mg",
        )
    ]


def test_impossible_value_shows_the_conversion() -> None:
    payload = labs({"code": "creatinine", "value": 3000, "unit": "umol/L"})
    assert errors(payload) == [
        (
            "results[0].value",
            "out of plausible range 0.1–25 mg/dL (3000 umol/L = 33.94 mg/dL)",
            3000,
        )
    ]
    assert errors(labs({"code": "potassium", "value": 25, "unit": "mmol/L"})) == [
        ("results[0].value", "out of plausible range 1–10 mmol/L", 25)
    ]


def test_conflicting_results_for_one_analyte() -> None:
    payload = labs(
        {"code": "lactate", "value": 2.0, "unit": "mmol/L"},
        {"code": "32693-4", "value": 4.0, "unit": "mmol/L"},
    )
    assert errors(payload) == [
        ("results[1].value", "conflicts with results[0].value (lactate = 2 mmol/L)", 4.0)
    ]


@pytest.mark.parametrize(
    ("result", "field", "problem", "value"),
    [
        ({"code": "wbc", "value": "12", "unit": "10*9/L"}, "value", "must be a number", "12"),
        ({"code": "wbc", "value": True, "unit": "10*9/L"}, "value", "must be a number", True),
        ({"code": "wbc", "value": None, "unit": "10*9/L"}, "value", "must be a number", None),
        ({"code": 6690, "value": 12, "unit": "10*9/L"}, "code", "must be a string", 6690),
        ({"code": "wbc", "value": 12, "unit": ""}, "unit", "must not be empty", ""),
        ({"code": "wbc", "value": 12}, "unit", "required field is missing", None),
        (
            {"code": "wbc", "value": 12, "units": "10*9/L", "unit": "10*9/L"},
            "units",
            "unknown field; did you mean 'unit'?",
            "10*9/L",
        ),
    ],
)
def test_bad_result_fields(result: dict[str, Any], field: str, problem: str, value: Any) -> None:
    ok = {"code": "sodium", "value": 140, "unit": "mmol/L"}
    assert errors(labs(ok, result)) == [(f"results[1].{field}", problem, value)]


@pytest.mark.parametrize(
    ("results", "field", "problem"),
    [
        ([], "results", "must contain at least 1 item(s)"),
        ({"code": "wbc"}, "results", "must be a JSON array"),
        (["wbc"], "results[0]", "must be a JSON object"),
        (..., "results", "required field is missing"),
    ],
)
def test_bad_results_list(results: Any, field: str, problem: str) -> None:
    [(got_field, got_problem, _)] = errors({**labs(), "results": results} if results is not ...
                                           else labs(results=...))
    assert (got_field, got_problem) == (field, problem)


def test_naive_timestamp_and_bad_patient_together() -> None:
    assert [(f, p) for f, p, _ in errors(labs(observed_at="2024-05-01 06:30", patient_id="a b"))] == [
        ("patient_id", "must match ^[A-Za-z0-9._:-]{1,64}$"),
        ("observed_at", "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
    ]


def test_vitals_fields_are_unknown_in_labs() -> None:
    assert errors(labs(heart_rate=80)) == [("heart_rate", "unknown field", 80)]
    assert errors(labs(schema="vitals.v1")) == [("schema", "must be one of 'labs.v1'", "vitals.v1")]


# --- the PhysioNet 2019 panel: converted, refused ------------------------------------------


@pytest.mark.parametrize(
    ("result", "name", "canonical"),
    [
        ({"code": "2708-6", "value": 94, "unit": "%"}, "sao2", 94.0),  # in a lab result: SaO2
        ({"code": "sao2", "value": 0.94, "unit": "1"}, "sao2", 94.0),
        ({"code": "22664-7", "value": 7.14, "unit": "mmol/L"}, "bun", 20.002),
        ({"code": "3094-0", "value": 20, "unit": "mg/dL"}, "bun", 20.0),
        ({"code": "2000-8", "value": 2.2, "unit": "mmol/L"}, "calcium", 8.817),
        ({"code": "magnesium", "value": 0.8, "unit": "mmol/l"}, "magnesium", 1.944),
        ({"code": "14879-1", "value": 1.0, "unit": "mmol/L"}, "phosphate", 3.097),
        ({"code": "89579-7", "value": 26, "unit": "ng/L"}, "troponin_i", 0.026),
        ({"code": "hematocrit", "value": 0.32, "unit": "L/L"}, "hematocrit", 32.0),
        ({"code": "ast", "value": 1.2, "unit": "ukat/L"}, "ast", 72.0),
        ({"code": "fibrinogen", "value": 2.5, "unit": "g/L"}, "fibrinogen", 250.0),
        ({"code": "2019-8", "value": 6.1, "unit": "kPa"}, "paco2", 45.75),
        ({"code": "ph", "value": 7.21, "unit": "[pH]"}, "ph", 7.21),
        ({"code": "base_excess", "value": -12, "unit": "meq/L"}, "base_excess", -12.0),
        ({"code": "ptt", "value": 95, "unit": "s"}, "ptt", 95.0),
    ],
)
def test_new_labs_are_converted(result: dict[str, Any], name: str, canonical: float) -> None:
    [obs] = decode("labs", orjson.dumps(labs(result)))
    assert obs.values == pytest.approx({name: canonical}, rel=1e-3)


@pytest.mark.parametrize(
    ("result", "field", "problem"),
    [
        ({"code": "hematocrit", "value": 0.4, "unit": "%"}, "value",
         "out of plausible range 10–75 %"),  # a fraction sent as a percentage
        ({"code": "calcium", "value": 6, "unit": "mmol/L"}, "value",
         "out of plausible range 2–20 mg/dL (6 mmol/L = 24.05 mg/dL)"),
        ({"code": "ph", "value": 74, "unit": "[pH]"}, "value", "out of plausible range 6.5–8 [pH]"),
        ({"code": "troponin_i", "value": 900_000, "unit": "ng/L"}, "value",
         "out of plausible range 0–500 ng/mL (900000 ng/L = 900 ng/mL)"),
        ({"code": "base_excess", "value": -45, "unit": "mmol/L"}, "value",
         "out of plausible range -40–40 mmol/L"),
        ({"code": "22664-7", "value": 40, "unit": "mg/dL"}, "unit",
         "unit 'mg/dL' cannot be converted to mg/dL for bun (accepted: mmol/L for LOINC 22664-7; "
         "urea, not urea nitrogen, in a mass unit is refused)"),
        ({"code": "ph", "value": 7.4, "unit": "1"}, "unit",
         "unit '1' cannot be converted to [pH] for ph (accepted: [pH])"),
        ({"code": "ptt", "value": 30, "unit": "min"}, "unit",
         "unit 'min' cannot be converted to s for ptt (accepted: s)"),
    ],
)
def test_new_labs_are_refused_naming_the_problem(result: dict[str, Any], field: str, problem: str) -> None:
    assert errors(labs(result)) == [(f"results[0].{field}", problem, result[field])]
