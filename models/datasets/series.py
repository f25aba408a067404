"""One patient's observations as dense arrays: the common currency of training and evaluation.

The simulator, the PhysioNet PSV loader and later dataset adapters all end here, so the
trainer and the evaluator never care where data came from. Rows are events (one LSTM step
per event, as the worker scores them), columns are the catalogue variables in
``schemas.variables`` order, NaN where the event did not measure a variable. Beside them, the
stay's encounters (admission with age and sex, transfers) as the worker decodes them, so a
model can learn from the context the worker keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import orjson

from models.datasets.encounters import decoded
from schemas.decode import decode
from schemas.encounter import UNKNOWN, Encounter, sex_code
from schemas.observation import Observation
from schemas.variables import VARIABLE_INDEX, VARIABLES

if TYPE_CHECKING:  # the simulator pulls in torch; loaders of real data need neither
    from models.datasets.simulator import SimulatedPatient

#: Which ICU a stay was in, where the source says (PhysioNet 2019: Unit1 medical, Unit2 surgical).
IcuType = Literal["MICU", "SICU"]


@dataclass(frozen=True, slots=True)
class PatientSeries:
    """Event-aligned arrays for one stay.

    ``labels[t]`` is 1 when the event at ``ts[t]`` lies within the prediction horizon of the
    clinical event (or after it), 0 otherwise; ``event_at`` is None for patients who never
    deteriorated. ``encounters`` are the stay's admission and transfers (discharges too, where
    the stay continues past one) in time order, none after the last row: the context a model may
    read at ``ts[t]`` is what happened at or before it. ``icu_type`` names the ICU where a source
    says which.
    """

    patient_id: str
    ts: np.ndarray  # float64 [T], POSIX seconds, non-decreasing
    values: np.ndarray  # float32 [T, V], NaN = not measured at this event
    labels: np.ndarray  # float32 [T]
    event_at: float | None
    encounters: tuple[Encounter, ...] = ()
    icu_type: IcuType | None = None

    @property
    def admission(self) -> Encounter | None:
        """The admission (age, sex, admitted at, first unit), None when the source has none."""
        return next((e for e in self.encounters if e.kind == "admission"), None)

    def context(self) -> RowContext:
        """The encounter context in force at each row: the latest admission at or before it
        (its age, sex and time), as the worker holds it when it scores that event."""
        age = np.full(len(self.ts), np.nan, dtype=np.float32)
        sex = np.full(len(self.ts), UNKNOWN, dtype=np.int8)
        admitted = np.full(len(self.ts), np.nan)
        for encounter in (e for e in self.encounters if e.kind == "admission"):
            now = self.ts >= encounter.occurred_ts
            age[now] = np.nan if encounter.age is None else encounter.age
            sex[now] = sex_code(encounter.sex)
            admitted[now] = encounter.occurred_ts
        return RowContext(age, sex, admitted)


@dataclass(frozen=True, slots=True)
class RowContext:
    """A series' encounter context per row (models.features.Context on the host)."""

    age: np.ndarray  # float32 [T] years, NaN unknown
    sex: np.ndarray  # int8 [T] schemas.encounter code, -1 unknown
    admitted: np.ndarray  # float64 [T] POSIX s, NaN unknown


def horizon_labels(ts: np.ndarray, event_at: float | None, horizon_hours: float) -> np.ndarray:
    """1 where ``ts >= event_at - horizon`` ("deterioration within the horizon"), else 0."""
    if event_at is None:
        return np.zeros(ts.shape, dtype=np.float32)
    return (ts >= event_at - horizon_hours * 3600.0).astype(np.float32)


def series_from_observations(
    patient_id: str,
    observations: Sequence[Observation],
    event_at: float | None,
    horizon_hours: float = 12.0,
    encounters: Sequence[Encounter] = (),
) -> PatientSeries:
    """Stack decoded Observations into a PatientSeries, in time order (stable for ties), with
    the ``encounters`` up to its last row."""
    ts = np.fromiter((o.observed_ts for o in observations), dtype=np.float64, count=len(observations))
    counts = np.fromiter((len(o.values) for o in observations), dtype=np.int64, count=len(observations))
    columns = [VARIABLE_INDEX[name] for o in observations for name in o.values]
    cells = [value for o in observations for value in o.values.values()]
    values = np.full((len(observations), len(VARIABLES)), np.nan, dtype=np.float32)
    values[np.repeat(np.arange(len(observations)), counts), columns] = cells
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    labels = horizon_labels(ts, event_at, horizon_hours)
    return PatientSeries(patient_id, ts, values, labels, event_at, context_until(encounters, ts))


def context_until(encounters: Sequence[Encounter], ts: np.ndarray) -> tuple[Encounter, ...]:
    """``encounters`` that happened by the last of ``ts``, in time order (stable for ties)."""
    end = ts[-1] if len(ts) else -np.inf
    return tuple(sorted((e for e in encounters if e.occurred_ts <= end), key=lambda e: e.occurred_ts))


def series_from_simulated(patient: "SimulatedPatient", horizon_hours: float = 12.0) -> PatientSeries:
    """A simulated stay as a PatientSeries, every payload decoded through the one validation path.

    Going through ``schemas.decode`` rather than reading the payload dicts means training sees
    exactly what the worker sees (unit conversions, LOINC mapping, rounding), and a simulator
    that drifted from the contract fails loudly here instead of training on it.
    """
    observations = [obs for e in patient.events for obs in decode(e.topic, orjson.dumps(e.payload))]
    event_at = None if patient.deterioration_at is None else patient.deterioration_at.timestamp()
    context = [decoded(e.payload) for e in patient.encounters]
    return series_from_observations(patient.patient_id, observations, event_at, horizon_hours, context)
