"""The native wire formats vitals.v1 and labs.v1, and their mapping onto Observation.

Both are strict: a number must be a JSON number (not "72", not true), and an unknown field is
an error, because a misspelt measurement ("heartrate") silently dropped would look like a
patient whose heart rate was never measured.
"""

from __future__ import annotations

from datetime import timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.canonical import (
    FIO2_PERCENT_HIGH,
    FIO2_PERCENT_LOW,
    Measurements,
    derive_on_oxygen,
    fio2_fraction,
    fio2_range_error,
    oxygen_conflict,
    plausible_range,
    range_error,
)
from schemas.errors import ContractError, FieldError, suggestion
from schemas.fields import EventId, PatientId, Source
from schemas.observation import Observation
from schemas.timestamps import Rfc3339, future_error
from schemas.units import accepted_units
from schemas.variables import ACVPU, BY_NAME, LABS, VITALS, Variable

#: Lab codes accepted in labs.v1 ``results[].code``: each lab's catalogue name and LOINC codes
#: (2708-6, which the FHIR vital-signs profile puts on SpO2, is SaO2 in a lab result).
LAB_CODES: dict[str, Variable] = {
    code: lab for lab in LABS for code in (lab.name, *lab.loinc)
}

#: vitals.v1 measurements that are plain numbers in canonical units (the others are categorical
#: on the wire, consciousness a letter and on_oxygen a boolean, or FiO2, which may come as a
#: percentage).
NUMERIC_VITALS: tuple[Variable, ...] = tuple(
    v for v in VITALS if v.name not in ("consciousness", "on_oxygen", "fio2")
)


def _fio2() -> Any:
    """FiO2's field metadata: a fraction or a percentage, never the gap between the two."""
    fio2 = BY_NAME["fio2"]
    return Field(
        None,
        description=(
            f"fraction of inspired oxygen, {fio2.low:g}–{fio2.high:g}; a value in "
            f"{FIO2_PERCENT_LOW:g}–{FIO2_PERCENT_HIGH:g} is a percentage and is divided by 100 "
            "(the ranges cannot overlap); sets on_oxygen (above 0.21) when on_oxygen is not sent"
        ),
        json_schema_extra={
            "minimum": fio2.low,
            "maximum": FIO2_PERCENT_HIGH,
            "not": {
                "type": "number",
                "exclusiveMinimum": fio2.high,
                "exclusiveMaximum": FIO2_PERCENT_LOW,
            },
        },
    )


def _vital(name: str) -> Any:
    """Field metadata for a numeric vital, so the JSON Schema states its unit and range."""
    variable = BY_NAME[name]
    return Field(
        None,
        description=f"in {variable.unit}; plausible {plausible_range(variable)}",
        json_schema_extra={"minimum": variable.low, "maximum": variable.high},
    )


