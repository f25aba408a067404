"""Classification and calibration metrics on event-level labels, in numpy.

Small and exact rather than a dependency: the evaluation needs AUROC, AUPRC, the ROC and PR
curves, operating-point counts and a binned calibration error, each a few lines over sorted
scores. Ties are handled the way the standard definitions require (AUROC counts a tied
positive/negative pair as one half; curves put all tied scores on one threshold), so an
integer score like NEWS2 is measured fairly against a continuous one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Curve:
    """A curve's x and y and the score threshold of each point (``score >= threshold``)."""

    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Counts and rates of one binary decision against the labels."""

    sensitivity: float
    specificity: float
    precision: float
    f1: float


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.size} vs {scores.size}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return labels, scores


def _both_classes(labels: np.ndarray) -> None:
    if labels.all() or not labels.any():
        raise ValueError("both classes must be present")


def _threshold_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when flagging ``score >= threshold``, one entry per distinct
    score from the highest down."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp = np.cumsum(labels)[last_of_run]
    fp = (last_of_run + 1) - tp
    return tp, fp, scores[last_of_run]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(a random positive scores above a random negative), ties 1/2."""
    labels, scores = _check(labels, scores)
    _both_classes(labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size)
    # Average rank of each run of tied scores (1-based).
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], scores.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Curve:
    """False-positive rate (x) against true-positive rate (y), from (0, 0) to (1, 1)."""
    labels, scores = _check(labels, scores)
    _both_classes(labels)
    tp, fp, thresholds = _threshold_counts(labels, scores)
    return Curve(
        x=np.r_[0.0, fp / fp[-1]],
        y=np.r_[0.0, tp / tp[-1]],
        thresholds=np.r_[np.inf, thresholds],
    )


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> Curve:
    """Recall (x) against precision (y), one point per distinct score, highest score first."""
    labels, scores = _check(labels, scores)
    _both_classes(labels)
    tp, fp, thresholds = _threshold_counts(labels, scores)
    return Curve(x=tp / tp[-1], y=tp / (tp + fp), thresholds=thresholds)


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision x recall gained (no interpolation)."""
    curve = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, curve.x]) * curve.y))


def operating_point(labels: np.ndarray, flagged: np.ndarray) -> OperatingPoint:
    """Sensitivity, specificity, precision and F1 of the decision ``flagged``."""
    labels = np.asarray(labels).astype(bool).ravel()
    flagged = np.asarray(flagged).astype(bool).ravel()
    tp = float(np.sum(labels & flagged))
    fp = float(np.sum(~labels & flagged))
    fn = float(np.sum(labels & ~flagged))
    tn = float(np.sum(~labels & ~flagged))
    sensitivity = tp / (tp + fn) if tp + fn else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    return OperatingPoint(
        sensitivity=sensitivity,
        specificity=tn / (tn + fp) if tn + fp else 0.0,
        precision=precision,
        f1=2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0,
    )


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold at which flagging ``score >= threshold`` leaves at least
    ``specificity`` (in (0, 1]) of the negatives unflagged: just above the k-th lowest negative
    score, k = ceil(specificity x negatives)."""
    labels, scores = _check(labels, scores)
    if not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    negatives = np.sort(scores[~labels])
    if negatives.size == 0:
        raise ValueError("no negatives to set a specificity on")
    k = int(np.ceil(specificity * negatives.size))
    return float(np.nextafter(negatives[k - 1], np.inf))


def calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width probability bin: mean predicted, observed frequency, count (empty bins
    have NaN means and count 0)."""
    labels, probabilities = _check(labels, probabilities)
    which = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, weights=probabilities, minlength=bins) / count
        observed = np.bincount(which, weights=labels.astype(np.float64), minlength=bins) / count
    return predicted, observed, count


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |predicted - observed| over equal-width probability bins."""
    predicted, observed, count = calibration_bins(labels, probabilities, bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(predicted[used] - observed[used])) / count.sum())
