"""Two models on the same patients and hours: the difference of their AUROC and AUPRC, with a
paired patient-bootstrap interval.

A shadow model is judged against the live one on the very events both scored, so the question
is not "is each one good" but "is the shadow better, on these patients, by more than chance".
Comparing two separate intervals would answer it badly: the two models' figures move together
with the case mix of each resample, and their separate intervals overlap where the paired
difference is clearly non-zero. So each bootstrap resample draws patients (a patient's scores
are correlated hours, resampled together) and computes both models' figures on that same
resample; the interval is that of their difference.

``pair_by_event`` matches two models' labelled scores on event id (what ``vitalwatch
validate`` reads from scored-outcomes for the live and the shadow model); ``paired_difference``
compares them. Figures follow ``models.evaluation.bootstrap`` (ties count one half, one PR
point per distinct score), so with one model against itself the difference is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.evaluation.bootstrap import DEFAULT_REPLICATES, DEFAULT_SEED, LEVEL, WeightedRanking, interval, replicate_values

#: The ranking figures compared, by name in the report.
FIGURES = ("auroc", "auprc")


@dataclass(frozen=True, slots=True)
class Pairs:
    """Positions of the events both models scored: ``a[i]`` in the first model's arrays and
    ``b[i]`` in the second's are the same event."""

    a: np.ndarray
    b: np.ndarray
    only_a: int  # events scored by the first model alone (e.g. before the shadow started)
    only_b: int


def pair_by_event(event_ids_a: Sequence[str], event_ids_b: Sequence[str]) -> Pairs:
    """Match two models' scores on event id; an id seen twice in one model's scores (a consumer
    that did not drop duplicate label ids) is a mistake upstream, refused here."""
    for name, ids in (("first", event_ids_a), ("second", event_ids_b)):
        if len(set(ids)) != len(ids):
            raise ValueError(f"the {name} model's scores hold an event id more than once: drop duplicates by label_id first")
    position_b = {event: i for i, event in enumerate(event_ids_b)}
    a = [i for i, event in enumerate(event_ids_a) if event in position_b]
    b = [position_b[event_ids_a[i]] for i in a]
    return Pairs(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), len(event_ids_a) - len(a), len(event_ids_b) - len(b))


def paired_difference(
    patients: Sequence[str] | np.ndarray,
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """AUROC and AUPRC of model a and model b on the same events (``patients``, ``labels``,
    both models' scores: one entry per event), and b - a with its paired patient-bootstrap
    interval. JSON-ready: ``{"events", "patients", "positives", "replicates", "seed", "level",
    "unscorable_replicates", "auroc": {"a", "b", "difference", "interval"}, "auprc": {...}}``.
    A figure needs both classes: without them every value is None."""
    labels = np.asarray(labels).astype(bool)
    scores_a, scores_b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if not labels.shape == scores_a.shape == scores_b.shape == (len(patients),):
        raise ValueError(
            f"one entry per event expected: {len(patients)} patients, {labels.size} labels, "
            f"{scores_a.size} and {scores_b.size} scores"
        )
    _, patient_of = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    count = int(patient_of.max()) + 1 if patient_of.size else 0
    report: dict[str, Any] = {
        "events": int(labels.size), "patients": count, "positives": int(labels.sum()),
        "replicates": replicates, "seed": seed, "level": level, "unscorable_replicates": replicates,
    }
    if labels.all() or not labels.any():
        return {**report, **{figure: {"a": None, "b": None, "difference": None, "interval": None} for figure in FIGURES}}
    ranking = {"a": WeightedRanking(labels, scores_a, patient_of), "b": WeightedRanking(labels, scores_b, patient_of)}
    statistics = {
        f"{figure}_{model}": getattr(ranking[model], figure) for figure in FIGURES for model in ("a", "b")
    }
    drawn = replicate_values(statistics, count, replicates=replicates, seed=seed)
    ones = np.ones(count)
    for figure in FIGURES:
        a, b = statistics[f"{figure}_a"](ones), statistics[f"{figure}_b"](ones)
        report[figure] = {
            "a": a, "b": b, "difference": b - a,
            "interval": interval(drawn[f"{figure}_b"] - drawn[f"{figure}_a"], level),
        }
    report["unscorable_replicates"] = int(np.isnan(drawn["auroc_a"]).sum())
    return report
