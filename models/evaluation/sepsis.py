"""Per-hour sepsis evaluation of PSV stays, the way the clinical-prediction field reports it.

The stays (``models.evaluation.sepsis_data``) are scored hour by hour by the model, the
gradient-boosted-trees baseline, NEWS2, qSOFA and SIRS (``models.evaluation.sepsis_scores``).
What is reported, with the definitions:

* **Ranking**, per scorer: AUROC and AUPRC over the hours that have a prediction (after the
  stay's first event) and are still worth a warning (every hour of a non-septic stay, a septic
  stay's up to and including onset), labelled by the hour's SepsisLabel; ECE (ten equal-width
  bins) for the model and the trees, the two that output probabilities.
* **Operating points**: the model at its medium and high alert thresholds (cleared under
  0.8 x and 0.85 x, as the worker's alert policy), the trees at thresholds set on their
  validation hours at the model recipe's specificities (same clearing), NEWS2 >= 5 and >= 7,
  qSOFA >= 2, SIRS >= 2 (cleared under the cut-off). An hour is a positive prediction when the
  patient is alerting then (``models.evaluation.hourly_alerts``). Per operating point: the
  challenge's normalized utility over every hour of every stay (``models.evaluation.utility``;
  an hour without a prediction counts as negative), alerts per patient-day (alerts / hours
  observed x 24), false alerts per true one, the share of septic stays alerted in time, and the
  median lead time (t_sepsis - first true alert) over alerted septic stays and over all septic
  stays with an unalerted one counted as 0 h.
* **Intervals**: every figure with a 95 % percentile interval over ``replicates`` resamples of
  stays (``models.evaluation.bootstrap``, seeded), and the paired differences (model - trees,
  model - NEWS2, ...) on the same resamples.
* **Targets** of the issue that set the bar, each met or not on the point estimate (interval
  beside it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from models.checkpoint import LoadedModel
from models.evaluation.bootstrap import (
    DEFAULT_REPLICATES, DEFAULT_SEED, WeightedRanking, grouped_figures, paired_differences, replicate_values, weighted_median,
    weighted_sum,
)
from models.evaluation.clinical_scores import CUT_OFF
from models.evaluation.cohort import MODEL_CLEAR_RATIO, MODEL_HIGH_CLEAR_RATIO
from models.evaluation.hourly_alerts import stay_alerts
from models.evaluation.sepsis_data import Partition, SepsisStay
from models.evaluation.sepsis_scores import HourlyScores, score_hours
from models.evaluation.utility import normalized_utility, row_utilities, stay_utility
from models.training.train import TrainConfig

#: Scorers whose output is a probability (calibration is reported for them).
PROBABILISTIC = ("model", "trees")
RANKING_METRICS = ("auroc", "auprc")


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """A scorer turned into alerts: its threshold for each judged stay and its clearing ratio."""

    name: str
    label: str
    scorer: str
    thresholds: np.ndarray
    clear_ratio: float


@dataclass(frozen=True, slots=True)
class SepsisEvaluation:
    """The JSON-ready report and the ranked hours' labels and scores per scorer (for plots)."""

    report: dict[str, Any]
    labels: np.ndarray
    scores: dict[str, np.ndarray]


def recipe_specificities(manifest: Mapping[str, Any]) -> dict[str, float]:
    """The specificities the checkpoint's recipe set its thresholds at (the trees use the same)."""
    config = manifest.get("training", {}).get("config", {})
    defaults = TrainConfig()
    return {
        "medium": float(config.get("medium_specificity", defaults.medium_specificity)),
        "high": float(config.get("high_specificity", defaults.high_specificity)),
    }


