"""The catalogue of clinical variables vitalwatch understands.

One table serves every package: the contracts validate against its plausibility ranges and
map its LOINC codes, the feature encoder orders its inputs by it, NEWS2 reads its vitals, and
the simulator emits values in its canonical units. Adding a variable means adding one row
here (and retraining the model, whose manifest records the variable order it was trained on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VariableKind = Literal["vital", "lab"]

#: ACVPU consciousness levels, stored as an ordinal so the model and NEWS2 can use one number.
ACVPU: tuple[str, ...] = ("A", "C", "V", "P", "U")


@dataclass(frozen=True, slots=True)
class Variable:
    """One measurable quantity with its canonical unit and its physiologically possible range.

    ``low``/``high`` bound what a living patient can show; values outside are measurement or
    transcription errors and are rejected, not clipped. ``normal`` is a typical adult value
    the feature encoder falls back to for a never-seen variable, and ``decay_hours`` is how
    fast a carried-forward value loses weight toward it (labs stay informative for longer).
    """

    name: str
    kind: VariableKind
    unit: str
    loinc: tuple[str, ...]
    low: float
    high: float
    normal: float
    decay_hours: float


VITALS: tuple[Variable, ...] = (
    Variable("heart_rate", "vital", "/min", ("8867-4",), 20, 300, 75, 2.0),
    Variable("resp_rate", "vital", "/min", ("9279-1",), 2, 80, 16, 2.0),
    Variable("spo2", "vital", "%", ("59408-5", "2708-6"), 40, 100, 97, 2.0),
    Variable("temperature", "vital", "Cel", ("8310-5",), 25, 45, 37.0, 4.0),
    Variable("sbp", "vital", "mm[Hg]", ("8480-6",), 30, 300, 120, 2.0),
    Variable("dbp", "vital", "mm[Hg]", ("8462-4",), 10, 200, 75, 2.0),
    Variable("map", "vital", "mm[Hg]", ("8478-0",), 20, 250, 90, 2.0),
    # ACVPU ordinal: A=0, C=1, V=2, P=3, U=4 (see ACVPU). No single LOINC code carries ACVPU.
    Variable("consciousness", "vital", "{ACVPU}", (), 0, 4, 0, 4.0),
    # Supplemental oxygen: 1 on oxygen, 0 on room air.
    Variable("on_oxygen", "vital", "{bool}", (), 0, 1, 0, 4.0),
)

# Labs list the mass- and the substance-concentration LOINC codes of an analyte where sites use
# both (creatinine 14682-9, bilirubin 14631-6, glucose 14749-6/15074-8 are the µmol/L, mmol/L
# ones): schemas.units converts the value from the unit it was sent in either way.
LABS: tuple[Variable, ...] = (
    Variable("lactate", "lab", "mmol/L", ("2524-7", "32693-4"), 0.1, 30, 1.0, 12.0),
    Variable("wbc", "lab", "10*3/uL", ("6690-2", "26464-8"), 0.1, 500, 7.5, 24.0),
    Variable("creatinine", "lab", "mg/dL", ("2160-0", "38483-4", "14682-9"), 0.1, 25, 0.9, 24.0),
    Variable("platelets", "lab", "10*3/uL", ("777-3", "26515-7"), 1, 2000, 250, 24.0),
    Variable("bilirubin", "lab", "mg/dL", ("1975-2", "14631-6"), 0.05, 50, 0.7, 24.0),
    Variable("potassium", "lab", "mmol/L", ("2823-3", "6298-4"), 1.0, 10.0, 4.2, 24.0),
    Variable("sodium", "lab", "mmol/L", ("2951-2", "2947-0"), 100, 190, 140, 24.0),
    Variable(
        "glucose", "lab", "mg/dL", ("2345-7", "2339-0", "14749-6", "15074-8"), 10, 2000, 100, 12.0
    ),
    Variable("hemoglobin", "lab", "g/dL", ("718-7",), 2.0, 25.0, 13.5, 24.0),
)

#: Every variable in feature order. The model's manifest stores these names; a checkpoint
#: trained on another order is refused at load time.
VARIABLES: tuple[Variable, ...] = VITALS + LABS
VARIABLE_NAMES: tuple[str, ...] = tuple(v.name for v in VARIABLES)
VARIABLE_INDEX: dict[str, int] = {v.name: i for i, v in enumerate(VARIABLES)}
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}
BY_LOINC: dict[str, Variable] = {code: v for v in VARIABLES for code in v.loinc}