class Contract(BaseModel):
    """Strict JSON: no coercion from strings or booleans, no NaN, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class EventV1(Contract):
    """What every input event carries: who, when, and the key that makes it idempotent."""

    event_id: EventId
    patient_id: PatientId
    observed_at: Rfc3339 = Field(description="RFC 3339 date-time with offset")
    source: Source | None = None

    def _observation(
        self, values: dict[str, float], errors: list[FieldError], now: float | None
    ) -> Observation:
        """The Observation, or every problem found (the caller's and the clock's) at once."""
        observation = Observation(
            self.event_id,
            self.patient_id,
            self.observed_at.astimezone(timezone.utc),
            values,
            self.source,
        )
        future = future_error(observation.observed_ts, now, "observed_at")
        if future is not None:
            errors.append(future)
        if errors:
            raise ContractError(errors)
        return observation


class VitalsV1(EventV1):
    """One observation set from one bedside monitor at one instant (null = not measured)."""

    model_config = ConfigDict(
        title="vitals.v1",
        json_schema_extra={
            "anyOf": [
                {"required": [v.name], "properties": {v.name: {"not": {"type": "null"}}}}
                for v in VITALS
            ]
        },
    )

    schema_: Literal["vitals.v1"] | None = Field(None, alias="schema")
    heart_rate: float | None = _vital("heart_rate")
    resp_rate: float | None = _vital("resp_rate")
    spo2: float | None = _vital("spo2")
    temperature: float | None = _vital("temperature")
    sbp: float | None = _vital("sbp")
    dbp: float | None = _vital("dbp")
    map: float | None = _vital("map")
    consciousness: Literal["A", "C", "V", "P", "U"] | None = Field(None, description="ACVPU")
    on_oxygen: bool | None = Field(
        None, description="receiving supplemental oxygen; false with a fio2 above 0.21 is refused"
    )
    fio2: float | None = _fio2()
    etco2: float | None = _vital("etco2")

    def to_observation(self, *, now: float | None = None) -> Observation:
        """Range-check every measurement (all problems at once) and build the Observation.

        Written as one flat loop over the model's fields because it runs for every vitals
        message; "at least one measurement" is checked here rather than in a pydantic model
        validator for the same reason (the JSON Schema states it with ``anyOf``).
        """
        fields = self.__dict__
        values: dict[str, float] = {}
        errors: list[FieldError] = []
        for variable in NUMERIC_VITALS:
            value = fields[variable.name]
            if value is None:
                continue
            if variable.low <= value <= variable.high:
                values[variable.name] = value
            else:
                errors.append(range_error(variable, value, variable.name))
        if self.consciousness is not None:
            values["consciousness"] = float(ACVPU.index(self.consciousness))
        self._add_oxygen(values, errors)
        if not values and not errors:
            errors.append(
                FieldError(
                    "$",
                    "no measurement: expected at least one of "
                    + ", ".join(v.name for v in VITALS),
                    None,
                )
            )
        return self._observation(values, errors, now)

    def _add_oxygen(self, values: dict[str, float], errors: list[FieldError]) -> None:
        """FiO2 (a fraction, or a percentage converted) and on_oxygen, derived from the FiO2
        when only that was sent; "room air" with a FiO2 above 0.21 is refused."""
        if self.fio2 is not None:
            fio2 = fio2_fraction(self.fio2)
            if fio2 is None:
                errors.append(fio2_range_error(self.fio2, "fio2"))
            else:
                values["fio2"] = fio2
        if self.on_oxygen is not None:
            values["on_oxygen"] = float(self.on_oxygen)
        conflict = oxygen_conflict(values, "on_oxygen")
        if conflict is not None:
            errors.append(conflict)
        derive_on_oxygen(values)


class LabResult(Contract):
    """One analyte result in any unit schemas.units can convert."""

    code: str = Field(
        min_length=1,
        max_length=64,
        description="catalogue name or LOINC code",
        json_schema_extra={"enum": sorted(LAB_CODES)},
    )
    value: float
    unit: str = Field(
        min_length=1,
        max_length=32,
        description="UCUM code; accepted: "
        + "; ".join(f"{lab.name}: {', '.join(accepted_units(lab))}" for lab in LABS),
    )


class LabsV1(EventV1):
    """Results of one specimen (or one lab message) for one patient at one instant."""

    model_config = ConfigDict(title="labs.v1")

    schema_: Literal["labs.v1"] | None = Field(None, alias="schema")
    results: list[LabResult] = Field(min_length=1)

    def to_observation(self, *, now: float | None = None) -> Observation:
        """Resolve codes, convert units, range-check, and build the Observation."""
        errors: list[FieldError] = []
        measurements = Measurements(errors)
        for i, result in enumerate(self.results):
            lab = LAB_CODES.get(result.code)
            if lab is None:
                errors.append(_unknown_lab(result.code, f"results[{i}].code"))
                continue
            measurements.add(
                lab,
                result.value,
                field=f"results[{i}].value",
                unit=result.unit,
                unit_field=f"results[{i}].unit",
                code=result.code,
            )
        return self._observation(measurements.values, errors, now)


def _unknown_lab(code: str, field: str) -> FieldError:
    names = [lab.name for lab in LABS]
    return FieldError(
        field,
        f"unknown lab code '{code}' (expected one of {', '.join(names)} or its LOINC code)"
        + suggestion(code, names),
        code,
    )


def wire_names(*models: type[BaseModel]) -> frozenset[str]:
    """Field names as they appear on the wire, for did-you-mean hints on unknown fields."""
    return frozenset(
        field.alias or name for model in models for name, field in model.model_fields.items()
    )
