"""schemas.units: every listed conversion against a clinical reference value, and refusals."""

from __future__ import annotations

import pytest

from schemas.errors import ContractError
from schemas.units import CONVERSIONS, accepted_units, convert
from schemas.variables import BY_NAME, VARIABLES

#: (variable, UCUM unit, value in that unit, expected canonical value). Reference pairs are
#: textbook equivalences (98.6 °F = 37 °C, creatinine 88.4 µmol/L = 1 mg/dL, ...).
CASES = [
    ("heart_rate", "/min", 72, 72),
    ("heart_rate", "1/min", 72, 72),
    ("heart_rate", "{beats}/min", 72, 72),
    ("heart_rate", "{beat}/min", 72, 72),
    ("resp_rate", "/min", 16, 16),
    ("resp_rate", "1/min", 16, 16),
    ("resp_rate", "{breaths}/min", 16, 16),
    ("resp_rate", "{breath}/min", 16, 16),
    ("spo2", "%", 97, 97),
    ("temperature", "Cel", 37.2, 37.2),
    ("temperature", "[degF]", 98.6, 37.0),
    ("temperature", "K", 310.15, 37.0),
    ("sbp", "mm[Hg]", 120, 120),
    ("sbp", "kPa", 16, 120.0099),
    ("dbp", "mm[Hg]", 80, 80),
    ("dbp", "kPa", 10.6658, 80.0),
    ("map", "mm[Hg]", 93, 93),
    ("map", "kPa", 12.4, 93.0076),
    ("lactate", "mmol/L", 2.0, 2.0),
    ("lactate", "meq/L", 2.0, 2.0),
    ("lactate", "mg/dL", 18.016, 2.0),
    ("wbc", "10*3/uL", 7.5, 7.5),
    ("wbc", "10*9/L", 7.5, 7.5),
    ("wbc", "10*3/mm3", 7.5, 7.5),
    ("wbc", "/uL", 7500, 7.5),
    ("creatinine", "mg/dL", 1.2, 1.2),
    ("creatinine", "umol/L", 88.4, 1.0),
    ("creatinine", "mmol/L", 0.0884, 1.0),
    ("platelets", "10*3/uL", 250, 250),
    ("platelets", "10*9/L", 250, 250),
    ("platelets", "10*3/mm3", 250, 250),
    ("platelets", "/uL", 250_000, 250),
    ("bilirubin", "mg/dL", 0.7, 0.7),
    ("bilirubin", "umol/L", 17.104, 1.0),
    ("potassium", "mmol/L", 4.2, 4.2),
    ("potassium", "meq/L", 4.2, 4.2),
    ("sodium", "mmol/L", 140, 140),
    ("sodium", "meq/L", 140, 140),
    ("glucose", "mg/dL", 100, 100),
    ("glucose", "mmol/L", 5.55, 99.99),
    ("hemoglobin", "g/dL", 13.5, 13.5),
    ("hemoglobin", "g/L", 135, 13.5),
    ("hemoglobin", "mmol/L", 8.4, 13.536),
    # FiO2 and EtCO2 (vitals) and the rest of the PhysioNet 2019 panel.
    ("fio2", "1", 0.4, 0.4),
    ("fio2", "%", 40, 0.4),
    ("etco2", "mm[Hg]", 38, 38),
    ("etco2", "kPa", 5.0, 37.503),
    ("bun", "mg/dL", 20, 20),
    ("bun", "mmol/L", 7.14, 20.002),  # urea 7.14 mmol/L = BUN 20 mg/dL (× 2.8)
    ("bicarbonate", "mmol/L", 24, 24),
    ("bicarbonate", "meq/L", 24, 24),
    ("ph", "[pH]", 7.4, 7.4),
    ("paco2", "mm[Hg]", 40, 40),
    ("paco2", "kPa", 5.33, 39.978),
    ("base_excess", "mmol/L", -2.5, -2.5),
    ("base_excess", "meq/L", -2.5, -2.5),
    ("sao2", "%", 97, 97),
    ("sao2", "1", 0.97, 97),
    ("chloride", "mmol/L", 103, 103),
    ("chloride", "meq/L", 103, 103),
    ("calcium", "mg/dL", 9.2, 9.2),
    ("calcium", "mmol/L", 2.5, 10.02),  # × 4.008
    ("calcium", "meq/L", 5.0, 10.02),  # divalent: 2 meq per mmol
    ("magnesium", "mg/dL", 2.0, 2.0),
    ("magnesium", "mmol/L", 0.82, 1.993),  # × 2.431
    ("magnesium", "meq/L", 1.64, 1.993),
    ("phosphate", "mg/dL", 3.5, 3.5),
    ("phosphate", "mmol/L", 1.13, 3.5),  # as phosphorus, × 3.097
    ("ast", "U/L", 40, 40),
    ("ast", "[IU]/L", 40, 40),
    ("ast", "ukat/L", 0.5, 30),  # 1 µkat/L = 60 U/L
    ("alkaline_phosphatase", "U/L", 80, 80),
    ("alkaline_phosphatase", "[IU]/L", 80, 80),
    ("alkaline_phosphatase", "ukat/L", 1.5, 90),
    ("bilirubin_direct", "mg/dL", 0.3, 0.3),
    ("bilirubin_direct", "umol/L", 5.13, 0.29993),  # ÷ 17.1, as total bilirubin
    ("troponin_i", "ng/mL", 0.04, 0.04),
    ("troponin_i", "ug/L", 0.04, 0.04),
    ("troponin_i", "ng/L", 40, 0.04),
    ("troponin_i", "pg/mL", 40, 0.04),
    ("hematocrit", "%", 40, 40),
    ("hematocrit", "1", 0.40, 40),
    ("hematocrit", "L/L", 0.40, 40),
    ("ptt", "s", 30, 30),
    ("fibrinogen", "mg/dL", 300, 300),
    ("fibrinogen", "g/L", 3.0, 300),
    ("fibrinogen", "mg/L", 3000, 300),
]


