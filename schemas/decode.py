"""The one validation path: raw Kafka bytes in, canonical Observations (or Encounters, or
Outcomes) or a ContractError out.

The worker, the tests and any replay tool call this and nothing else, so a message is judged
the same way everywhere. Bad input raises ContractError and nothing else, whatever the bytes:
the worker relies on that to dead-letter one message without stopping the partition.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import orjson
from pydantic import ValidationError

from schemas.encounter import Encounter
from schemas.encounter_inputs import encounter_from_v1
from schemas.errors import VALUE_PREVIEW_CHARS, ContractError, from_validation_error
from schemas.fhir import FHIR_DOCUMENT, RESOURCE_TYPES, observations_from_fhir
from schemas.fhir_encounter import encounter_from_fhir
from schemas.inputs import LabResult, LabsV1, VitalsV1, wire_names
from schemas.observation import Observation
from schemas.outcome import Outcome, outcome_from_v1

ObservationKind = Literal["vitals", "labs", "fhir"]
Kind = Literal["vitals", "labs", "fhir", "encounters", "outcomes"]
KINDS: tuple[Kind, ...] = ("vitals", "labs", "fhir", "encounters", "outcomes")
Decoded = Observation | Encounter | Outcome

DEFAULT_MAX_BYTES = 1_000_000


@overload
def decode(
    kind: ObservationKind, raw: bytes, *, max_bytes: int = ..., now: float | None = ...
) -> list[Observation]: ...


@overload
def decode(
    kind: Literal["encounters"], raw: bytes, *, max_bytes: int = ..., now: float | None = ...
) -> list[Encounter]: ...


@overload
def decode(
    kind: Literal["outcomes"], raw: bytes, *, max_bytes: int = ..., now: float | None = ...
) -> list[Outcome]: ...


@overload
def decode(
    kind: Kind, raw: bytes, *, max_bytes: int = ..., now: float | None = ...
) -> list[Observation] | list[Encounter] | list[Outcome]: ...


def decode(
    kind: Kind, raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, now: float | None = None
) -> list[Observation] | list[Encounter] | list[Outcome]:
    """Validate one message of ``kind`` and return its Observations (one for vitals and labs,
    one per (patient, instant) for FHIR) or, for ``encounters``, its one Encounter (a FHIR
    Encounter when the document has a ``resourceType``, else encounters.v1), or for
    ``outcomes`` its one Outcome (outcomes.v1).

    ``now`` (POSIX seconds) enables the future-timestamp check; leave it None to replay
    history. Raises ContractError for any bad input; ValueError only for an unknown ``kind``,
    which is a programming error, not bad input.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if len(raw) > max_bytes:
        raise ContractError.single(
            "$", f"payload is {len(raw)} bytes, over the limit of {max_bytes} bytes", len(raw)
        )
    document = _parse(raw)
    if kind == "fhir":
        return _fhir(document, bytes(raw), now)
    if kind == "encounters":
        return [_encounter(document, bytes(raw), now)]
    if kind == "outcomes":
        return [outcome_from_v1(document, now=now)]
    return [_native(kind, document).to_observation(now=now)]


#: Native contracts with the names their unknown-field hints choose from.
_NATIVE: dict[str, tuple[type[VitalsV1] | type[LabsV1], frozenset[str]]] = {
    "vitals": (VitalsV1, wire_names(VitalsV1)),
    "labs": (LabsV1, wire_names(LabsV1, LabResult)),
}


def _native(kind: ObservationKind, document: Any) -> VitalsV1 | LabsV1:
    model, names = _NATIVE[kind]
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise from_validation_error(exc, known_fields=names) from None


def _fhir(document: Any, raw: bytes, now: float | None) -> list[Observation]:
    try:
        resource = FHIR_DOCUMENT.validate_python(document)
    except ValidationError as exc:
        raise from_validation_error(exc, union_tags=RESOURCE_TYPES) from None
    return observations_from_fhir(resource, raw=raw, now=now)


def _encounter(document: Any, raw: bytes, now: float | None) -> Encounter:
    if isinstance(document, dict) and "resourceType" in document:
        return encounter_from_fhir(document, raw=raw, now=now)
    return encounter_from_v1(document, now=now)


def _parse(raw: bytes) -> Any:
    """orjson: several times faster than the stdlib, strict RFC 8259 (no NaN/Infinity
    literals, no lone surrogates) and depth-limited, so hostile nesting fails cleanly."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        preview = bytes(raw[:VALUE_PREVIEW_CHARS]).decode("utf-8", "replace")
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            problem = f"invalid UTF-8: {bad.reason} at byte {bad.start}"
        else:
            problem = f"malformed JSON: {exc}"
        raise ContractError.single("$", problem, preview) from None
