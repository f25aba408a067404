"""Labelled scores of a simulated cohort as the worker publishes them on scored-outcomes.

The cohort is scored offline with the checkpoint and labelled by the rule of
models.evaluation.labelled_report (positive when the outcome follows within the horizon, no
score after it), then written as ScoredOutcomeV1 records: what validate, evaluate --scored and
recalibrate read."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from models.checkpoint import LoadedModel
from models.datasets.series import series_from_simulated
from models.datasets.simulated_stay import SimulatedPatient
from models.datasets.simulator import simulate_cohort
from models.evaluation.cohort import score_cohort
from models.evaluation.labelled_report import LabelledScores, labelled_scores_of_cohort
from schemas.outputs import LEVELS
from schemas.scored_outcome import ScoredOutcomeV1, label_id


def simulated_labelled_scores(loaded: LoadedModel, patients: int, seed: int) -> LabelledScores:
    """A fresh simulated cohort scored and labelled offline."""
    horizon = float(loaded.manifest["horizon_hours"])
    cohort = score_cohort(loaded, [series_from_simulated(p, horizon) for p in simulate_cohort(patients, seed=seed)])
    return labelled_scores_of_cohort(cohort, loaded.manifest["alert_thresholds"])


def vitals_labelled_scores(loaded: LoadedModel, patients: Sequence[SimulatedPatient]) -> LabelledScores:
    """The stays' vitals alone (what a stream without labs sends), scored and labelled offline,
    each score under its event's id."""
    horizon = float(loaded.manifest["horizon_hours"])
    stays = [replace(p, events=[e for e in p.events if e.topic == "vitals"]) for p in patients]
    cohort = score_cohort(loaded, [series_from_simulated(p, horizon) for p in stays])
    ids = [  # series_from_observations orders rows by time, stably
        [stay.events[k].payload["event_id"] for k in np.argsort([e.observed_ts for e in stay.events], kind="stable")]
        for stay in stays
    ]
    return labelled_scores_of_cohort(cohort, loaded.manifest["alert_thresholds"], ids)


def records_of(scores: LabelledScores, model_version: str, role: str = "live", risk: np.ndarray | None = None) -> list[ScoredOutcomeV1]:
    """One record per labelled score (``risk`` in place of the scores' own when given)."""
    risks = scores.risk if risk is None else risk
    now = datetime.now(timezone.utc)
    records = []
    for k in range(scores.size):
        patient, event_id = scores.patient_ids[scores.patient[k]], str(scores.event_id[k])
        positive = bool(scores.label[k])
        records.append(
            ScoredOutcomeV1(
                label_id=label_id(model_version, role, event_id), patient_id=patient, event_id=event_id,
                observed_at=datetime.fromtimestamp(float(scores.observed_at[k]), timezone.utc), risk=float(risks[k]),
                level=LEVELS[int(scores.level[k])], news2=int(scores.news2[k]), model_version=model_version, role=role,
                horizon_h=scores.horizon_hours, label=positive, resolution="outcome" if positive else "horizon_passed",
                outcome_kind="sepsis_onset" if positive else None,
                outcome_at=datetime.fromtimestamp(float(scores.outcome_at[k]), timezone.utc) if positive else None,
                labelled_at=now,
            )
        )
    return records