def operating_points(scores: HourlyScores, model_thresholds: Mapping[str, float]) -> list[OperatingPoint]:
    """The model's and the trees' two levels, NEWS2 >= 5 and >= 7, qSOFA >= 2, SIRS >= 2."""
    n = len(scores.stays)

    def fixed(value: float) -> np.ndarray:
        return np.full(n, float(value))

    ratios = {"medium": MODEL_CLEAR_RATIO, "high": MODEL_HIGH_CLEAR_RATIO}
    points = [OperatingPoint(f"model_{level}", f"model ({level})", "model", fixed(model_thresholds[level]), ratios[level]) for level in ratios]
    points += [
        OperatingPoint(f"trees_{level}", f"trees ({level})", "trees", np.array([t[level] for t in scores.trees_thresholds]), ratios[level])
        for level in ratios
    ]
    points += [OperatingPoint(f"news2_{cut}", f"NEWS2 >= {cut}", "news2", fixed(cut), 1.0) for cut in (5, 7)]
    points += [OperatingPoint(f"{name}_{CUT_OFF}", f"{title} >= {CUT_OFF}", name, fixed(CUT_OFF), 1.0) for name, title in (("qsofa", "qSOFA"), ("sirs", "SIRS"))]
    return points


class _Cohort:
    """The judged stays' per-stay figures and ranked hours, as functions of stay weights."""

    def __init__(self, scores: HourlyScores) -> None:
        grids = [s.grid for s in scores.stays]
        self.scores = scores
        self.septic = np.array([g.onset_hour is not None for g in grids])
        self.days = np.array([g.hours.size / 24.0 for g in grids])
        ranked = [g.scored & ~np.isnan(m) for g, m in zip(grids, scores.scores["model"])]
        self.stay_of_hour = np.concatenate([np.full(int(r.sum()), k) for k, r in enumerate(ranked)])
        self.labels = np.concatenate([g.sepsis[r] for g, r in zip(grids, ranked)])
        self.ranked = {name: np.concatenate([s[r] for s, r in zip(per_stay, ranked)]) for name, per_stay in scores.scores.items()}
        utilities = [stay_utility(g.sepsis, np.zeros(g.hours.size, dtype=bool)) for g in grids]
        self.best = np.array([u.best for u in utilities])
        self.inaction = np.array([u.inaction for u in utilities])

    def ranking_statistics(self) -> dict[str, Callable[[np.ndarray], float]]:
        """``scorer.auroc``, ``scorer.auprc`` (and ``.ece`` for probabilities) over the ranked hours."""
        statistics: dict[str, Callable[[np.ndarray], float]] = {}
        for name, ranked in self.ranked.items():
            ranking = WeightedRanking(self.labels, ranked, self.stay_of_hour)
            statistics[f"{name}.auroc"] = ranking.auroc
            statistics[f"{name}.auprc"] = ranking.auprc
            if name in PROBABILISTIC:
                statistics[f"{name}.ece"] = ranking.ece
        return statistics

    def alert_statistics(self, point: OperatingPoint) -> dict[str, Callable[[np.ndarray], float]]:
        """The operating point's utility and alert figures (``point.figure``), from per-stay
        sums and lead times computed once."""
        per_stay = self.scores.scores[point.scorer]
        grids = [s.grid for s in self.scores.stays]
        alerts = [stay_alerts(g, s, t, point.clear_ratio * t) for g, s, t in zip(grids, per_stay, point.thresholds)]
        observed = np.array([row_utilities(g.sepsis, a.alerting).sum() for g, a in zip(grids, alerts)])
        raised = np.array([a.alerts for a in alerts], dtype=np.float64)
        true = np.array([a.true_alerts for a in alerts], dtype=np.float64)
        false, alerted, septic = raised - true, (true > 0).astype(np.float64), self.septic
        lead = np.array([a.lead_h for a in alerts])[septic]
        lead_or_zero = np.nan_to_num(lead, nan=0.0)

        def ratio(numerator: np.ndarray, denominator: np.ndarray, w: np.ndarray) -> float:
            below = weighted_sum(w, denominator)
            return weighted_sum(w, numerator) / below if below else float("nan")

        return {
            f"{point.name}.utility": lambda w: normalized_utility(observed, self.best, self.inaction, w),
            f"{point.name}.alerts_per_patient_day": lambda w: ratio(raised, self.days, w),
            f"{point.name}.false_per_true": lambda w: ratio(false, true, w),
            f"{point.name}.alerted_share": lambda w: ratio(alerted, septic.astype(np.float64), w),
            f"{point.name}.median_lead_alerted_h": lambda w: weighted_median(lead, w[septic]),
            f"{point.name}.median_lead_h": lambda w: weighted_median(lead_or_zero, w[septic]),
        }

    def description(self) -> dict[str, Any]:
        """Who was judged: stays, hours, septic stays, ranked and positive hours, ICU types."""
        stays = self.scores.stays
        return {
            "stays": len(stays),
            "stays_with_events": sum(s.series is not None for s in stays),
            "hours": int(sum(s.grid.hours.size for s in stays)),
            "patient_days": float(self.days.sum()),
            "septic_stays": int(self.septic.sum()),
            "ranked_hours": int(self.labels.size),
            "positive_hours": int(self.labels.sum()),
            "prevalence": float(self.labels.mean()) if self.labels.size else None,
            "icu_types": {t: sum(s.icu_type == t for s in stays) for t in ("MICU", "SICU", None)},
        }


