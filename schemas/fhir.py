"""FHIR R4 Observation and Bundle input, mapped onto the same Observation as vitals.v1/labs.v1.

Only the subset an early-warning score needs is modelled; every other FHIR element is
ignored (FHIR resources legitimately carry dozens). What is modelled is checked as strictly
as the native contracts: LOINC-coded, UCUM quantities, a Patient subject, an instant with an
offset, a usable status. Observations of one Bundle taken of one patient at one instant
become one Observation, as a monitor's simultaneous readings do on the vitals topic.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timezone
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

from schemas.canonical import Measurements, derive_on_oxygen
from schemas.errors import ContractError, FieldError, dotted_path
from schemas.fields import EventId
from schemas.observation import Observation
from schemas.timestamps import Rfc3339, future_error
from schemas.units import CODE_UNITS
from schemas.variables import BY_LOINC, LAB_BY_LOINC, Variable

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORIES = ("vital-signs", "laboratory")

#: Panels whose values sit in ``component``: the FHIR blood-pressure profile (85354-9) and
#: the older systolic-and-diastolic code some device gateways still send (55284-4).
PANELS = frozenset({"85354-9", "55284-4"})

_PATIENT_REFERENCE = re.compile(
    r"^(?:https?://\S+/)?Patient/([A-Za-z0-9._:-]{1,64})(?:/_history/\S+)?$", re.ASCII
)


class FhirElement(BaseModel):
    """Strict types, unknown FHIR elements ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class Coding(FhirElement):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(FhirElement):
    coding: list[Coding] = []
    text: str | None = None


class Quantity(FhirElement):
    """A UCUM quantity: ``code`` is what is converted; ``unit`` is display text only."""

    value: float
    unit: str | None = None
    system: Literal["http://unitsofmeasure.org"]
    code: str


class PatientReference(FhirElement):
    reference: str = Field(json_schema_extra={"pattern": _PATIENT_REFERENCE.pattern})

    @field_validator("reference")
    @classmethod
    def _names_a_patient(cls, reference: str) -> str:
        if _PATIENT_REFERENCE.fullmatch(reference) is None:
            raise PydanticCustomError(
                "patient_reference",
                "must be 'Patient/<id>' with an id of 1–64 characters [A-Za-z0-9._:-]",
            )
        return reference

    @property
    def patient_id(self) -> str:
        return _PATIENT_REFERENCE.fullmatch(self.reference).group(1)  # type: ignore[union-attr]


class Component(FhirElement):
    code: CodeableConcept
    valueQuantity: Quantity | None = None


class FhirObservation(FhirElement):
    """FHIR R4 Observation (vital-signs or laboratory).

    ``status`` may be absent (simple producers omit it), but a cancelled or entered-in-error
    observation has no value a score may use, so those statuses are refused.
    """

    model_config = ConfigDict(title="Observation")

    resourceType: Literal["Observation"]
    id: EventId | None = None
    status: Literal["preliminary", "final", "amended", "corrected"] | None = None
    category: list[CodeableConcept] = Field(min_length=1)
    code: CodeableConcept
    subject: PatientReference
    effectiveDateTime: Rfc3339 = Field(description="RFC 3339 date-time with offset")
    valueQuantity: Quantity | None = None
    component: list[Component] = []

    @field_validator("category")
    @classmethod
    def _vital_or_lab(cls, category: list[CodeableConcept]) -> list[CodeableConcept]:
        for concept in category:
            for coding in concept.coding:
                if coding.system == OBSERVATION_CATEGORY and coding.code in CATEGORIES:
                    return category
        raise PydanticCustomError(
            "category",
            "must include a coding {system} with code vital-signs or laboratory",
            {"system": OBSERVATION_CATEGORY},
        )


class MessageHeader(FhirElement):
    """Only its presence matters: it opens a message Bundle."""

    resourceType: Literal["MessageHeader"]


class BundleEntry(FhirElement):
    fullUrl: str | None = None
    resource: Annotated[Union[FhirObservation, MessageHeader], Field(discriminator="resourceType")]


class FhirBundle(FhirElement):
    model_config = ConfigDict(title="Bundle")

    resourceType: Literal["Bundle"]
    id: str | None = Field(None, min_length=1, max_length=64)
    type: Literal["collection", "transaction", "batch", "message"]
    entry: list[BundleEntry] = Field(min_length=1)


#: Tags of the discriminated unions below; pydantic puts them in error locations.
RESOURCE_TYPES = frozenset({"Observation", "Bundle", "MessageHeader"})

FhirDocument = Annotated[Union[FhirObservation, FhirBundle], Field(discriminator="resourceType")]
FHIR_DOCUMENT: TypeAdapter[FhirObservation | FhirBundle] = TypeAdapter(FhirDocument)


