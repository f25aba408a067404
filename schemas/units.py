"""UCUM units and their conversion into each variable's canonical unit.

Sites report the same analyte in different units (creatinine in µmol/L in Europe, mg/dL in
the US); the model and NEWS2 need one. Only conversions listed here are performed: a unit not
in a variable's table is refused, naming the accepted ones, because guessing (is "7.1" a
glucose in mmol/L or a typo in mg/dL?) is how wrong numbers reach a clinician.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from schemas.errors import ContractError
from schemas.variables import BY_NAME, Variable


@dataclass(frozen=True, slots=True)
class Linear:
    """canonical = value × scale + offset (every clinical conversion here is affine)."""

    scale: float
    offset: float = 0.0


_SAME = Linear(1.0)

# Molar masses (g/mol) behind the mass <-> substance conversions. Calcium, magnesium and
# phosphate are reported as the element (phosphate in mg/dL is "phosphorus", as P).
_LACTATE_G_PER_MOL = 90.08
_CREATININE_G_PER_MOL = 113.12
_BILIRUBIN_G_PER_MOL = 584.66
_GLUCOSE_G_PER_MOL = 180.16
_CALCIUM_G_PER_MOL = 40.078
_MAGNESIUM_G_PER_MOL = 24.305
_PHOSPHORUS_G_PER_MOL = 30.974
#: Urea nitrogen: the two N atoms of one urea molecule, so 1 mmol/L of urea (or of "urea
#: nitrogen" as sites report it in SI) is 2.8 mg/dL of BUN.
_UREA_NITROGEN_G_PER_MOL = 28.014
#: Haemoglobin per haem (monomer), the convention of sites that report Hb in mmol/L.
_HEMOGLOBIN_MONOMER_G_PER_MOL = 16_114.5
_MMHG_PER_KPA = 1000 / 133.322387415
#: One microkatal converts one micromole per second; one unit (U, IU) one micromole per minute.
_U_PER_UKAT = 60.0

# From substance to mass concentration: µmol/L -> mg/dL (and mmol/L -> g/dL) is × (g/mol) / 10_000,
# mmol/L -> mg/dL is × (g/mol) / 10; mg/dL -> mmol/L is the inverse of the latter; a divalent
# ion's meq/L is half its mmol/L.
_RATES = {"/min": _SAME, "1/min": _SAME}
_PRESSURE = {"mm[Hg]": _SAME, "kPa": Linear(_MMHG_PER_KPA)}
_CELL_COUNT = {"10*3/uL": _SAME, "10*9/L": _SAME, "10*3/mm3": _SAME, "/uL": Linear(1e-3)}
_MONOVALENT_ION = {"mmol/L": _SAME, "meq/L": _SAME}
_ENZYME = {"U/L": _SAME, "[IU]/L": _SAME, "ukat/L": Linear(_U_PER_UKAT)}
#: A percentage canonical, also sent as a fraction (0.97, or 0.40 L/L for a haematocrit).
_PERCENT_OR_FRACTION = {"%": _SAME, "1": Linear(100.0)}


def _divalent(g_per_mol: float) -> dict[str, Linear]:
    """mg/dL canonical for Ca2+, Mg2+: mmol/L × (g/mol)/10, meq/L half of that."""
    return {"mg/dL": _SAME, "mmol/L": Linear(g_per_mol / 10), "meq/L": Linear(g_per_mol / 20)}


CONVERSIONS: Mapping[str, Mapping[str, Linear]] = MappingProxyType(
    {
        "heart_rate": {**_RATES, "{beats}/min": _SAME, "{beat}/min": _SAME},
        "resp_rate": {**_RATES, "{breaths}/min": _SAME, "{breath}/min": _SAME},
        "spo2": {"%": _SAME},
        "temperature": {
            "Cel": _SAME,
            "[degF]": Linear(5 / 9, -32 * 5 / 9),
            "K": Linear(1.0, -273.15),
        },
        "sbp": _PRESSURE,
        "dbp": _PRESSURE,
        "map": _PRESSURE,
        "fio2": {"1": _SAME, "%": Linear(0.01)},
        "etco2": _PRESSURE,
        "lactate": {**_MONOVALENT_ION, "mg/dL": Linear(10 / _LACTATE_G_PER_MOL)},
        "wbc": _CELL_COUNT,
        "creatinine": {
            "mg/dL": _SAME,
            "umol/L": Linear(_CREATININE_G_PER_MOL / 10_000),
            "mmol/L": Linear(_CREATININE_G_PER_MOL / 10),
        },
        "platelets": _CELL_COUNT,
        "bilirubin": {"mg/dL": _SAME, "umol/L": Linear(_BILIRUBIN_G_PER_MOL / 10_000)},
        "potassium": _MONOVALENT_ION,
        "sodium": _MONOVALENT_ION,
        "glucose": {"mg/dL": _SAME, "mmol/L": Linear(_GLUCOSE_G_PER_MOL / 10)},
        "hemoglobin": {
            "g/dL": _SAME,
            "g/L": Linear(0.1),
            "mmol/L": Linear(_HEMOGLOBIN_MONOMER_G_PER_MOL / 10_000),
        },
        "bun": {"mg/dL": _SAME, "mmol/L": Linear(_UREA_NITROGEN_G_PER_MOL / 10)},
        "bicarbonate": _MONOVALENT_ION,
        "ph": {"[pH]": _SAME},
        "paco2": _PRESSURE,
        "base_excess": _MONOVALENT_ION,
        "sao2": _PERCENT_OR_FRACTION,
        "chloride": _MONOVALENT_ION,
        "calcium": _divalent(_CALCIUM_G_PER_MOL),
        "magnesium": _divalent(_MAGNESIUM_G_PER_MOL),
        "phosphate": {"mg/dL": _SAME, "mmol/L": Linear(_PHOSPHORUS_G_PER_MOL / 10)},
        "ast": _ENZYME,
        "alkaline_phosphatase": _ENZYME,
        "bilirubin_direct": {"mg/dL": _SAME, "umol/L": Linear(_BILIRUBIN_G_PER_MOL / 10_000)},
        # ng/mL = ug/L; high-sensitivity assays report ng/L (= pg/mL), a thousandth of that.
        "troponin_i": {"ng/mL": _SAME, "ug/L": _SAME, "ng/L": Linear(1e-3), "pg/mL": Linear(1e-3)},
        "hematocrit": {**_PERCENT_OR_FRACTION, "L/L": Linear(100.0)},
        "ptt": {"s": _SAME},
        "fibrinogen": {"mg/dL": _SAME, "g/L": Linear(100.0), "mg/L": Linear(0.1)},
    }
)

#: LOINC codes that take only some of their variable's units, with why. 22664-7 is urea, not
#: urea nitrogen: in mmol/L the two are one number, but 40 mg/dL of urea is 18.7 mg/dL of BUN,
#: and a urea mass reported under a BUN variable would read 2.14 times too high.
CODE_UNITS: Mapping[str, tuple[tuple[str, ...], str]] = MappingProxyType(
    {"22664-7": (("mmol/L",), "urea, not urea nitrogen, in a mass unit")}
)


def accepted_units(variable: Variable | str) -> tuple[str, ...]:
    """UCUM codes convert() takes for ``variable``; empty for unitless ones (consciousness)."""
    name = variable if isinstance(variable, str) else variable.name
    return tuple(CONVERSIONS.get(name, ()))


def convert(
    variable: Variable | str,
    value: float,
    unit: str,
    *,
    field: str = "unit",
    code: str | None = None,
) -> float:
    """``value`` expressed in ``unit``, converted to the variable's canonical unit.

    ``code`` is the LOINC code the value was sent under, when it was: a code in CODE_UNITS
    narrows the units taken. Raises ContractError on ``field`` when the unit is not accepted.
    """
    var = BY_NAME[variable] if isinstance(variable, str) else variable
    table = CONVERSIONS.get(var.name, {})
    spelled = unit if unit in table else _uppercase_litre(unit)
    rule = table.get(spelled)
    accepted = ", ".join(table) or "none: it is unitless"
    restriction = CODE_UNITS.get(code or "")
    if restriction is not None and spelled not in restriction[0]:
        rule = None
        accepted = f"{', '.join(restriction[0])} for LOINC {code}; {restriction[1]} is refused"
    if rule is None:
        raise ContractError.single(
            field,
            f"unit '{unit}' cannot be converted to {var.unit} for {var.name} "
            f"(accepted: {accepted})",
            unit,
        )
    return value * rule.scale + rule.offset


def _uppercase_litre(unit: str) -> str:
    """UCUM spells the litre both ``l`` and ``L``; the tables use ``L``."""
    head, slash, tail = unit.rpartition("/")
    if slash and tail in ("l", "dl", "ul", "ml"):
        return f"{head}/{tail[:-1]}L"
    return unit
