"""The engine's input: one decoded event and where it came from.

Its own module because the engine and the parts it lays a batch out with
(worker.scoring.layout, worker.scoring.context) all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.encounter import Encounter
from schemas.observation import Observation
from schemas.outcome import Outcome


@dataclass(slots=True)
class InputEvent:
    """One decoded input event — an observation to score, an encounter that changes the
    patient's context, or an outcome that labels the patient's scores — and where it came from."""

    item: Observation | Encounter | Outcome
    topic: str
    partition: int
    offset: int
    kafka_ts: float | None  # broker timestamp, POSIX seconds
    patient_id: str = field(init=False)  # the item's, copied once: the engine reads it several times per event
    event_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.patient_id = self.item.patient_id
        self.event_id = self.item.event_id
