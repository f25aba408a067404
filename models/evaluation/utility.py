"""The PhysioNet/CinC Challenge 2019 utility score, from its published definition.

The challenge ranked sepsis predictors by a clinical utility rather than a ranking metric,
because what a ward needs is a warning at the right time: a positive prediction earns most
6 h before onset, less towards 12 h before and 3 h after it, nothing later; a missed onset
costs up to 2 per hour from 6 h before onset to 3 h after; a false alarm costs 0.05 per hour.
This module transcribes the definition of the challenge's evaluation code
(``compute_prediction_utility`` and the normalisation of ``evaluate_sepsis_score``) as whole-array
operations, one stay at a time:

* ``t`` indexes the stay's rows (its hours; set A's ICULOS rows are consecutive hours) and
  ``t_sepsis = argmax(labels) - DT_OPTIMAL``: the challenge's SepsisLabel runs 6 h ahead of onset.
* A septic stay's row ``t <= t_sepsis + DT_LATE`` earns, when positive,
  ``max(m1 (t - t_sepsis) + b1, U_FP)`` up to ``t_sepsis + DT_OPTIMAL`` (0 at ``DT_EARLY``,
  ``MAX_U_TP`` at ``DT_OPTIMAL``; ``U_FP`` before ``DT_EARLY``) and ``m2 (t - t_sepsis) + b2``
  after it (``MAX_U_TP`` down to 0 at ``DT_LATE``); when negative, 0 up to ``t_sepsis +
  DT_OPTIMAL`` and ``m3 (t - t_sepsis) + b3`` after it (0 down to ``MIN_U_FN`` at ``DT_LATE``).
  Rows after ``t_sepsis + DT_LATE`` earn 0 either way.
* A non-septic stay's row earns ``U_FP`` when positive and ``U_TN`` when negative.
* Normalised over a cohort: ``(U - U_inaction) / (U_best - U_inaction)`` with the sums over
  stays of the observed, the all-negative ("inaction") and the best predictions (positive on
  exactly ``[t_sepsis + DT_EARLY, t_sepsis + DT_LATE]`` of septic stays): 1 is perfect, 0 is
  never predicting sepsis.

The three sums are kept per stay (``StayUtility``) so a bootstrap can resample stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DT_EARLY = -12.0
DT_OPTIMAL = -6.0
DT_LATE = 3.0
MAX_U_TP = 1.0
MIN_U_FN = -2.0
U_FP = -0.05
U_TN = 0.0

# u = m t + b, t relative to t_sepsis (the challenge's slopes and intercepts).
_M1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY)
_B1 = -_M1 * DT_EARLY
_M2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
_B2 = -_M2 * DT_LATE
_M3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
_B3 = -_M3 * DT_OPTIMAL


@dataclass(frozen=True, slots=True)
class StayUtility:
    """One stay's utility sums: of the predictions judged, of the best ones, of all-negative."""

    observed: float
    best: float
    inaction: float


def onset_row(labels: np.ndarray) -> float | None:
    """The challenge's ``t_sepsis`` in rows (first positive label + 6), None for a non-septic stay."""
    labels = np.asarray(labels).astype(bool)
    return float(np.argmax(labels) - DT_OPTIMAL) if labels.any() else None


def row_utilities(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """The utility each row of one stay earns (float64 [n])."""
    predictions = np.asarray(predictions).astype(bool)
    t_sepsis = onset_row(labels)
    if t_sepsis is None:
        return np.where(predictions, U_FP, U_TN)
    dt = np.arange(predictions.size, dtype=np.float64) - t_sepsis
    early = dt <= DT_OPTIMAL
    positive = np.where(early, np.maximum(_M1 * dt + _B1, U_FP), _M2 * dt + _B2)
    negative = np.where(early, 0.0, _M3 * dt + _B3)
    return np.where(dt <= DT_LATE, np.where(predictions, positive, negative), 0.0)


def best_predictions(labels: np.ndarray) -> np.ndarray:
    """Positive on exactly ``[t_sepsis + DT_EARLY, t_sepsis + DT_LATE]`` (none for a non-septic stay)."""
    rows = np.arange(np.asarray(labels).size, dtype=np.float64)
    t_sepsis = onset_row(labels)
    if t_sepsis is None:
        return np.zeros(rows.size, dtype=bool)
    return (rows >= t_sepsis + DT_EARLY) & (rows <= t_sepsis + DT_LATE)


def stay_utility(labels: np.ndarray, predictions: np.ndarray) -> StayUtility:
    """The observed, best and inaction utility of one stay's binary predictions."""
    labels = np.asarray(labels)
    if np.asarray(predictions).shape != labels.shape:
        raise ValueError(f"labels and predictions differ in length: {labels.size} vs {np.asarray(predictions).size}")
    return StayUtility(
        observed=float(row_utilities(labels, predictions).sum()),
        best=float(row_utilities(labels, best_predictions(labels)).sum()),
        inaction=float(row_utilities(labels, np.zeros(labels.size, dtype=bool)).sum()),
    )


def normalized_utility(observed: np.ndarray, best: np.ndarray, inaction: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``(U - U_inaction) / (U_best - U_inaction)`` over stays (each stay counted ``weights``
    times, once when None); NaN when the cohort has no septic stay (best = inaction)."""
    w = np.ones(len(observed)) if weights is None else np.asarray(weights, dtype=np.float64)
    # Elementwise sums, not ``@``: see models.evaluation.bootstrap.weighted_sum.
    total, top, floor = (float(np.sum(w * np.asarray(u, dtype=np.float64))) for u in (observed, best, inaction))
    return (total - floor) / (top - floor) if top != floor else float("nan")
