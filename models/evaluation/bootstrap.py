"""Patient bootstrap by stay weights: intervals for any figure a cohort of stays yields.

Hours of one stay are correlated, so uncertainty comes from resampling stays with replacement
(as ``models.evaluation.real_data.bootstrap_intervals`` does for the CLIF report). A resample
is a weight per stay (how many times it was drawn), and every figure is written as a function
of those weights: sums over stays for counts and utilities, weighted ranking metrics over the
hours for AUROC and AUPRC. The hours are sorted once per scorer, so a replicate costs a few
weighted counts instead of concatenating and re-sorting a hundred thousand hours, and 1000
replicates of a set-A test split take seconds. With unit weights the ranking metrics equal
``models.evaluation.metrics``' (ties count one half, one PR point per distinct score).

``replicate_values`` draws the resamples with a seeded generator (the same seed, the same
intervals), evaluates every named statistic on each, and returns the replicate values so that
paired differences (model - NEWS2 on the same resampled stays) are differences of arrays.
A statistic that cannot be computed on a resample (no positive hour drawn) is NaN there and
counted, not silently dropped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Bootstrap resamples, and the seed that makes a run repeat exactly.
DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95

Statistic = Callable[[np.ndarray], float]


class WeightedRanking:
    """AUROC, AUPRC and calibration error of one score over hours, under stay weights.

    The hours are grouped by distinct score once; a resample then costs two weighted counts
    (positive and negative hours per distinct score) shared by all three metrics."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, stay_of_hour: np.ndarray, bins: int = 10) -> None:
        labels = np.asarray(labels).astype(bool)
        scores = np.asarray(scores, dtype=np.float64)
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN")
        stay = np.asarray(stay_of_hour, dtype=np.int64)
        self.distinct, group = np.unique(scores, return_inverse=True)  # ascending scores
        self.positive = (group[labels], stay[labels])
        self.negative = (group[~labels], stay[~labels])
        self.bin_of_group = np.clip((self.distinct * bins).astype(np.int64), 0, bins - 1)
        self.bins = bins
        self._last: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None

    def _counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted positive and negative hours per distinct score, kept for the next metric of
        the same resample (the metrics are asked for the same weights array one after another)."""
        if self._last is not None and self._last[0] is weights:
            return self._last[1]
        weights = np.asarray(weights, dtype=np.float64)
        pos, neg = (
            np.bincount(group, weights=weights[stay], minlength=self.distinct.size) for group, stay in (self.positive, self.negative)
        )
        self._last = (weights, (pos, neg))
        return pos, neg

    def auroc(self, weights: np.ndarray) -> float:
        """P(a positive hour outscores a negative one), ties 1/2; NaN without both classes."""
        pos, neg = self._counts(weights)
        p, n = pos.sum(), neg.sum()
        if p == 0 or n == 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float(np.sum(pos * (below + 0.5 * neg)) / (p * n))

    def auprc(self, weights: np.ndarray) -> float:
        """Average precision over the distinct scores, highest first; NaN without both classes."""
        pos, neg = self._counts(weights)
        p = pos.sum()
        if p == 0 or neg.sum() == 0:
            return float("nan")
        pos, neg = pos[::-1], neg[::-1]
        tp, flagged = np.cumsum(pos), np.cumsum(pos + neg)
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        return float(np.sum(pos / p * precision))

    def ece(self, weights: np.ndarray) -> float:
        """Count-weighted |mean predicted - observed| over equal-width probability bins."""
        pos, neg = self._counts(weights)
        hours = pos + neg
        total = hours.sum()
        if total == 0:
            return float("nan")
        predicted = np.bincount(self.bin_of_group, weights=hours * self.distinct, minlength=self.bins)
        observed = np.bincount(self.bin_of_group, weights=pos, minlength=self.bins)
        return float(np.abs(predicted - observed).sum() / total)


def weighted_sum(weights: np.ndarray, values: np.ndarray) -> float:
    """Sum of ``values`` per stay, each stay counted ``weights`` times. Elementwise, not ``@``:
    a BLAS dot wakes its thread pool on every call, which on a loaded machine costs
    milliseconds per call, thousands of times per bootstrap."""
    return float(np.sum(weights * values))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """np.median of ``values`` each repeated ``weights`` (whole draw counts) times, NaN values
    left out; NaN when nothing is left."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.int64)
    keep = ~np.isnan(values) & (weights > 0)
    if not keep.any():
        return float("nan")
    order = np.argsort(values[keep], kind="stable")
    ordered, cumulative = values[keep][order], np.cumsum(weights[keep][order])
    total = int(cumulative[-1])
    # The 0-based k-th of the expanded list is the first value whose cumulative count exceeds k.
    lower, upper = (ordered[np.searchsorted(cumulative, k, side="right")] for k in ((total - 1) // 2, total // 2))
    return float((lower + upper) / 2.0)


def replicate_values(
    statistics: Mapping[str, Statistic], stays: int, *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED
) -> dict[str, np.ndarray]:
    """Every statistic on ``replicates`` resamples of ``stays`` stays (float64 [replicates] each)."""
    if stays < 1:
        raise ValueError("nothing to resample: no stays")
    rng = np.random.default_rng(seed)
    values = {name: np.empty(replicates) for name in statistics}
    for r in range(replicates):
        weights = np.bincount(rng.integers(0, stays, stays), minlength=stays).astype(np.float64)
        for name, statistic in statistics.items():
            values[name][r] = statistic(weights)
    return values


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of the computable replicates; None when none was."""
    finite = np.asarray(values)[~np.isnan(values)]
    if not finite.size:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100.0 - tail))]


def finite(value: float | None) -> float | None:
    """JSON has no NaN: a figure that cannot be computed is null."""
    return None if value is None or not np.isfinite(value) else float(value)


def grouped_figures(
    estimates: Mapping[str, float], draws: Mapping[str, np.ndarray], owners: Sequence[str] | Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``{owner: {metric: value, metric_ci95: [lo, hi]}}`` from the flat ``owner.metric`` keys."""
    grouped: dict[str, dict[str, Any]] = {owner: {} for owner in owners}
    for key, value in estimates.items():
        owner, metric = key.split(".", 1)
        if owner in grouped:
            grouped[owner][metric] = finite(value)
            grouped[owner][f"{metric}_ci95"] = interval(draws[key])
    return grouped


def paired_differences(
    estimates: Mapping[str, float], draws: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str, str]]
) -> dict[str, dict[str, Any]]:
    """Per ``(metric, a, b)`` of ``pairs``: ``a - b`` on the point estimates, and the interval of
    the per-replicate differences (both figures on the same resampled stays)."""
    out: dict[str, dict[str, Any]] = {}
    for metric, a, b in pairs:
        block = out.setdefault(f"{a} - {b}", {})
        block[metric] = finite(estimates[f"{a}.{metric}"] - estimates[f"{b}.{metric}"])
        block[f"{metric}_ci95"] = interval(draws[f"{a}.{metric}"] - draws[f"{b}.{metric}"])
    return out