def observations_from_fhir(
    document: FhirObservation | FhirBundle, *, raw: bytes, now: float | None = None
) -> list[Observation]:
    """Map a validated FHIR document onto Observations, grouped by (patient, instant).

    A group's event_id is its first resource's ``id``; a resource without one gets the Bundle
    id (or, lacking that, the payload's SHA-256) plus its entry index, so a redelivered
    message always yields the same ids.
    """
    errors: list[FieldError] = []
    groups: dict[tuple[str, float], tuple[str, FhirObservation, Measurements]] = {}
    for resource, index in _members(document, errors):
        prefix = "" if index is None else f"entry[{index}].resource"
        key = (resource.subject.patient_id, resource.effectiveDateTime.timestamp())
        if key not in groups:
            event_id = resource.id or _fallback_id(document, raw, index)
            groups[key] = (event_id, resource, Measurements(errors))
        _measure(resource, prefix, groups[key][2], errors)
        future = future_error(key[1], now, dotted_path(("effectiveDateTime",), prefix))
        if future is not None:
            errors.append(future)
    if not groups and not errors:
        errors.append(FieldError("entry", "contains no Observation", None))
    if errors:
        raise ContractError(errors)
    for _, _, m in groups.values():
        derive_on_oxygen(m.values)
    return [
        Observation(
            event_id,
            first.subject.patient_id,
            first.effectiveDateTime.astimezone(timezone.utc),
            m.values,
        )
        for event_id, first, m in groups.values()
    ]


def _members(
    document: FhirObservation | FhirBundle, errors: list[FieldError]
) -> list[tuple[FhirObservation, int | None]]:
    """Each Observation in ``document`` with its Bundle entry index (None: not in a Bundle)."""
    if isinstance(document, FhirObservation):
        return [(document, None)]
    members = []
    for i, entry in enumerate(document.entry):
        if isinstance(entry.resource, FhirObservation):
            members.append((entry.resource, i))
        elif i != 0 or document.type != "message":
            errors.append(
                FieldError(
                    f"entry[{i}].resource.resourceType",
                    "MessageHeader is only allowed as the first entry of a message Bundle",
                    "MessageHeader",
                )
            )
    return members


def _fallback_id(document: FhirObservation | FhirBundle, raw: bytes, index: int | None) -> str:
    if isinstance(document, FhirBundle) and document.id:
        base = document.id
    else:
        base = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return base if index is None else f"{base}#{index}"


def _measure(
    resource: FhirObservation, prefix: str, measurements: Measurements, errors: list[FieldError]
) -> None:
    """Add the resource's value, or its panel's component values, to ``measurements``."""
    codes = LAB_BY_LOINC if _is_laboratory(resource) else BY_LOINC
    if not any(c.system == LOINC and c.code in PANELS for c in resource.code.coding):
        _add_quantity(resource.code, resource.valueQuantity, prefix, measurements, errors, codes)
        return
    if not resource.component:
        errors.append(
            FieldError(dotted_path(("component",), prefix), "required for a panel", None)
        )
    for j, component in enumerate(resource.component):
        component_prefix = dotted_path(("component", j), prefix)
        _add_quantity(
            component.code, component.valueQuantity, component_prefix, measurements, errors, codes
        )


def _is_laboratory(resource: FhirObservation) -> bool:
    """A laboratory (and not also vital-signs) Observation: its shared LOINC codes name labs."""
    categories = {
        coding.code
        for concept in resource.category
        for coding in concept.coding
        if coding.system == OBSERVATION_CATEGORY
    }
    return "laboratory" in categories and "vital-signs" not in categories


def _add_quantity(
    code: CodeableConcept,
    quantity: Quantity | None,
    prefix: str,
    measurements: Measurements,
    errors: list[FieldError],
    codes: dict[str, Variable],
) -> None:
    try:
        variable, loinc = _variable(code, dotted_path(("code",), prefix), codes)
    except ContractError as exc:
        errors.extend(exc.errors)
        return
    if quantity is None:
        errors.append(
            FieldError(dotted_path(("valueQuantity",), prefix), "required field is missing", None)
        )
        return
    measurements.add(
        variable,
        quantity.value,
        field=dotted_path(("valueQuantity", "value"), prefix),
        unit=quantity.code,
        unit_field=dotted_path(("valueQuantity", "code"), prefix),
        code=loinc,
    )


def _variable(
    concept: CodeableConcept, field: str, codes: dict[str, Variable]
) -> tuple[Variable, str]:
    """The catalogue variable a LOINC-coded concept names (in ``codes``, the vital-signs or the
    laboratory reading of a shared code), and the LOINC code that decides its units (one in
    schemas.units.CODE_UNITS when the concept carries one). Codings in other systems are
    ignored; LOINC codings that disagree, or that name nothing vitalwatch knows, are errors."""
    loinc = [(i, c.code) for i, c in enumerate(concept.coding) if c.system == LOINC and c.code]
    if not loinc:
        raise ContractError.single(
            f"{field}.coding", f"no LOINC coding (system {LOINC})", [c.code for c in concept.coding]
        )
    found = {codes[code].name: codes[code] for _, code in loinc if code in codes}
    if len(found) == 1:
        known = [code for _, code in loinc if code in codes]
        restricted = [code for code in known if code in CODE_UNITS]
        return next(iter(found.values())), (restricted or known)[0]
    if found:
        raise ContractError.single(
            f"{field}.coding",
            f"LOINC codings name different variables ({', '.join(found)})",
            [code for _, code in loinc],
        )
    i, code = loinc[0]
    raise ContractError.single(
        f"{field}.coding[{i}].code", f"LOINC code '{code}' is not a variable vitalwatch uses", code
    )
