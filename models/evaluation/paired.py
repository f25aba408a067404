"""Two models on the same patients and hours: the difference of their AUROC and AUPRC, with a
paired patient-bootstrap interval.

A shadow model is judged against the live one on the very events both scored, so the question
is not "is each one good" but "is the shadow better, on these patients, by more than chance".
Comparing two separate intervals would answer it badly: the two models' figures move together
with the case mix of each resample, and their separate intervals overlap where the paired
difference is clearly non-zero. So each bootstrap resample draws patients (a patient's scores
are correlated hours, resampled together) and computes both models' figures on that same
resample; the interval is that of their difference (models.evaluation.bootstrap: ties count
one half, one PR point per distinct score, so a model against itself differs by exactly 0).

``shadow_comparisons`` is what ``vitalwatch validate`` (and ``evaluate --scored``) report
beside each model's own report: every shadow model's labelled scores matched on event id with
the live model's. Both are judged against the live model's labels — the outcome the model in
service is meant to predict, which a shadow must predict better to replace it. A shadow with
another horizon labels its own scores differently (its own report uses those); the comparison
counts the events whose labels disagree.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from models.evaluation.bootstrap import (
    DEFAULT_REPLICATES, DEFAULT_SEED, LEVEL, WeightedRanking, grouped_figures, paired_differences, replicate_values,
)
from schemas.scored_outcome import ScoredOutcomeV1

#: The ranking figures compared.
FIGURES = ("auroc", "auprc")


def paired_difference(
    patients: Sequence[str] | np.ndarray,
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """AUROC and AUPRC of two scorers on the same events (``patients``, ``labels``, and
    ``scores``: {name: scores} of the first and the second, one entry per event), and the second
    minus the first with its paired patient-bootstrap interval. JSON-ready:
    ``{"events", "patients", "positives", "scorers": {name: {"auroc", "auroc_ci95", ...}},
    "differences": {"<second> - <first>": {"auroc", "auroc_ci95", ...}}, "bootstrap": {...}}``.
    Raises ValueError without both positives and negatives: nothing can be ranked then."""
    (first, a), (second, b) = scores.items()
    labels = np.asarray(labels).astype(bool)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not labels.shape == a.shape == b.shape == (len(patients),):
        raise ValueError(
            f"one entry per event expected: {len(patients)} patients, {labels.size} labels, {a.size} and {b.size} scores"
        )
    if labels.all() or not labels.any():
        raise ValueError(f"{labels.size} paired scores with {int(labels.sum())} positives: both positives and negatives are needed")
    _, patient_of = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    count = int(patient_of.max()) + 1
    statistics = {}
    for name, values in ((first, a), (second, b)):
        ranking = WeightedRanking(labels, values, patient_of)
        statistics.update({f"{name}.{figure}": getattr(ranking, figure) for figure in FIGURES})
    ones = np.ones(count)
    estimates = {key: statistic(ones) for key, statistic in statistics.items()}
    draws = replicate_values(statistics, count, replicates=replicates, seed=seed)
    return {
        "events": int(labels.size), "patients": count, "positives": int(labels.sum()),
        "scorers": grouped_figures(estimates, draws, (first, second)),
        "differences": paired_differences(estimates, draws, [(figure, second, first) for figure in FIGURES]),
        "bootstrap": {
            "replicates": replicates, "seed": seed, "level": LEVEL, "unit": "patient",
            "unscorable_replicates": int(np.isnan(draws[f"{first}.auroc"]).sum()),
        },
    }


def compare_on_events(
    live: Sequence[ScoredOutcomeV1], shadow: Sequence[ScoredOutcomeV1], *,
    replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The shadow's labelled scores against the live model's on the events both scored (matched
    on event id; each list holds one model, duplicates dropped), judged by the live labels."""
    by_event = {r.event_id: r for r in shadow}
    pairs = [(r, by_event[r.event_id]) for r in live if r.event_id in by_event]
    entry: dict[str, Any] = {
        "live": live[0].model_version, "shadow": shadow[0].model_version,
        "horizon_h": {"live": live[0].horizon_h, "shadow": shadow[0].horizon_h},
        "paired_events": len(pairs), "live_only": len(live) - len(pairs), "shadow_only": len(shadow) - len(pairs),
        "label_disagreements": sum(a.label != b.label for a, b in pairs),
        "labels_from": "live",
    }
    try:
        entry["report"] = paired_difference(
            [a.patient_id for a, _ in pairs], np.array([a.label for a, _ in pairs], dtype=bool),
            {"live": np.array([a.risk for a, _ in pairs]), "shadow": np.array([b.risk for _, b in pairs])},
            replicates=replicates, seed=seed,
        )
    except ValueError as exc:
        entry["error"] = str(exc)
    return entry


def shadow_comparisons(
    records: Sequence[ScoredOutcomeV1], *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """Every (live version, shadow version) pair of ``records`` (de-duplicated) that scored at
    least one event in common: ``compare_on_events`` of the two. Empty without a shadow."""
    groups: dict[tuple[str, str], list[ScoredOutcomeV1]] = {}
    for record in records:
        groups.setdefault((record.role, record.model_version), []).append(record)
    lives = [members for (role, _), members in sorted(groups.items()) if role == "live"]
    shadows = [members for (role, _), members in sorted(groups.items()) if role == "shadow"]
    comparisons = []
    for shadow in shadows:
        events = {r.event_id for r in shadow}
        for live in lives:
            if any(r.event_id in events for r in live):
                comparisons.append(compare_on_events(live, shadow, replicates=replicates, seed=seed))
    return comparisons
