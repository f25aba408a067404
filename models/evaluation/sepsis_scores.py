"""Every scorer of the sepsis evaluation, per hour of the judged stays.

* ``model``: the checkpoint's calibrated risk after the last event at or before the hour (the
  risk the worker would show then), from ``models.evaluation.cohort.score_cohort``.
* ``news2``, ``qsofa``, ``sirs``: the scores on each parameter's latest value within 24 h at the
  hour (as the worker charts NEWS2; ``models.evaluation.clinical_scores``).
* ``trees``: the gradient-boosted-trees baseline (``models.evaluation.trees``), trained per
  partition on its training stays and scoring its test stays.

Before a stay's first event no scorer has a prediction: NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from models.checkpoint import LoadedModel
from models.evaluation.clinical_scores import qsofa, sirs
from models.evaluation.cohort import NEWS2_CARRY_FORWARD_S, score_cohort
from models.evaluation.hour_grid import Carried, at_hours, carry_forward
from models.evaluation.sepsis_data import Partition, SepsisStay
from models.evaluation.trees import TreesBaseline, feature_names, fit_trees, hour_features
from models.news2 import news2_components
from schemas.variables import VARIABLE_INDEX, VARIABLES

SCORERS: tuple[str, ...] = ("model", "trees", "news2", "qsofa", "sirs")
#: A parameter counts toward NEWS2, qSOFA and SIRS while it is at most this old (the worker's NEWS2 rule).
BASELINE_MAX_AGE_H = NEWS2_CARRY_FORWARD_S / 3600.0
_ALL_COLUMNS = tuple(range(len(VARIABLES)))


@dataclass(slots=True)
class HourlyScores:
    """The judged stays and, per scorer, one array per stay of scores per hour (NaN = none);
    the trees' thresholds for each stay (from the partition that scored it) and their fits."""

    stays: list[SepsisStay]
    scores: dict[str, list[np.ndarray]]
    trees_thresholds: list[dict[str, float]]
    trees_fits: list[dict[str, Any]] = field(default_factory=list)


def knowledge(stay: SepsisStay) -> Carried:
    """What was known at each hour of the stay, for every catalogue variable."""
    return carry_forward(stay.series, stay.grid.ts, _ALL_COLUMNS)


def baseline_scores(carried: Carried) -> dict[str, np.ndarray]:
    """NEWS2, qSOFA and SIRS per hour from the values at most ``BASELINE_MAX_AGE_H`` old."""
    current = carried.within(BASELINE_MAX_AGE_H)
    none = carried.last_row < 0
    scores = {
        "news2": news2_components(torch.from_numpy(current)).sum(dim=1).numpy(),
        "qsofa": qsofa(current),
        "sirs": sirs(current),
    }
    return {name: np.where(none, np.nan, score.astype(np.float64)) for name, score in scores.items()}


def score_hours(
    loaded: LoadedModel,
    stays: Sequence[SepsisStay],
    partitions: Sequence[Partition],
    *,
    specificities: Mapping[str, float],
    seed: int,
) -> HourlyScores:
    """Every scorer on every hour of the partitions' test stays (in the partitions' order)."""
    by_id = {s.stay_id: s for s in stays}
    judged = [by_id[i] for p in partitions for i in p.test]
    last_rows, baselines = [], []
    for stay in judged:  # one stay's knowledge at a time: all of set A's at once would be ~0.7 GB
        carried = knowledge(stay)
        last_rows.append(carried.last_row)
        baselines.append(baseline_scores(carried))
    with_series = [k for k, s in enumerate(judged) if s.series is not None]
    risk = score_cohort(loaded, [judged[k].series for k in with_series]).risk
    model = [np.full(len(s.grid.hours), np.nan) for s in judged]
    for k, row_risk in zip(with_series, risk):
        model[k] = at_hours(row_risk, last_rows[k])
    trees, thresholds, fits = trees_scores(by_id, partitions, loaded.manifest["features"], specificities=specificities, seed=seed)
    return HourlyScores(
        judged,
        {"model": model, "trees": trees, **{name: [b[name] for b in baselines] for name in ("news2", "qsofa", "sirs")}},
        thresholds,
        fits,
    )


def trees_scores(
    by_id: Mapping[str, SepsisStay], partitions: Sequence[Partition], variables: Sequence[str], *, specificities: Mapping[str, float], seed: int
) -> tuple[list[np.ndarray], list[dict[str, float]], list[dict[str, Any]]]:
    """Per test stay (in the partitions' order) the trees' scores per hour and thresholds; the fits."""
    columns = [VARIABLE_INDEX[name] for name in variables]
    names = feature_names(variables)
    scores: list[np.ndarray] = []
    thresholds: list[dict[str, float]] = []
    fits = []
    for partition in partitions:
        baseline = fit_trees(
            _design(by_id, partition.train, columns), _design(by_id, partition.validation, columns), names,
            specificities=specificities, seed=seed,
        )
        fits.append(baseline.fit)
        scores += _predict(baseline, [by_id[i] for i in partition.test], columns)
        thresholds += [baseline.thresholds] * len(partition.test)
    return scores, thresholds, fits


def stay_features(stay: SepsisStay, columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The trees' features at every hour of ``stay`` and the hours that have a prediction."""
    carried = carry_forward(stay.series, stay.grid.ts, columns)
    return hour_features(carried, stay.grid.ts, stay.series), carried.last_row >= 0


def _design(by_id: Mapping[str, SepsisStay], stay_ids: Sequence[str], columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Features and SepsisLabel of the scored hours (after the first event, up to onset) of ``stay_ids``."""
    parts, labels = [], []
    for stay_id in stay_ids:
        stay = by_id[stay_id]
        features, predicted = stay_features(stay, columns)
        keep = predicted & stay.grid.scored
        parts.append(features[keep])
        labels.append(stay.grid.sepsis[keep])
    return np.concatenate(parts), np.concatenate(labels)


def _predict(baseline: TreesBaseline, stays: Sequence[SepsisStay], columns: Sequence[int]) -> list[np.ndarray]:
    """The trees' scores per hour of each stay (NaN before its first event), in one predict call."""
    features, predicted = zip(*(stay_features(stay, columns) for stay in stays))
    flat = np.where(np.concatenate(predicted), baseline.predict(np.concatenate(features)), np.nan)
    return np.split(flat, np.cumsum([p.size for p in predicted])[:-1])