#: Paired differences reported: (figure, minuend, subtrahend).
DIFFERENCES: tuple[tuple[str, str, str], ...] = (
    *((metric, "model", other) for metric in RANKING_METRICS for other in ("trees", "news2", "qsofa", "sirs")),
    *(("utility", "model_medium", other) for other in ("trees_medium", "news2_5", f"qsofa_{CUT_OFF}", f"sirs_{CUT_OFF}")),
    ("utility", "model_high", "trees_high"),
)


def evaluate_hours(
    loaded: LoadedModel,
    stays: Sequence[SepsisStay],
    partitions: Sequence[Partition],
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> SepsisEvaluation:
    """Score the partitions' test stays with every scorer and report every figure with its interval."""
    started = time.perf_counter()
    scores = score_hours(loaded, stays, partitions, specificities=recipe_specificities(loaded.manifest), seed=seed)
    scored_s = time.perf_counter() - started
    evaluation = judge_hours(scores, loaded.manifest["alert_thresholds"], replicates=replicates, seed=seed)
    evaluation.report["seconds"] = {"scoring": round(scored_s, 1), "total": round(time.perf_counter() - started, 1)}
    return evaluation


def judge_hours(
    scores: HourlyScores, model_thresholds: Mapping[str, float], *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED
) -> SepsisEvaluation:
    """The report of scores already computed: cohort, ranking per scorer, operating points,
    paired differences, each with its interval, and the trees' fits."""
    cohort = _Cohort(scores)
    points = operating_points(scores, model_thresholds)
    statistics = cohort.ranking_statistics()
    for point in points:
        statistics.update(cohort.alert_statistics(point))
    ones = np.ones(len(scores.stays))
    estimates = {name: statistic(ones) for name, statistic in statistics.items()}
    draws = replicate_values(statistics, len(scores.stays), replicates=replicates, seed=seed)
    report = {
        "cohort": cohort.description(),
        "scorers": grouped_figures(estimates, draws, scores.scores),
        "operating_points": {
            p.name: {"label": p.label, "scorer": p.scorer, "thresholds": sorted({float(t) for t in p.thresholds}), "clear_ratio": p.clear_ratio}
            | grouped_figures(estimates, draws, [p.name])[p.name]
            for p in points
        },
        "differences": paired_differences(estimates, draws, DIFFERENCES),
        "trees": scores.trees_fits,
        "bootstrap": {
            "replicates": replicates, "seed": seed, "level": 0.95, "unit": "stay",
            "unscorable_replicates": int(np.isnan(draws["model.auroc"]).sum()),
        },
    }
    return SepsisEvaluation(report, cohort.labels, cohort.ranked)
