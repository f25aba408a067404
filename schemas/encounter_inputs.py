"""The native wire format encounters.v1 (admission, transfer, discharge) and its mapping onto
Encounter.

A discriminated union on ``kind``: each kind has its own time field and context, and a field of
another kind is an error rather than ignored (an admission that carries a ``disposition`` was
meant as something else). Strict like vitals.v1: JSON numbers only, no unknown fields.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from schemas.encounter import (
    AGE_HIGH,
    AGE_LOW,
    Disposition,
    Encounter,
    EncounterKind,
    Sex,
    UnitKind,
    age_at,
    age_error,
)
from schemas.errors import ContractError, FieldError, from_validation_error
from schemas.fields import EventId, PatientId, Source
from schemas.inputs import Contract, wire_names
from schemas.timestamps import CalendarDate, Rfc3339, future_error

_UNIT = "ward, step_down (intermediate care) or icu"


class EncounterV1(Contract):
    """What every encounters.v1 event carries: who, and the key that makes it idempotent."""

    schema_: Literal["encounters.v1"] | None = Field(None, alias="schema")
    event_id: EventId
    patient_id: PatientId
    source: Source | None = None

    def _encounter(
        self,
        kind: EncounterKind,
        at: datetime,
        field: str,
        now: float | None,
        errors: list[FieldError],
        **context: object,
    ) -> Encounter:
        """The Encounter, or every problem found (the caller's and the clock's) at once."""
        future = future_error(at.timestamp(), now, field)
        if future is not None:
            errors.append(future)
        if errors:
            raise ContractError(errors)
        at_utc = at.astimezone(timezone.utc)
        return Encounter(
            self.event_id,
            self.patient_id,
            kind,
            at_utc,
            source=self.source,
            **context,  # type: ignore[arg-type]
        )


class AdmissionV1(EncounterV1):
    """The patient was admitted: when, to what kind of unit, and who (age, sex) when known."""

    model_config = ConfigDict(title="encounters.v1 admission")

    kind: Literal["admission"]
    admitted_at: Rfc3339 = Field(description="RFC 3339 date-time with offset")
    unit: UnitKind | None = Field(None, description=f"{_UNIT}; unknown when absent")
    age: float | None = Field(
        None,
        description=f"years at admission, {AGE_LOW:g}–{AGE_HIGH:g}; or send birth_date (not both)",
        json_schema_extra={"minimum": AGE_LOW, "maximum": AGE_HIGH},
    )
    birth_date: CalendarDate | None = Field(
        None, description="YYYY-MM-DD; the age is computed at admitted_at (not with age)"
    )
    sex: Sex | None = None

    def to_encounter(self, *, now: float | None = None) -> Encounter:
        errors: list[FieldError] = []
        age = self._age(errors)
        return self._encounter(
            "admission", self.admitted_at, "admitted_at", now, errors,
            unit=self.unit, age=age, sex=self.sex,
        )

    def _age(self, errors: list[FieldError]) -> float | None:
        """Years at admission, from ``age`` or ``birth_date``; problems go to ``errors``."""
        if self.age is not None and self.birth_date is not None:
            errors.append(
                FieldError(
                    "birth_date",
                    "conflicts with age: send one of age or birth_date",
                    self.birth_date.isoformat(),
                )
            )
            return None
        if self.birth_date is not None:
            return _age_from_birth(self.birth_date, self.admitted_at, errors)
        if self.age is not None:
            problem = age_error(self.age, "age", self.age)
            if problem is not None:
                errors.append(problem)
                return None
        return self.age


def _age_from_birth(birth: date, admitted_at: datetime, errors: list[FieldError]) -> float | None:
    age = age_at(birth, admitted_at)
    if age < 0:
        errors.append(FieldError("birth_date", "bad date: after admitted_at", birth.isoformat()))
        return None
    problem = age_error(age, "birth_date", birth.isoformat())
    if problem is not None:
        errors.append(problem)
        return None
    return age


class TransferV1(EncounterV1):
    """The patient moved to another kind of unit (ward to ICU, ICU to step-down, ...)."""

    model_config = ConfigDict(title="encounters.v1 transfer")

    kind: Literal["transfer"]
    transferred_at: Rfc3339 = Field(description="RFC 3339 date-time with offset")
    unit: UnitKind = Field(description=f"the unit moved to: {_UNIT}")

    def to_encounter(self, *, now: float | None = None) -> Encounter:
        return self._encounter(
            "transfer", self.transferred_at, "transferred_at", now, [], unit=self.unit
        )


class DischargeV1(EncounterV1):
    """The patient left: home, to another facility, or dead."""

    model_config = ConfigDict(title="encounters.v1 discharge")

    kind: Literal["discharge"]
    discharged_at: Rfc3339 = Field(description="RFC 3339 date-time with offset")
    disposition: Disposition | None = Field(
        None, description="home, other_facility or died; not stated when absent"
    )

    def to_encounter(self, *, now: float | None = None) -> Encounter:
        return self._encounter(
            "discharge", self.discharged_at, "discharged_at", now, [], disposition=self.disposition
        )


EncountersV1 = Annotated[Union[AdmissionV1, TransferV1, DischargeV1], Field(discriminator="kind")]
ENCOUNTERS_V1: TypeAdapter[AdmissionV1 | TransferV1 | DischargeV1] = TypeAdapter(EncountersV1)

#: Each kind's wire fields; the kinds are also the union's tags, which pydantic puts in error
#: locations but which are not fields of the document.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "admission": wire_names(AdmissionV1),
    "transfer": wire_names(TransferV1),
    "discharge": wire_names(DischargeV1),
}
_EVERY_FIELD = frozenset().union(*KIND_FIELDS.values())


def encounter_from_v1(document: Any, *, now: float | None = None) -> Encounter:
    """Validate an encounters.v1 document and map it; ContractError naming every problem."""
    try:
        event = ENCOUNTERS_V1.validate_python(document)
    except ValidationError as exc:
        kind = document.get("kind") if isinstance(document, dict) else None
        known = KIND_FIELDS.get(kind, _EVERY_FIELD) if isinstance(kind, str) else _EVERY_FIELD
        error = from_validation_error(exc, known_fields=known, union_tags=frozenset(KIND_FIELDS))
        raise ContractError([_kind_hint(e, kind) for e in error.errors]) from None
    return event.to_encounter(now=now)


def _kind_hint(error: FieldError, kind: object) -> FieldError:
    """An unknown field that is another kind's field says so ("disposition" on an admission)."""
    if not error.problem.startswith("unknown field"):
        return error
    owners = [k for k, names in KIND_FIELDS.items() if k != kind and error.field in names]
    if not owners:
        return error
    problem = f"unknown field: it belongs to kind '{owners[0]}', not '{kind}'"
    return FieldError(error.field, problem, error.value)
