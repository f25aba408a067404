"""outcomes.v1: a clinical event that happened to a patient, the truth the worker's scores are
judged against.

A site's surveillance (sepsis onset as adjudicated or by the site's rule), its rapid-response
and arrest logs, and its ADT feed know what happened and when; the worker knows what it
predicted. Joining the two on the live stream is what lets a site measure the model on its own
patients (schemas.scored_outcome). An outcome is an input event like any other: keyed by
patient, idempotent by ``event_id``, validated strictly and dead-lettered with the field named
when it is wrong.

No FHIR mapping: FHIR R4 has no one resource for "this outcome happened at this time" (sepsis
onset would be a ``Condition`` with ``onsetDateTime``, a rapid-response call a ``Procedure`` or
an ``Encounter``, a death ``Patient.deceasedDateTime``), and a mapping that guessed between
them would label scores on a guess. Deaths and ward -> ICU transfers come from the encounters
topic (FHIR ``Encounter`` included) without a record here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from schemas.errors import ContractError, FieldError, from_validation_error
from schemas.fields import EventId, PatientId
from schemas.inputs import Contract, wire_names
from schemas.scored_outcome import OUTCOME_KINDS, OutcomeKind
from schemas.timestamps import Rfc3339, future_error

#: Where the knowledge of the outcome comes from: a clinician's adjudication, the site's
#: automated rule (e.g. Sepsis-3 from orders and SOFA), the clinical record as charted, or the
#: encounters feed (a death, a transfer to intensive care).
OutcomeSource = Literal["adjudicated", "site_rule", "clinical_record", "encounter"]
OUTCOME_SOURCES: tuple[OutcomeSource, ...] = ("adjudicated", "site_rule", "clinical_record", "encounter")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A validated outcome event; ``occurred_ts`` is ``occurred_at`` as POSIX seconds."""

    event_id: str
    patient_id: str
    kind: OutcomeKind
    occurred_at: datetime
    source: OutcomeSource
    recorded_at: datetime | None = None
    occurred_ts: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_ts", self.occurred_at.timestamp())


class OutcomeV1(Contract):
    """outcomes.v1: one clinical event of one patient, when it occurred, and who says so."""

    model_config = ConfigDict(title="outcomes.v1")

    schema_: Literal["outcomes.v1"] | None = Field(None, alias="schema")
    event_id: EventId
    patient_id: PatientId
    kind: OutcomeKind = Field(description=f"one of {', '.join(OUTCOME_KINDS)}")
    occurred_at: Rfc3339 = Field(description="when it happened (RFC 3339 with offset), not when it was recorded")
    source: OutcomeSource = Field(description=f"one of {', '.join(OUTCOME_SOURCES)}")
    recorded_at: Rfc3339 | None = Field(None, description="when it was recorded (RFC 3339 with offset), if known")

    def to_outcome(self, *, now: float | None = None) -> Outcome:
        """The Outcome, or every problem found (the document's and the clock's) at once."""
        errors = [e for e in (future_error(self.occurred_at.timestamp(), now, "occurred_at"),) if e is not None]
        if self.recorded_at is not None and self.recorded_at < self.occurred_at:
            errors.append(FieldError(
                "recorded_at", "bad time: before occurred_at (an outcome is recorded after it happens)",
                self.recorded_at.isoformat(),
            ))
        if errors:
            raise ContractError(errors)
        recorded = None if self.recorded_at is None else self.recorded_at.astimezone(timezone.utc)
        return Outcome(
            self.event_id, self.patient_id, self.kind, self.occurred_at.astimezone(timezone.utc), self.source, recorded,
        )


_FIELDS = wire_names(OutcomeV1)


def outcome_from_v1(document: Any, *, now: float | None = None) -> Outcome:
    """Validate an outcomes.v1 document; ContractError naming every problem."""
    try:
        event = OutcomeV1.model_validate(document)
    except ValidationError as exc:
        raise from_validation_error(exc, known_fields=_FIELDS) from None
    return event.to_outcome(now=now)
