"""How the engine lays a chunk of events out: stays, then patients by events.

A batch is scored patient by patient in one [P, K] layout (patient p's k-th event), so that
the encoder and NEWS2 run over all events at once and only the recurrence goes step by step
(worker.scoring.engine). Two things shape that layout:

* An encounter (admission, transfer, discharge) is a row like an observation — it sits
  between a patient's observations in arrival order and sets the context from there on — but
  it is not a step of the model: ``Block.steps`` marks the rows the LSTM steps on. An outcome
  is such a row too: it sets nothing the model reads, only what labels the scores
  (worker.scoring.labelling).
* A discharge ends the patient's stay: whatever follows it (a readmission under the same id,
  a late lab) starts from a fresh state, exactly as if it had arrived in the next batch, after
  the patient was released. ``stays`` splits a chunk at discharges so that each part is one
  stay per patient, applied one part after another; nearly every batch is one part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from schemas.encounter import Encounter
from schemas.observation import Observation
from worker.scoring.events import InputEvent



@dataclass(frozen=True, slots=True)
class Kinds:
    """What each event of a chunk is, as host arrays over its rows, found in one pass."""

    observation: np.ndarray  # [n] bool: a step of the model (else an encounter or an outcome)
    discharge: np.ndarray  # [n] bool
    encounter: np.ndarray  # [n] bool: an encounter (an outcome is neither this nor an observation)

    @classmethod
    def of(cls, events: Sequence[InputEvent]) -> Kinds:
        observation = np.ones(len(events), dtype=bool)
        discharge = np.zeros(len(events), dtype=bool)
        encounter = np.zeros(len(events), dtype=bool)
        for row, event in enumerate(events):
            if not isinstance(event.item, Observation):
                observation[row] = False
                encounter[row] = isinstance(event.item, Encounter)
                discharge[row] = encounter[row] and event.item.kind == "discharge"
        return cls(observation, discharge, encounter)


def stays(events: Sequence[InputEvent], kinds: Kinds) -> list[list[int]]:
    """The rows of ``events`` split into parts applied one after another: part i holds each
    patient's events after its i-th discharge of the chunk, up to and including the next one.

    Patients are independent, so part i of one patient and part i of another share a part;
    one patient's parts stay in order. Without discharges (nearly always) this is one part
    with every row, found without looking at the events."""
    if not kinds.discharge.any():
        return [list(range(len(events)))]
    parts: list[list[int]] = [[]]
    discharges: dict[str, int] = {}
    for row, event in enumerate(events):
        part = discharges.get(event.patient_id, 0)
        if part == len(parts):
            parts.append([])
        parts[part].append(row)
        if kinds.discharge[row]:
            discharges[event.patient_id] = part + 1
    return parts


@dataclass(frozen=True, slots=True)
class Block:
    """Some of a chunk's events laid out patient by patient: ``rows[p, :lengths[p]]`` are the
    rows (in the chunk) of ``patients[p]``'s events, in order; the rest of the row is padding.

    Patients are sorted by how many events they have, most first, so the patients with a k-th
    event are the first ``active[k]``: step k of the recurrence works on a prefix."""

    patients: list[str]
    rows: np.ndarray  # [P, K] int64, padded with the patient's last row
    lengths: np.ndarray  # [P] int64
    active: list[int]  # [K] non-increasing
    steps: np.ndarray | None  # [P, K] bool: an observation, not an encounter or padding; None: every event is one
    released: np.ndarray  # [P] bool: the patient's last event here is a discharge

    @classmethod
    def of(cls, events: Sequence[InputEvent], rows: Sequence[int], kinds: Kinds) -> Block:
        """The layout of ``events[row] for row in rows`` (one stay per patient: see ``stays``)."""
        by_patient: dict[str, list[int]] = {}
        for row in rows:
            by_patient.setdefault(events[row].patient_id, []).append(row)
        ordered = sorted(by_patient.items(), key=lambda item: -len(item[1]))  # stable: first seen first among equals
        lengths = np.array([len(r) for _, r in ordered], dtype=np.int64)
        layout = np.empty((len(ordered), int(lengths[0])), dtype=np.int64)
        for p, (_, patient_rows) in enumerate(ordered):
            layout[p, : len(patient_rows)] = patient_rows
            layout[p, len(patient_rows) :] = patient_rows[-1]
        active = [int((lengths > k).sum()) for k in range(layout.shape[1])]
        padding = np.arange(layout.shape[1]) >= lengths[:, None]
        steps = None if kinds.observation[layout].all() else kinds.observation[layout] & ~padding
        released = kinds.discharge[layout[np.arange(len(ordered)), lengths - 1]]
        return cls([pid for pid, _ in ordered], layout, lengths, active, steps, released)

    def is_step(self) -> np.ndarray:
        """[P, K] bool: the event there is a step of the model (padding included when every
        event is: the caller reads only real positions)."""
        return np.ones(self.rows.shape, dtype=bool) if self.steps is None else self.steps

    @property
    def padding(self) -> np.ndarray:
        """[P, K] bool: no event there."""
        return np.arange(self.rows.shape[1]) >= self.lengths[:, None]

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(patient, step) of every event in step-major order, the order of the recurrence's outputs."""
        patient = np.concatenate([np.arange(n) for n in self.active])
        step = np.repeat(np.arange(len(self.active)), self.active)
        return patient, step