@pytest.mark.parametrize(("name", "unit", "value", "expected"), CASES)
def test_conversion(name: str, unit: str, value: float, expected: float) -> None:
    assert convert(name, value, unit) == pytest.approx(expected, rel=2e-4)
    assert convert(BY_NAME[name], value, unit) == convert(name, value, unit)


def test_every_listed_conversion_has_a_reference_case() -> None:
    listed = {(name, unit) for name, table in CONVERSIONS.items() for unit in table}
    assert listed == {(name, unit) for name, unit, _, _ in CASES}


def test_every_measured_variable_accepts_its_canonical_unit() -> None:
    for variable in VARIABLES:
        if variable.unit.startswith("{"):  # consciousness, on_oxygen: no physical unit
            assert accepted_units(variable) == ()
        else:
            assert convert(variable, 1.0, variable.unit) == 1.0


@pytest.mark.parametrize(
    ("unit", "canonical"),
    [("mmol/l", "mmol/L"), ("mg/dl", "mg/dL"), ("10*3/ul", "10*3/uL"), ("g/l", "g/L"),
     ("U/l", "U/L"), ("ukat/l", "ukat/L"), ("[IU]/l", "[IU]/L")],
)
def test_lowercase_litre_is_the_same_ucum_unit(unit: str, canonical: str) -> None:
    name = {"mmol/L": "glucose", "mg/dL": "glucose", "10*3/uL": "wbc", "g/L": "hemoglobin",
            "U/L": "ast", "ukat/L": "ast", "[IU]/L": "alkaline_phosphatase"}[canonical]
    assert convert(name, 5.0, unit) == convert(name, 5.0, canonical)


def test_a_urea_code_takes_only_its_substance_unit() -> None:
    """22664-7 is urea: in mmol/L it is the BUN's number, in mg/dL it would be 2.14 times it."""
    assert convert("bun", 7.14, "mmol/L", code="22664-7") == pytest.approx(20.002, rel=1e-4)
    assert convert("bun", 20, "mg/dL", code="3094-0") == 20
    with pytest.raises(ContractError) as caught:
        convert("bun", 40, "mg/dL", field="results[0].unit", code="22664-7")
    assert caught.value.to_list() == [{
        "field": "results[0].unit",
        "problem": "unit 'mg/dL' cannot be converted to mg/dL for bun (accepted: mmol/L for "
                   "LOINC 22664-7; urea, not urea nitrogen, in a mass unit is refused)",
        "value": "mg/dL",
    }]


@pytest.mark.parametrize(
    ("name", "unit", "problem"),
    [
        (
            "creatinine",
            "mg",
            "unit 'mg' cannot be converted to mg/dL for creatinine "
            "(accepted: mg/dL, umol/L, mmol/L)",
        ),
        (
            "temperature",
            "°C",
            "unit '°C' cannot be converted to Cel for temperature (accepted: Cel, [degF], K)",
        ),
        (
            "sbp",
            "mmHg",
            "unit 'mmHg' cannot be converted to mm[Hg] for sbp (accepted: mm[Hg], kPa)",
        ),
        ("spo2", "1", "unit '1' cannot be converted to % for spo2 (accepted: %)"),
        (
            "etco2",
            "%",
            "unit '%' cannot be converted to mm[Hg] for etco2 (accepted: mm[Hg], kPa)",
        ),
        ("fio2", "L/min", "unit 'L/min' cannot be converted to 1 for fio2 (accepted: 1, %)"),
        ("ph", "1", "unit '1' cannot be converted to [pH] for ph (accepted: [pH])"),
        (
            "troponin_i",
            "ng/dL",
            "unit 'ng/dL' cannot be converted to ng/mL for troponin_i "
            "(accepted: ng/mL, ug/L, ng/L, pg/mL)",
        ),
        (
            "glucose",
            "MMOL/L",
            "unit 'MMOL/L' cannot be converted to mg/dL for glucose (accepted: mg/dL, mmol/L)",
        ),
        (
            "consciousness",
            "{ACVPU}",
            "unit '{ACVPU}' cannot be converted to {ACVPU} for consciousness "
            "(accepted: none: it is unitless)",
        ),
    ],
)
def test_unconvertible_unit_is_an_error_naming_the_field(name: str, unit: str, problem: str) -> None:
    with pytest.raises(ContractError) as caught:
        convert(name, 1.0, unit, field="results[3].unit")
    assert caught.value.to_list() == [{"field": "results[3].unit", "problem": problem, "value": unit}]
