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
    # Fraction of inspired oxygen: 0.21 is room air (a percentage is converted by schemas.units).
    Variable("fio2", "vital", "1", ("3150-0", "19996-8"), 0.21, 1.0, 0.21, 4.0),
    # End-tidal CO2 partial pressure (capnography); 0 is possible (no exhaled CO2). 19891-1 is the
    # partial-pressure code; 19889-5 is formally the end-tidal volume fraction, but monitors and
    # EMS feeds send it in mm[Hg]: it is taken in a pressure unit only (a % is refused, since
    # turning a fraction into a pressure needs the barometric pressure, which no feed sends).
    Variable("etco2", "vital", "mm[Hg]", ("19891-1", "19889-5"), 0, 150, 38, 2.0),
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
    # The rest of the PhysioNet/CinC 2019 panel. Blood gases (pH, PaCO2, base excess, SaO2,
    # bicarbonate) age faster than the chemistry: a ventilated patient's gas changes by the hour.
    Variable("bun", "lab", "mg/dL", ("3094-0", "6299-2", "14937-7", "22664-7"), 1, 300, 15, 24.0),
    Variable(
        "bicarbonate", "lab", "mmol/L", ("1963-8", "1959-6", "2028-9", "14627-4"), 2, 60, 24, 6.0
    ),
    Variable("ph", "lab", "[pH]", ("2744-1", "11558-4", "2746-6", "2753-2"), 6.5, 8.0, 7.40, 6.0),
    Variable("paco2", "lab", "mm[Hg]", ("2019-8", "11557-6"), 5, 200, 40, 6.0),
    Variable("base_excess", "lab", "mmol/L", ("1925-7", "11555-0", "1927-3"), -40, 40, 0, 6.0),
    # 2708-6 is also the code FHIR's vital-signs profile puts on pulse oximetry: a laboratory
    # result with it is an arterial saturation, a vital sign SpO2 (LAB_BY_LOINC, and
    # schemas.fhir by the Observation's category, decide).
    Variable("sao2", "lab", "%", ("2708-6", "2713-6"), 20, 100, 97, 6.0),
    Variable("chloride", "lab", "mmol/L", ("2075-0", "2069-3"), 50, 160, 103, 24.0),
    Variable("calcium", "lab", "mg/dL", ("17861-6", "2000-8"), 2.0, 20.0, 9.2, 24.0),
    Variable("magnesium", "lab", "mg/dL", ("19123-9", "2601-3"), 0.3, 10.0, 2.0, 24.0),
    Variable("phosphate", "lab", "mg/dL", ("2777-1", "14879-1"), 0.3, 20.0, 3.5, 24.0),
    Variable("ast", "lab", "U/L", ("1920-8", "30239-8"), 1, 25000, 25, 24.0),
    Variable("alkaline_phosphatase", "lab", "U/L", ("6768-6",), 5, 5000, 80, 24.0),
    Variable("bilirubin_direct", "lab", "mg/dL", ("1968-7", "14629-0"), 0.01, 40, 0.2, 24.0),
    Variable("troponin_i", "lab", "ng/mL", ("10839-9", "42757-5", "89579-7"), 0, 500, 0.01, 24.0),
    Variable("hematocrit", "lab", "%", ("4544-3", "20570-8"), 10, 75, 40, 24.0),
    Variable("ptt", "lab", "s", ("3173-2", "14979-9"), 10, 250, 30, 24.0),
    Variable("fibrinogen", "lab", "mg/dL", ("3255-7", "48664-7"), 20, 2000, 300, 24.0),
)

#: Every variable, in the order of the worker's per-patient memory (the slab's columns). A
#: checkpoint names the variables it was trained on and its encoder reads only those columns,
#: so a model trained on fewer variables keeps working as the catalogue grows.
VARIABLES: tuple[Variable, ...] = VITALS + LABS
VARIABLE_NAMES: tuple[str, ...] = tuple(v.name for v in VARIABLES)
VARIABLE_INDEX: dict[str, int] = {v.name: i for i, v in enumerate(VARIABLES)}
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}
#: LOINC code -> variable; a code two variables share (2708-6) resolves to the first, the vital
#: sign, here; a laboratory context resolves it with LAB_BY_LOINC.
BY_LOINC: dict[str, Variable] = {}
for _variable in VARIABLES:
    for _code in _variable.loinc:
        BY_LOINC.setdefault(_code, _variable)
#: LOINC code -> variable in a laboratory context (labs.v1, a FHIR laboratory Observation): a code
#: a lab shares with a vital sign names the lab (2708-6 from a blood gas analyser is SaO2).
LAB_BY_LOINC: dict[str, Variable] = {
    **BY_LOINC, **{code: lab for lab in LABS for code in lab.loinc}
}

#: Earlier catalogues' variable orders, oldest first: stored patient state records the order it
#: was written in, so a worker upgraded over it maps every carried-forward value by name.
PREVIOUS_CATALOGUES: tuple[tuple[str, ...], ...] = (
    (
        "heart_rate", "resp_rate", "spo2", "temperature", "sbp", "dbp", "map", "consciousness", "on_oxygen",
        "lactate", "wbc", "creatinine", "platelets", "bilirubin", "potassium", "sodium", "glucose", "hemoglobin",
    ),
)
