"""The encounter context — age, sex, admission time, current unit — at every event of a batch.

An admission sets all four (a field it does not state becomes unknown: the admission is the
authority on the stay it opens); a transfer sets the unit; an observation sets nothing; a
discharge ends the stay (the engine then resets the patient, see worker.scoring.layout). The
context at a patient's k-th event is therefore the latest value set at or before k, or the
one the patient had before the batch: a running "latest set" index (cummax), like the
encoder's carry-forward, computed for the whole [P, K] layout in a few tensor operations
rather than per event. The engine keeps the context after each patient's last event; the
shipped model does not read it, and the per-event context is what a model trained on it will
take as input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
import torch

from schemas.encounter import Encounter, sex_code, unit_code
from worker.scoring.events import InputEvent
from worker.scoring.slab import SlotState

#: The context columns of ``SlotState`` and which kind of event sets each.
ADMISSION_COLUMNS = ("age", "sex", "admitted_ts")
UNIT_COLUMN = "unit"
CONTEXT_COLUMNS = (*ADMISSION_COLUMNS, UNIT_COLUMN)


@dataclass(slots=True)
class ContextInputs:
    """What each event of a chunk sets, as device tensors over the chunk's rows [n]."""

    admits: torch.Tensor  # bool: an admission (sets every column)
    places: torch.Tensor  # bool: an admission or a transfer (sets the unit)
    age: torch.Tensor  # float32 years, NaN unknown
    sex: torch.Tensor  # int8 code, -1 unknown
    unit: torch.Tensor  # int8 code, -1 unknown
    admitted_ts: torch.Tensor  # float64 POSIX s, NaN unknown

    @classmethod
    def of(cls, events: Sequence[InputEvent], encounters: np.ndarray, device: torch.device) -> ContextInputs | None:
        """Host arrays filled at the rows ``encounters`` (the encounters' rows), then one copy
        each to ``device``; None when none of them sets anything (no admission or transfer):
        the context then stays what it was, at no cost."""
        n = len(events)
        admits, places = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        age, admitted_ts = np.full(n, math.nan, dtype=np.float32), np.full(n, math.nan)
        sex, unit = np.full(n, -1, dtype=np.int8), np.full(n, -1, dtype=np.int8)
        for row in encounters.tolist():
            encounter = cast(Encounter, events[row].item)
            if encounter.kind == "discharge":
                continue
            places[row], unit[row] = True, unit_code(encounter.unit)
            if encounter.kind == "admission":
                admits[row] = True
                age[row] = math.nan if encounter.age is None else encounter.age
                sex[row], admitted_ts[row] = sex_code(encounter.sex), encounter.occurred_ts

        if not places.any():
            return None

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        return cls(put(admits), put(places), put(age), put(sex), put(unit), put(admitted_ts))

    def at(self, rows: torch.Tensor, real: torch.Tensor, before: SlotState) -> dict[str, torch.Tensor]:
        """Each context column at every event of the [P, K] layout ``rows`` (``real``: [P, K]
        bool, not padding), starting from ``before``, the patients' state before the batch."""
        admitted, placed = _latest(self.admits[rows] & real), _latest(self.places[rows] & real)
        carried = {name: _pick(getattr(before, name), getattr(self, name)[rows], admitted) for name in ADMISSION_COLUMNS}
        carried[UNIT_COLUMN] = _pick(before.unit, self.unit[rows], placed)
        return carried


def _latest(sets: torch.Tensor) -> torch.Tensor:
    """[P, K] long: the latest k' <= k where ``sets`` [P, K], -1 none."""
    k = torch.arange(sets.shape[1], device=sets.device).expand_as(sets)
    return torch.where(sets, k, -1).cummax(dim=1).values


def _pick(initial: torch.Tensor, values: torch.Tensor, latest: torch.Tensor) -> torch.Tensor:
    """[P, K]: ``values`` at ``latest``, or ``initial`` [P] where it is -1."""
    return torch.where(latest >= 0, values.gather(1, latest.clamp(min=0)), initial.unsqueeze(1))
