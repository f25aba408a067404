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

# Molar masses (g/mol) behind the mass <-> substance conversions.
_LACTATE_G_PER_MOL = 90.08
_CREATININE_G_PER_MOL = 113.12
_BILIRUBIN_G_PER_MOL = 584.66
_GLUCOSE_G_PER_MOL = 180.16
#: Haemoglobin per haem (monomer), the convention of sites that report Hb in mmol/L.
_HEMOGLOBIN_MONOMER_G_PER_MOL = 16_114.5
_MMHG_PER_KPA = 1000 / 133.322387415

# From substance to mass concentration: µmol/L -> mg/dL (and mmol/L -> g/dL) is × (g/mol) / 10_000,
# mmol/L -> mg/dL is × (g/mol) / 10; mg/dL -> mmol/L is the inverse of the latter.
_RATES = {"/min": _SAME, "1/min": _SAME}
_PRESSURE = {"mm[Hg]": _SAME, "kPa": Linear(_MMHG_PER_KPA)}
_CELL_COUNT = {"10*3/uL": _SAME, "10*9/L": _SAME, "10*3/mm3": _SAME, "/uL": Linear(1e-3)}
_MONOVALENT_ION = {"mmol/L": _SAME, "meq/L": _SAME}

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
    }
)


def accepted_units(variable: Variable | str) -> tuple[str, ...]:
    """UCUM codes convert() takes for ``variable``; empty for unitless ones (consciousness)."""
    name = variable if isinstance(variable, str) else variable.name
    return tuple(CONVERSIONS.get(name, ()))


def convert(variable: Variable | str, value: float, unit: str, *, field: str = "unit") -> float:
    """``value`` expressed in ``unit``, converted to the variable's canonical unit.

    Raises ContractError on ``field`` when the unit is not one this variable accepts.
    """
    var = BY_NAME[variable] if isinstance(variable, str) else variable
    table = CONVERSIONS.get(var.name, {})
    rule = table.get(unit) or table.get(_uppercase_litre(unit))
    if rule is None:
        accepted = ", ".join(table) or "none: it is unitless"
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
