"""FHIR R4 Encounter input, mapped onto the same Encounter as encounters.v1.

An interface engine publishes a patient's Encounter each time it changes: in progress at
admission, in progress again with a new current location at each transfer, finished at
discharge. Each publication becomes one event:

- ``status`` in-progress with no ``location`` entry marked completed: an admission at
  ``period.start``; in-progress with a completed entry and one active entry: a transfer to the
  active location at its ``period.start``; ``finished``: a discharge at ``period.end``. Other
  statuses (planned, arrived, triaged, onleave, cancelled, entered-in-error, unknown) say
  nothing about a bed and are refused.
- The unit kind comes from the current location entry's ``physicalType`` codings and, when it
  references a contained Location (``#id``), from that Location's ``type`` and
  ``physicalType`` (UNIT_CODES). ``class`` (v3 ActCode: IMP, ACUTE, EMER, ...) does not tell an
  ICU from a ward and is not read.
- Age and sex come from a contained Patient whose ``id`` is the subject's id; the disposition
  from ``hospitalization.dischargeDisposition`` (DISPOSITIONS).
- event_id is ``<id>/<kind>/<instant>`` (the instant in UTC): a redelivered or re-versioned
  resource that says the same thing is the same event, and each admission, transfer and
  discharge of one Encounter is its own.

Only the elements read are modelled; every other FHIR element is ignored.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timezone
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from schemas.encounter import (
    Disposition,
    Encounter,
    EncounterKind,
    Sex,
    UnitKind,
    age_at,
    age_error,
)
from schemas.errors import ContractError, FieldError, from_validation_error
from schemas.fhir import CodeableConcept, FhirElement, PatientReference
from schemas.timestamps import Rfc3339, future_error

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
SNOMED = "http://snomed.info/sct"
#: vitalwatch's own unit kinds (ward, step_down, icu) as codes: no standard terminology has a
#: step-down (intermediate care) unit code, so a feed that needs one codes it in this system.
UNIT_KIND_SYSTEM = "urn:vitalwatch:unit-kind"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"

#: (system, code) -> unit kind. A ward code (``wa``, SNOMED 225746001) says the place is a
#: ward, which an ICU is too: it counts only when no coding names an ICU or a step-down unit.
UNIT_CODES: dict[tuple[str, str], UnitKind] = {
    (ROLE_CODE, "ICU"): "icu",  # intensive care unit
    (ROLE_CODE, "PEDICU"): "icu",  # pediatric intensive care unit
    (ROLE_CODE, "PEDNICU"): "icu",  # pediatric neonatal intensive care unit
    (ROLE_CODE, "CCU"): "icu",  # coronary care unit
    (SNOMED, "309904001"): "icu",  # intensive care unit (environment)
    (PHYSICAL_TYPE, "wa"): "ward",
    (SNOMED, "225746001"): "ward",  # ward (environment)
    (UNIT_KIND_SYSTEM, "ward"): "ward",
    (UNIT_KIND_SYSTEM, "step_down"): "step_down",
    (UNIT_KIND_SYSTEM, "icu"): "icu",
}

#: discharge-disposition code -> disposition; None: a discharge whose destination is not stated
#: (left against advice, other).
DISPOSITIONS: dict[str, Disposition | None] = {
    "home": "home",
    "alt-home": "home",
    "other-hcf": "other_facility",
    "hosp": "other_facility",  # hospice
    "long": "other_facility",
    "psy": "other_facility",
    "rehab": "other_facility",
    "snf": "other_facility",
    "exp": "died",
    "aadvice": None,
    "oth": None,
}

_STATUSES = ("in-progress", "finished")
#: FHIR's partial dates: a year, or a year and a month.
_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Period(FhirElement):
    start: Rfc3339 | None = None
    end: Rfc3339 | None = None


class Reference(FhirElement):
    reference: str | None = None


class EncounterLocation(FhirElement):
    location: Reference
    status: Literal["planned", "active", "reserved", "completed"] | None = None
    physicalType: CodeableConcept | None = None
    period: Period | None = None


class Hospitalization(FhirElement):
    dischargeDisposition: CodeableConcept | None = None


class ContainedPatient(FhirElement):
    resourceType: Literal["Patient"]
    id: str | None = None
    gender: Sex | None = None
    birthDate: str | None = None


class ContainedLocation(FhirElement):
    resourceType: Literal["Location"]
    id: str | None = None
    type: list[CodeableConcept] = []
    physicalType: CodeableConcept | None = None


class FhirEncounter(FhirElement):
    """FHIR R4 Encounter: the elements an admission, transfer or discharge is read from."""

    model_config = ConfigDict(title="Encounter")

    resourceType: Literal["Encounter"]
    id: str | None = Field(None, min_length=1, max_length=64)
    status: str = Field(
        description="in-progress (admission or transfer) or finished (discharge)",
        json_schema_extra={"enum": list(_STATUSES)},
    )
    subject: PatientReference
    period: Period | None = None
    location: list[EncounterLocation] = []
    hospitalization: Hospitalization | None = None
    contained: list[dict[str, Any]] = []

    @field_validator("status")
    @classmethod
    def _maps_to_an_event(cls, status: str) -> str:
        if status not in _STATUSES:
            raise PydanticCustomError(
                "encounter_status",
                "status '{status}' cannot be mapped: expected in-progress (an admission or a "
                "transfer) or finished (a discharge)",
                {"status": status},
            )
        return status


FHIR_ENCOUNTER: TypeAdapter[FhirEncounter] = TypeAdapter(FhirEncounter)
_CONTAINED: dict[str, TypeAdapter[Any]] = {
    "Patient": TypeAdapter(ContainedPatient),
    "Location": TypeAdapter(ContainedLocation),
}


def encounter_from_fhir(document: Any, *, raw: bytes, now: float | None = None) -> Encounter:
    """Validate a FHIR Encounter and map it; ContractError naming every problem."""
    resource_type = document.get("resourceType") if isinstance(document, dict) else None
    if resource_type != "Encounter":
        raise ContractError.single(
            "resourceType",
            "must be 'Encounter' (or send encounters.v1, without resourceType)",
            resource_type,
        )
    try:
        resource = FHIR_ENCOUNTER.validate_python(document)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    errors: list[FieldError] = []
    contained = _contained(resource, errors)
    if resource.status == "finished":
        event = _discharge(resource, errors)
    else:
        event = _admission_or_transfer(resource, contained, errors)
    if event is None or errors:
        raise ContractError(errors)
    kind, at, field, context = event
    future = future_error(at.timestamp(), now, field)
    if future is not None:
        raise ContractError([future])
    at_utc = at.astimezone(timezone.utc)
    stamp = at_utc.isoformat().replace("+00:00", "Z")
    base = resource.id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return Encounter(
        f"{base}/{kind}/{stamp}", resource.subject.patient_id, kind, at_utc, **context
    )


_Event = tuple[EncounterKind, datetime, str, dict[str, Any]]


def _discharge(resource: FhirEncounter, errors: list[FieldError]) -> _Event | None:
    end = resource.period.end if resource.period else None
    if end is None:
        errors.append(
            FieldError("period.end", "required for a finished Encounter (the discharge time)")
        )
        return None
    start = resource.period.start if resource.period else None
    if start is not None and end < start:
        errors.append(FieldError("period.end", "before period.start", end.isoformat()))
    return "discharge", end, "period.end", {"disposition": _disposition(resource, errors)}


def _disposition(resource: FhirEncounter, errors: list[FieldError]) -> Disposition | None:
    concept = resource.hospitalization.dischargeDisposition if resource.hospitalization else None
    if concept is None:
        return None
    found: dict[str, Disposition | None] = {}
    for i, coding in enumerate(concept.coding):
        if coding.system != DISCHARGE_DISPOSITION:
            continue
        if coding.code not in DISPOSITIONS:
            errors.append(
                FieldError(
                    f"hospitalization.dischargeDisposition.coding[{i}].code",
                    "unknown discharge-disposition code "
                    f"(expected one of {', '.join(DISPOSITIONS)})",
                    coding.code,
                )
            )
            continue
        found[coding.code] = DISPOSITIONS[coding.code]
    if len(set(found.values())) > 1:
        errors.append(
            FieldError(
                "hospitalization.dischargeDisposition.coding",
                "codings name different dispositions",
                list(found),
            )
        )
        return None
    return next(iter(found.values()), None)


def _admission_or_transfer(
    resource: FhirEncounter, contained: dict[str, Any], errors: list[FieldError]
) -> _Event | None:
    """A transfer when an earlier location is completed, an admission otherwise."""
    current = _current_location(resource, errors)
    if errors:
        return None
    if any(entry.status == "completed" for entry in resource.location):
        return _transfer(resource, current, contained, errors)
    start = resource.period.start if resource.period else None
    if start is None:
        errors.append(
            FieldError("period.start", "required for an in-progress Encounter (the admission time)")
        )
        return None
    unit = None if current is None else _unit(resource, current, contained, errors, required=False)
    age, sex = _demographics(resource, contained, start, errors)
    return "admission", start, "period.start", {"unit": unit, "age": age, "sex": sex}


def _transfer(
    resource: FhirEncounter,
    current: int | None,
    contained: dict[str, Any],
    errors: list[FieldError],
) -> _Event | None:
    if current is None:
        errors.append(
            FieldError(
                "location",
                "a completed location but no active one: where the patient went is not stated",
            )
        )
        return None
    entry = resource.location[current]
    start = entry.period.start if entry.period else None
    if start is None:
        errors.append(
            FieldError(
                f"location[{current}].period.start",
                "required for a transfer (when the patient arrived)",
            )
        )
    unit = _unit(resource, current, contained, errors, required=True)
    if start is None or unit is None:
        return None
    return "transfer", start, f"location[{current}].period.start", {"unit": unit}


def _current_location(resource: FhirEncounter, errors: list[FieldError]) -> int | None:
    """Index of the location the patient is in now: the active entry; the last entry when no
    entry states a status; None when there is none."""
    active = [i for i, entry in enumerate(resource.location) if entry.status == "active"]
    if len(active) > 1:
        problem = f"{len(active)} active locations: the patient is in one"
        errors.append(FieldError("location", problem, active))
        return None
    if active:
        return active[0]
    if resource.location and all(entry.status is None for entry in resource.location):
        return len(resource.location) - 1
    return None


def _unit(
    resource: FhirEncounter,
    index: int,
    contained: dict[str, Any],
    errors: list[FieldError],
    *,
    required: bool,
) -> UnitKind | None:
    """The unit kind of location entry ``index`` (UNIT_CODES; specific kinds over "ward")."""
    entry = resource.location[index]
    field = f"location[{index}]"
    codings = list(entry.physicalType.coding) if entry.physicalType else []
    place = _referenced_location(entry, contained, field, errors)
    if place is not None:
        codings += [c for concept in place.type for c in concept.coding]
        codings += list(place.physicalType.coding) if place.physicalType else []
    kinds = {UNIT_CODES[(c.system, c.code)] for c in codings if (c.system, c.code) in UNIT_CODES}
    specific = kinds - {"ward"}
    if len(specific) > 1:
        errors.append(
            FieldError(
                f"{field}.physicalType",
                f"codings name different unit kinds ({', '.join(sorted(specific))})",
            )
        )
        return None
    if specific or kinds:
        return next(iter(specific or kinds))
    if required:
        errors.append(
            FieldError(
                f"{field}.physicalType",
                "no coding names a unit kind (ICU, CCU, PEDICU or PEDNICU in v3-RoleCode, SNOMED "
                f"309904001 or 225746001, location-physical-type wa, or {UNIT_KIND_SYSTEM})",
                [c.code for c in codings],
            )
        )
    return None


def _referenced_location(
    entry: EncounterLocation, contained: dict[str, Any], field: str, errors: list[FieldError]
) -> ContainedLocation | None:
    reference = entry.location.reference or ""
    if not reference.startswith("#"):
        return None
    place = contained.get(reference[1:])
    if not isinstance(place, ContainedLocation):
        errors.append(
            FieldError(f"{field}.location.reference", "names no contained Location", reference)
        )
        return None
    return place


def _contained(resource: FhirEncounter, errors: list[FieldError]) -> dict[str, Any]:
    """Contained Patients and Locations by id (other resource types are ignored)."""
    found: dict[str, Any] = {}
    for i, item in enumerate(resource.contained):
        resource_type = item.get("resourceType")
        adapter = _CONTAINED.get(resource_type) if isinstance(resource_type, str) else None
        if adapter is None:
            continue
        try:
            member = adapter.validate_python(item)
        except ValidationError as exc:
            errors.extend(from_validation_error(exc, prefix=f"contained[{i}]").errors)
            continue
        if member.id is None:  # nothing can reference it
            continue
        if isinstance(member, ContainedPatient) and member.id != resource.subject.patient_id:
            errors.append(
                FieldError(
                    f"contained[{i}].id",
                    f"a contained Patient that is not the subject ({resource.subject.patient_id}):"
                    " its age and sex would be another person's",
                    member.id,
                )
            )
            continue
        found[member.id] = member
    return found


def _demographics(
    resource: FhirEncounter,
    contained: dict[str, Any],
    admitted_at: datetime,
    errors: list[FieldError],
) -> tuple[float | None, Sex | None]:
    """Age at admission and sex from the contained Patient that is the subject, if any. A
    partial birthDate (a year, a month) gives no age: the day is not guessed."""
    patient = contained.get(resource.subject.patient_id)
    if not isinstance(patient, ContainedPatient):
        return None, None
    index = next(i for i, item in enumerate(resource.contained) if item.get("id") == patient.id)
    field = f"contained[{index}].birthDate"
    birth = _birth_date(patient.birthDate, field, errors)
    if birth is None:
        return None, patient.gender
    age = age_at(birth, admitted_at)
    problem = (
        FieldError(field, "bad date: after period.start (the admission)", patient.birthDate)
        if age < 0
        else age_error(age, field, patient.birthDate)
    )
    if problem is not None:
        errors.append(problem)
        return None, patient.gender
    return age, patient.gender


def _birth_date(text: str | None, field: str, errors: list[FieldError]) -> date | None:
    """A full birthDate; None for an absent or partial one, or a bad one (then in ``errors``)."""
    if text is None or _PARTIAL_DATE.fullmatch(text):
        return None
    try:
        if _FULL_DATE.fullmatch(text):
            return date.fromisoformat(text)
        raise ValueError("not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    except ValueError as exc:
        errors.append(FieldError(field, f"bad date: {exc}", text))
        return None
