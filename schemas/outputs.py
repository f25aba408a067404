"""What vitalwatch publishes: risk-scores, alerts and dead-letters.

These are read by dashboards, paging systems and interface engines written in other
languages, so the field names are the contract (docs/contracts.md) and the JSON Schema
files are generated from these models. Unlike the input contracts they validate in lax mode:
a consumer reading them back from JSON gets datetimes from strings without ceremony.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
from datetime import datetime
from typing import Annotated, Literal, Sequence

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from schemas.errors import FieldError
from schemas.fields import EventId, PatientId

Level = Literal["none", "medium", "high"]
#: Alert levels in increasing severity; an alert is raised, escalated or resolved by moving
#: along this order.
LEVELS: tuple[Level, ...] = ("none", "medium", "high")

#: Highest possible NEWS2 total (3 points for six parameters, 2 for supplemental oxygen).
NEWS2_MAX = 20

#: Bytes of an offending message kept in its dead letter: aiokafka's producer refuses records
#: over 1 MB, so an oversize original cannot travel whole.
ORIGINAL_LIMIT = 64 * 1024


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Risk = Annotated[
    float, Field(ge=0.0, le=1.0, description="calibrated probability of deterioration")
]
ModelVersion = Annotated[str, Field(min_length=1, max_length=128)]


class RiskScoreV1(Output):
    """One per scored input event."""

    model_config = ConfigDict(title="risk-scores")

    event_id: EventId
    patient_id: PatientId
    observed_at: AwareDatetime
    scored_at: AwareDatetime
    risk: Risk
    news2: int = Field(ge=0, le=NEWS2_MAX, description="NEWS2 total")
    level: Level
    model_version: ModelVersion


class News2V1(Output):
    total: int = Field(ge=0, le=NEWS2_MAX)
    components: dict[str, int] = Field(description="points (0-3) per NEWS2 parameter")


class ReasonV1(Output):
    """A feature that drove the level, with the value the patient had: for a level the model
    set, its contribution to the risk (occlusion); for one the NEWS2 safety net set
    (``raised_by`` "news2"), a NEWS2 parameter that scored and its points."""

    variable: str = Field(min_length=1)
    value: float
    unit: str
    contribution: float


class AlertV1(Output):
    """A change of a patient's alert level (raised, escalated or resolved)."""

    model_config = ConfigDict(title="alerts")

    alert_id: str = Field(
        min_length=1, max_length=128, description="same input, same id: drop duplicates by it"
    )
    patient_id: PatientId
    level: Level
    previous_level: Level
    risk: Risk
    news2: News2V1
    reasons: list[ReasonV1]
    raised_by: Literal["model", "news2"] = Field(
        "model",
        description="what set the level: the model's risk, or NEWS2 >= 7 (the RCP emergency trigger) above it; "
        "the reasons then are the NEWS2 parameters that scored, with their points as contribution",
    )
    triggered_by: EventId
    observed_at: AwareDatetime
    raised_at: AwareDatetime
    model_version: ModelVersion

    @model_validator(mode="after")
    def _is_a_change(self) -> AlertV1:
        if self.level == self.previous_level:
            raise ValueError("level must differ from previous_level: an alert is a change")
        return self


class FieldErrorV1(Output):
    field: str
    problem: str
    value: JsonValue = None


class DeadLetterReason(Output):
    errors: list[FieldErrorV1] = Field(min_length=1)
    stage: str | None = Field(None, description="worker stage that refused the message")


class DeadLetterSource(Output):
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = None


class DeadLetterV1(Output):
    """A refused input message, what was wrong with it, and where it came from.

    The original travels as UTF-8 text when it is text, else base64 in ``original_b64``;
    either way only its first ORIGINAL_LIMIT bytes, with the size and digest of the whole.
    """

    model_config = ConfigDict(title="dead-letters")

    reason: DeadLetterReason
    source: DeadLetterSource
    original: str | None = None
    original_b64: str | None = None
    original_size: int = Field(ge=0)
    original_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    truncated: bool
    received_at: AwareDatetime
    worker: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_original(self) -> DeadLetterV1:
        if (self.original is None) == (self.original_b64 is None):
            raise ValueError("exactly one of original and original_b64 must be set")
        return self

    @classmethod
    def for_payload(
        cls,
        raw: bytes,
        *,
        errors: Sequence[FieldError],
        source: DeadLetterSource,
        received_at: datetime,
        worker: str,
        stage: str | None = None,
    ) -> DeadLetterV1:
        """Build the dead letter for ``raw``, keeping a bounded prefix of it."""
        truncated = len(raw) > ORIGINAL_LIMIT
        prefix = bytes(raw[:ORIGINAL_LIMIT])
        try:
            # Not final when truncated: a character cut in two at the limit is dropped, not
            # mistaken for binary content.
            text = codecs.getincrementaldecoder("utf-8")().decode(prefix, final=not truncated)
            original, original_b64 = text, None
        except UnicodeDecodeError:
            original, original_b64 = None, base64.b64encode(prefix).decode("ascii")
        return cls(
            reason=DeadLetterReason(
                errors=[FieldErrorV1(**e.to_dict()) for e in errors], stage=stage
            ),
            source=source,
            original=original,
            original_b64=original_b64,
            original_size=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
            truncated=truncated,
            received_at=received_at,
            worker=worker,
        )
