"""The gradient-boosted-trees baseline: what a standard tabular model makes of the same hours.

An LSTM that does not beat trees on tabular hours has to say so, so the evaluation trains
scikit-learn's ``HistGradientBoostingClassifier`` (an evaluation extra, never a worker
dependency) on the checkpoint's own training stays and judges it on the same test hours.
Features per hour, from the same series the model reads (``hour_features``):

* for each catalogue variable the checkpoint reads: its latest value (NaN when never
  measured: the trees route missing values themselves), hours since it was measured (capped at
  ``SINCE_CAP_H``, the cap for never), how many times it was measured so far;
* hours since admission (since the first event when no admission is known), age, sex.

The target is the hour's SepsisLabel, over the hours the evaluation scores (after the first
event, up to onset). Early stopping uses the validation stays' hours; the alert thresholds are
set there too, at the specificities the checkpoint's recipe uses for its own (0.90 medium,
0.97 high by default). When the training hours exceed ``MAX_TRAINING_HOURS`` the negative
hours are subsampled (seeded, every positive kept) and weighted by the inverse of the kept
share, so predicted probabilities stay calibrated while the fit stays within a couple of
minutes on two cores. Columns that are NaN on every training hour are dropped (a variable the
data never measures; scikit-learn's binning cannot take an all-NaN column). Deterministic
for a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from models.datasets.series import PatientSeries
from models.evaluation.hour_grid import Carried
from models.evaluation.metrics import threshold_for_specificity
from schemas.encounter import UNKNOWN, sex_code

#: Hours since a variable was measured are capped here (also the value for never measured).
SINCE_CAP_H = 48.0
#: Training hours above which negative hours are subsampled.
MAX_TRAINING_HOURS = 400_000
#: OpenMP threads for fitting and predicting. One: on the shared 2-core development machine a
#: second thread made a 330,000-hour fit 1.6x slower (10.1 s vs 6.2 s for 50 rounds) and the
#: tests' small fits 6x slower, the team spinning while it waits for a core.
THREADS = 1
#: Boosting settings: the library's defaults but for more rounds, larger leaves and some L2,
#: stopped when the validation loss has not improved for 15 rounds.
PARAMETERS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 400,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "n_iter_no_change": 15,
}
_HOUR_S = 3600.0


def feature_names(variables: Sequence[str]) -> list[str]:
    """Column names of ``hour_features`` for ``variables``, in order."""
    per_variable = [f"{name}{suffix}" for name in variables for suffix in ("", "_hours_since", "_count")]
    return [*per_variable, "hours_since_admission", "age", "sex"]


def hour_features(carried: Carried, grid_ts: np.ndarray, series: PatientSeries | None) -> np.ndarray:
    """Features at each hour (float32 [H, 3C + 3]) from what was known then (``carried``,
    for the C variables the model reads) and the stay's admission."""
    hours = len(grid_ts)
    per_variable = np.stack(
        [carried.values, np.minimum(carried.age_h, SINCE_CAP_H), carried.counts.astype(np.float64)], axis=2
    ).reshape(hours, -1)
    admission = series.admission if series is not None else None
    if admission is not None:
        since = (grid_ts - admission.occurred_ts) / _HOUR_S
    elif series is not None and len(series.ts):
        since = (grid_ts - series.ts[0]) / _HOUR_S
    else:
        since = np.full(hours, np.nan)
    age = admission.age if admission is not None and admission.age is not None else np.nan
    code = sex_code(admission.sex) if admission is not None else UNKNOWN
    sex = np.nan if code == UNKNOWN else float(code)
    context = np.column_stack([since, np.full(hours, age), np.full(hours, sex)])
    return np.hstack([per_variable, context]).astype(np.float32)


@dataclass(slots=True)
class TreesBaseline:
    """A fitted baseline: the classifier, the feature columns it reads, its alert thresholds
    and how it was fitted (JSON-ready)."""

    classifier: HistGradientBoostingClassifier
    columns: np.ndarray
    thresholds: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(SepsisLabel) per row of ``features`` (all ``feature_names`` columns)."""
        if not len(features):
            return np.empty(0)
        with threadpool_limits(THREADS, user_api="openmp"):
            return self.classifier.predict_proba(features[:, self.columns])[:, 1].astype(np.float64)


def fit_trees(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    names: Sequence[str],
    *,
    specificities: Mapping[str, float],
    seed: int = 0,
    max_training_hours: int = MAX_TRAINING_HOURS,
) -> TreesBaseline:
    """Fit on ``train`` (features, labels), early-stop on ``validation``, set a threshold per
    level of ``specificities`` on the validation hours."""
    (x, y), (x_val, y_val) = train, validation
    y, y_val = np.asarray(y).astype(bool), np.asarray(y_val).astype(bool)
    for part, labels in (("training", y), ("validation", y_val)):
        if labels.all() or not labels.any():
            raise ValueError(f"trees baseline: the {part} hours need both septic and non-septic hours")
    rows, weights, kept_share = _subsample(y, max_training_hours, seed)
    columns = np.flatnonzero(~np.isnan(x[rows]).all(axis=0))
    started = time.perf_counter()
    classifier = HistGradientBoostingClassifier(**PARAMETERS, random_state=seed)
    with threadpool_limits(THREADS, user_api="openmp"):
        classifier.fit(x[np.ix_(rows, columns)], y[rows], sample_weight=weights, X_val=x_val[:, columns], y_val=y_val)
    seconds = time.perf_counter() - started
    baseline = TreesBaseline(classifier, columns, {})
    risk = baseline.predict(x_val)
    baseline.thresholds = {level: threshold_for_specificity(y_val, risk, s) for level, s in specificities.items()}
    baseline.fit = {
        "library": "scikit-learn HistGradientBoostingClassifier",
        "parameters": {**PARAMETERS, "random_state": seed},
        "training_hours": int(y.size),
        "training_hours_used": int(rows.size),
        "negative_share_kept": kept_share,
        "validation_hours": int(y_val.size),
        "iterations": int(classifier.n_iter_),
        "features": [names[i] for i in columns],
        "dropped_all_missing": [names[i] for i in np.setdiff1d(np.arange(len(names)), columns)],
        "fit_seconds": round(seconds, 1),
        "threads": THREADS,
        "thresholds": baseline.thresholds,
        "specificities": dict(specificities),
    }
    return baseline


def _subsample(labels: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows to fit on (every positive, negatives at a seeded share when there are more than
    ``limit`` rows), their weights (1 / share for a kept negative) and the share."""
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    share = min(1.0, max(limit - positives.size, 1) / negatives.size)
    if share < 1.0:
        negatives = np.sort(np.random.default_rng(seed).choice(negatives, round(share * negatives.size), replace=False))
    rows = np.sort(np.concatenate([positives, negatives]))
    return rows, np.where(labels[rows], 1.0, 1.0 / share), share
