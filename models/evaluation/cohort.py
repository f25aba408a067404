"""Cohort evaluation: the model against NEWS2 on the same events, as a ward would meet them.

Every event of every stay is scored twice — by the model (calibrated risk, full history
through ``forward``) and by NEWS2 on the patient's carried-forward vitals, exactly as the
worker charts it: the latest value of each parameter observed within 24 h, else 0 points.
An event's label is "deterioration within the horizon" (``PatientSeries.labels``); events after
the clinical event are excluded (nobody can be warned any more).

Reported per scorer:

* threshold-free: AUROC, AUPRC (and, for the model, the expected calibration error over ten
  equal-width bins — NEWS2 is a points score, not a probability);
* at an operating point (the model's medium and high alert thresholds from its manifest,
  ``model`` and ``model_high``; NEWS2 >= 5, the RCP's urgent-response trigger, and >= 7, its
  emergency trigger): event-level sensitivity, specificity, precision and F1 of
  ``score >= threshold``;
* alert behaviour: an alert is the start of a run of "alerting" events per stay, a run ending
  when the score falls below ``clear_ratio`` x threshold (the worker's hysteresis for the
  model, 0.8 for medium and 0.85 for high; none for NEWS2's integer points). Alerts per patient-day count them over the
  observed time of all stays; the lead time of a deteriorating stay is the time from its
  first alert inside the horizon window to the clinical event (median over detected stays,
  with the fraction detected beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from models.checkpoint import LoadedModel
from models.evaluation.metrics import auprc, auroc, expected_calibration_error, operating_point
from models.news2 import news2_components
from models.datasets.series import PatientSeries
from models.training.train import predict_series, scored_mask

#: NEWS2 uses a parameter's latest value while it is at most this old (the worker's default).
NEWS2_CARRY_FORWARD_S = 24 * 3600.0
#: The worker's alert policy clears medium under 0.8 x its threshold and high under 0.85 x.
MODEL_CLEAR_RATIO = 0.8
MODEL_HIGH_CLEAR_RATIO = 0.85
NEWS2_TRIGGERS = {"news2_5": 5, "news2_7": 7}
_DAY_S = 86400.0


@dataclass(slots=True)
class CohortScores:
    """Per-stay scores (all events) and what evaluation needs to judge them."""

    series: list[PatientSeries]
    risk: list[np.ndarray]
    news2: list[np.ndarray]
    horizon_hours: float

    def scored(self, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Labels and scores of the evaluated events of all stays, concatenated."""
        masks = [scored_mask(s) for s in self.series]
        labels = np.concatenate([s.labels[m] for s, m in zip(self.series, masks)]).astype(bool)
        return labels, np.concatenate([score[m] for score, m in zip(scores, masks)]).astype(np.float64)


def news2_per_event(series: PatientSeries, carry_forward_s: float = NEWS2_CARRY_FORWARD_S) -> np.ndarray:
    """NEWS2 total at every event from the values carried forward (within ``carry_forward_s``)."""
    seen = ~np.isnan(series.values)
    rows = np.arange(len(series.ts))[:, None]
    last_row = np.maximum.accumulate(np.where(seen, rows, -1), axis=0)
    columns = np.arange(series.values.shape[1])
    carried = series.values[np.maximum(last_row, 0), columns]
    age = series.ts[:, None] - series.ts[np.maximum(last_row, 0)]
    current = np.where((last_row >= 0) & (age <= carry_forward_s), carried, np.nan)
    return news2_components(torch.from_numpy(current)).sum(dim=1).numpy().astype(np.float64)


def score_cohort(loaded: LoadedModel, series: Sequence[PatientSeries]) -> CohortScores:
    """Model risk and NEWS2 for every event of ``series``."""
    series = list(series)
    return CohortScores(
        series=series,
        risk=predict_series(loaded, None, series),
        news2=[news2_per_event(s) for s in series],
        horizon_hours=float(loaded.manifest.get("horizon_hours", 12.0)),
    )


def alert_state(scores: np.ndarray, threshold: float, clear_below: float) -> np.ndarray:
    """Bool per event of one stay: alerting. It starts at ``score >= threshold`` and holds
    until ``score < clear_below`` (<= threshold), so a score hovering at the threshold does
    not page on every other event."""
    raised = scores >= threshold
    decisive = raised | (scores < clear_below)
    last = np.maximum.accumulate(np.where(decisive, np.arange(scores.size), -1))
    return (last >= 0) & raised[np.maximum(last, 0)]


def alert_behaviour(cohort: CohortScores, scores: list[np.ndarray], threshold: float, clear_ratio: float) -> dict[str, float | None]:
    """Alerts per patient-day, median lead time (h) from the first alerting event inside the
    horizon window to the clinical event, and the fraction of deteriorating stays so warned."""
    alerts, days, leads, deteriorating = 0, 0.0, [], 0
    horizon_s = cohort.horizon_hours * 3600.0
    for s, score in zip(cohort.series, scores):
        m = scored_mask(s)
        if not m.any():
            continue
        ts = s.ts[m]
        alerting = alert_state(score[m], threshold, clear_ratio * threshold)
        alerts += int(np.sum(alerting & ~np.r_[False, alerting[:-1]]))
        days += (ts[-1] - ts[0]) / _DAY_S
        if s.event_at is not None:
            deteriorating += 1
            warned = alerting & (ts >= s.event_at - horizon_s)
            if warned.any():
                leads.append((s.event_at - ts[np.argmax(warned)]) / 3600.0)
    return {
        "alerts_per_patient_day": alerts / days if days else None,
        "median_lead_time_h": float(np.median(leads)) if leads else None,
        "detected_fraction": len(leads) / deteriorating if deteriorating else None,
    }


def evaluate(cohort: CohortScores, thresholds: dict[str, float]) -> dict[str, Any]:
    """The evaluation report: {"cohort", "model", "model_high", "news2", "news2_5", "news2_7"}
    (JSON-ready)."""
    labels, risk = cohort.scored(cohort.risk)
    _, news2 = cohort.scored(cohort.news2)
    medium, high = float(thresholds["medium"]), float(thresholds["high"])
    model = {
        "auroc": auroc(labels, risk),
        "auprc": auprc(labels, risk),
        "ece": expected_calibration_error(labels, risk),
        "threshold": medium,
        **_operating(labels, risk >= medium),
        **alert_behaviour(cohort, cohort.risk, medium, MODEL_CLEAR_RATIO),
    }
    model_high = {
        "threshold": high,
        **_operating(labels, risk >= high),
        **alert_behaviour(cohort, cohort.risk, high, MODEL_HIGH_CLEAR_RATIO),
    }
    report: dict[str, Any] = {
        "cohort": {
            "patients": len(cohort.series),
            "deteriorating": sum(s.event_at is not None for s in cohort.series),
            "events": int(labels.size),
            "positive_events": int(labels.sum()),
            "horizon_hours": cohort.horizon_hours,
        },
        "model": model,
        "model_high": model_high,
        "news2": {"auroc": auroc(labels, news2), "auprc": auprc(labels, news2)},
    }
    for name, trigger in NEWS2_TRIGGERS.items():
        report[name] = {
            "threshold": trigger,
            **_operating(labels, news2 >= trigger),
            **alert_behaviour(cohort, cohort.news2, trigger, 1.0),
        }
    return report


def _operating(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    point = operating_point(labels, flagged)
    return {"sensitivity": point.sensitivity, "specificity": point.specificity, "precision": point.precision, "f1": point.f1}
