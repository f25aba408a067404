"""PatientSeries: simulated stays as the dense arrays training and evaluation read, and the labels."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from models.datasets.series import horizon_labels, series_from_observations, series_from_simulated
from models.datasets.simulator import simulate_patient
from schemas.encounter import Encounter
from schemas.observation import Observation
from schemas.variables import VARIABLE_INDEX, VARIABLES

HOUR = 3600.0
EVENT = 1_767_600_000.0


def test_horizon_labels_mark_events_from_horizon_before_the_clinical_event_on() -> None:
    ts = EVENT + np.array([-13, -12.0001, -12, -11, -1, 0, 0.5]) * HOUR
    assert horizon_labels(ts, EVENT, 12.0).tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert horizon_labels(ts, EVENT, 1.0).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert horizon_labels(ts, EVENT, 12.0).dtype == np.float32


def test_a_stay_without_an_event_has_no_positive_label() -> None:
    assert horizon_labels(np.arange(5.0) * HOUR, None, 12.0).tolist() == [0.0] * 5


def observation(event_id: str, hour: float, **values: float) -> Observation:
    return Observation(event_id, "bed-1", datetime.fromtimestamp(EVENT + hour * HOUR, timezone.utc), values)


def test_observations_are_stacked_in_time_order_with_nan_for_what_was_not_measured() -> None:
    observations = [
        observation("b", 2.0, heart_rate=90.0),
        observation("a", 1.0, heart_rate=80.0, lactate=2.5),
        observation("c", 2.0, resp_rate=20.0),  # same instant as "b": stays after it
    ]
    series = series_from_observations("bed-1", observations, event_at=EVENT + 10 * HOUR, horizon_hours=8.0)
    assert series.ts.tolist() == [EVENT + HOUR, EVENT + 2 * HOUR, EVENT + 2 * HOUR]
    assert series.values.shape == (3, len(VARIABLES)) and series.values.dtype == np.float32
    hr, rr, lactate = (series.values[:, VARIABLE_INDEX[n]].tolist() for n in ("heart_rate", "resp_rate", "lactate"))
    assert hr[:2] == [80.0, 90.0] and math.isnan(hr[2])
    assert rr[2] == 20.0 and all(math.isnan(v) for v in rr[:2])
    assert lactate[0] == 2.5
    assert int(np.isnan(series.values).sum()) == 3 * len(VARIABLES) - 4  # four values were measured
    assert series.labels.tolist() == [0.0, 1.0, 1.0] and series.event_at == EVENT + 10 * HOUR


@pytest.mark.parametrize("pattern", ["stable", "sepsis"])
def test_a_simulated_stay_becomes_one_row_per_event_with_values_decoded_to_canonical_units(pattern: str) -> None:
    patient = simulate_patient(f"bed-{pattern}", seed=21, pattern=pattern)
    series = series_from_simulated(patient, horizon_hours=12.0)

    assert series.patient_id == patient.patient_id
    assert series.ts.tolist() == [e.observed_ts for e in patient.events]
    for row, event in enumerate(patient.events):
        if event.topic == "vitals":
            for name in ("heart_rate", "resp_rate", "spo2", "sbp"):
                expected = event.payload.get(name, math.nan)
                assert series.values[row, VARIABLE_INDEX[name]] == pytest.approx(expected, nan_ok=True)
            if "on_oxygen" in event.payload:
                assert series.values[row, VARIABLE_INDEX["on_oxygen"]] == float(event.payload["on_oxygen"])
        else:
            for result in event.payload["results"]:
                if result["unit"] == "umol/L":  # creatinine sent in SI units arrives in mg/dL
                    assert series.values[row, VARIABLE_INDEX["creatinine"]] == pytest.approx(result["value"] / 88.4, rel=1e-3)
    if pattern == "stable":
        assert series.event_at is None and not series.labels.any()
    else:
        assert series.event_at == patient.deterioration_at.timestamp()
        assert series.labels.tolist() == horizon_labels(series.ts, series.event_at, 12.0).tolist()
        assert 0 < series.labels.sum() < len(series.labels)


def test_the_horizon_decides_how_many_events_are_positive() -> None:
    patient = simulate_patient("bed-resp", seed=22, pattern="respiratory")
    short, long = (series_from_simulated(patient, horizon_hours=h) for h in (4.0, 12.0))
    assert short.labels.sum() < long.labels.sum()
    assert np.array_equal(short.values, long.values, equal_nan=True)
    first = long.ts[np.argmax(long.labels)]
    assert first >= long.event_at - 12 * HOUR and (long.ts[long.ts < first] < long.event_at - 12 * HOUR).all()


def test_a_simulated_series_carries_its_admission_as_the_worker_decodes_it() -> None:
    patient = simulate_patient("bed-ctx", seed=23, pattern="sepsis")
    series = series_from_simulated(patient)
    admission = series.admission
    assert admission is not None and series.encounters[0] is admission
    assert (admission.kind, admission.unit, admission.occurred_ts) == ("admission", "ward", patient.admitted_at.timestamp())
    assert admission.age == patient.encounters[0].payload["age"]
    assert all(e.occurred_ts <= series.ts[-1] for e in series.encounters)  # nothing from after its last row


def test_encounters_after_the_last_row_are_not_the_series_context() -> None:
    admitted = Encounter("a", "bed-1", "admission", datetime.fromtimestamp(EVENT - HOUR, timezone.utc), unit="ward")
    moved = Encounter("t", "bed-1", "transfer", datetime.fromtimestamp(EVENT + 3 * HOUR, timezone.utc), unit="icu")
    observations = [observation("x", 2.0, heart_rate=90.0), observation("y", 1.0, heart_rate=80.0)]
    series = series_from_observations("bed-1", observations, None, encounters=[moved, admitted])
    assert series.encounters == (admitted,) and series.admission is admitted and series.icu_type is None
    assert series_from_observations("bed-1", [], None, encounters=[admitted]).encounters == ()
