"""What the worker learns about its own scores once the patient's course is known.

A score is labelled when its horizon has passed: positive when an outcome (sepsis onset,
unplanned ICU transfer, rapid-response call, cardiac arrest, death) followed it within the
model's horizon, negative when the horizon passed without one or the patient left alive first.
Each labelled score travels once on the ``scored-outcomes`` topic, a retained (not compacted)
log that ``vitalwatch validate`` and ``vitalwatch recalibrate`` read back; the record carries
NEWS2 of the same event, so the ward's own score is judged on the same patients and hours.

``label_id`` is deterministic (model version, role and scored event): a consumer drops
duplicates by it, and the worker never labels a score twice in effect.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field

from schemas.fields import EventId, PatientId
from schemas.outputs import NEWS2_MAX, Level, ModelVersion, Output, Risk

#: Clinical events that make the scores before them positives. Death and ward -> ICU transfers
#: also arrive on the encounters topic (a discharge that died, an unplanned transfer).
OutcomeKind = Literal["sepsis_onset", "icu_transfer", "rapid_response", "cardiac_arrest", "death"]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = (
    "sepsis_onset", "icu_transfer", "rapid_response", "cardiac_arrest", "death",
)

#: Why a score got its label: an outcome within the horizon (positive), or for a negative the
#: horizon passing quietly or the patient leaving alive before it passed.
Resolution = Literal["outcome", "horizon_passed", "discharged_alive"]

#: Which model scored: the live one (alerts) or the shadow beside it (never alerts).
Role = Literal["live", "shadow"]


class ScoredOutcomeV1(Output):
    """One labelled score: the prediction as published, and what happened after it."""

    model_config = ConfigDict(title="scored-outcomes")

    label_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="same score, same id: drop duplicates by it"
    )
    patient_id: PatientId
    event_id: EventId = Field(description="the scored input event (risk-scores' event_id)")
    observed_at: AwareDatetime = Field(description="when the scored observation was made")
    risk: Risk
    level: Level
    news2: int = Field(ge=0, le=NEWS2_MAX, description="NEWS2 total of the same event")
    model_version: ModelVersion
    role: Role = "live"
    horizon_h: float = Field(gt=0, description="the model's prediction horizon, hours")
    label: bool = Field(description="an outcome followed within horizon_h")
    resolution: Resolution
    outcome_kind: OutcomeKind | None = Field(None, description="set for positives")
    outcome_at: AwareDatetime | None = Field(None, description="when that outcome occurred")
    labelled_at: AwareDatetime


def label_id(model_version: str, role: str, event_id: str) -> str:
    """The deterministic id of a labelled score: one score of one model, labelled once."""
    digest = hashlib.sha256(f"{model_version}\x1f{role}\x1f{event_id}".encode()).hexdigest()
    return digest[:32]
