"""The report of labelled scores: how well a model did on the patients it actually scored.

One definition for two readers. ``vitalwatch validate`` builds it from the ``scored-outcomes``
topic (the worker's own scores, labelled once each patient's course was known) and offline
``vitalwatch evaluate --scored`` from an export of the same records, so on the same events
their numbers are equal by construction; ``labelled_scores_of_cohort`` labels a simulated
cohort's offline scores by the worker's own rule (``models.evaluation.outcome_labels``:
positive when an outcome follows within the horizon, excluded after the first outcome), which
on a simulated stay keeps exactly the events and labels offline ``evaluate`` scores.

What is reported, with the definitions:

* **Ranking**: AUROC and AUPRC of the model's risk and of NEWS2 of the same events, ECE (ten
  equal-width bins, ``models.evaluation.metrics``) of the risk, and the paired differences
  model - NEWS2.
* **Operating points**: the alert levels the worker published (``level`` >= medium, = high:
  the hysteresis, re-alert interval and NEWS2 safety net included, as the ward met them) and
  NEWS2 >= 5 and >= 7. Per point: sensitivity, specificity and precision over labelled scores;
  alerts per patient-day (an alert is the start of a run of flagged scores of one patient, the
  days those between their first and last labelled score); the share of patients with an
  outcome that were flagged within the horizon before it and the median lead time (outcome
  time - first such flagged score) over them.
* **Calibration**: predicted against observed rate per risk decile (equal-count bins, the
  shape a site reads; ECE above uses equal-width bins like every other report).
* **Intervals**: every figure with a 95 % percentile interval over resamples of patients
  (``models.evaluation.bootstrap``; a patient's scores are correlated), seeded.

A patient "has an outcome" here when one of its labelled scores is positive: an outcome whose
every score lay outside the horizon never shows in labelled scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from models.evaluation.bootstrap import (
    DEFAULT_REPLICATES, DEFAULT_SEED, LEVEL, WeightedRanking, finite, grouped_figures, paired_differences, replicate_values,
    weighted_median, weighted_sum,
)
from models.evaluation.cohort import CohortScores, MODEL_CLEAR_RATIO, MODEL_HIGH_CLEAR_RATIO, NEWS2_TRIGGERS, alert_state
from models.evaluation.outcome_labels import EXCLUDED, POSITIVE, label_scores
from schemas.outputs import LEVELS
from schemas.scored_outcome import ScoredOutcomeV1

_DAY_S = 86400.0
#: Paired differences reported: (figure, minuend, subtrahend).
DIFFERENCES: tuple[tuple[str, str, str], ...] = (("auroc", "model", "news2"), ("auprc", "model", "news2"))
#: Operating points: name, label, (scorer, threshold) flagged as ``scorer >= threshold``.
OPERATING_POINTS: tuple[tuple[str, str, str, float], ...] = (
    ("model_medium", "model (medium alert)", "level", 1.0),
    ("model_high", "model (high alert)", "level", 2.0),
    *((name, f"NEWS2 >= {cut}", "news2", float(cut)) for name, cut in NEWS2_TRIGGERS.items()),
)
CALIBRATION_BINS = 10


@dataclass(frozen=True, slots=True)
class LabelledScores:
    """Labelled scores of one model as arrays, sorted by patient then observation time.

    ``level`` is the published alert level's index in ``schemas.outputs.LEVELS`` (0 none,
    1 medium, 2 high); ``outcome_at`` is NaN for negatives; times are POSIX seconds."""

    patient: np.ndarray  # int64 [N], index into patient_ids
    patient_ids: tuple[str, ...]
    observed_at: np.ndarray  # float64 [N]
    risk: np.ndarray  # float64 [N]
    news2: np.ndarray  # float64 [N]
    level: np.ndarray  # int64 [N]
    label: np.ndarray  # bool [N]
    outcome_at: np.ndarray  # float64 [N]
    horizon_hours: float
    event_id: np.ndarray  # str [N], the scored event

    @classmethod
    def build(
        cls,
        patient_ids: Sequence[str],
        observed_at: Sequence[float],
        risk: Sequence[float],
        news2: Sequence[float],
        level: Sequence[int],
        label: Sequence[bool],
        outcome_at: Sequence[float],
        horizon_hours: float,
        event_ids: Sequence[str] | None = None,
    ) -> LabelledScores:
        """Arrays in any order, sorted here (by patient, then time, then event id: a fixed
        order whatever the order of reading). Without ``event_ids`` each score is named by its
        patient and position."""
        names, patient = np.unique(np.asarray(patient_ids, dtype=object).astype(str), return_inverse=True)
        observed, risks = np.asarray(observed_at, dtype=np.float64), np.asarray(risk, dtype=np.float64)
        ids = np.asarray(
            [f"{p}#{k}" for k, p in enumerate(patient_ids)] if event_ids is None else list(event_ids), dtype=object
        ).astype(str)
        order = np.lexsort((ids, observed, patient))
        return cls(
            event_id=ids[order],
            patient=patient.astype(np.int64)[order],
            patient_ids=tuple(str(n) for n in names),
            observed_at=observed[order],
            risk=risks[order],
            news2=np.asarray(news2, dtype=np.float64)[order],
            level=np.asarray(level, dtype=np.int64)[order],
            label=np.asarray(label, dtype=bool)[order],
            outcome_at=np.asarray(outcome_at, dtype=np.float64)[order],
            horizon_hours=float(horizon_hours),
        )

    @classmethod
    def from_records(cls, records: Iterable[ScoredOutcomeV1]) -> LabelledScores:
        """The arrays of records of one model (the caller dropped duplicates and chose them)."""
        records = list(records)
        horizons = {r.horizon_h for r in records}
        if len(horizons) > 1:
            raise ValueError(f"labelled scores of different horizons {sorted(horizons)} cannot be judged together")
        return cls.build(
            [r.patient_id for r in records],
            [r.observed_at.timestamp() for r in records],
            [r.risk for r in records],
            [r.news2 for r in records],
            [LEVELS.index(r.level) for r in records],
            [r.label for r in records],
            [r.outcome_at.timestamp() if r.outcome_at else np.nan for r in records],
            horizons.pop() if horizons else 0.0,
            [r.event_id for r in records],
        )

    def only(self, event_ids: Iterable[str]) -> LabelledScores:
        """The scores of these events (the same events another reader judged)."""
        keep = np.isin(self.event_id, np.asarray(list(event_ids), dtype=object).astype(str))
        return LabelledScores.build(
            [self.patient_ids[p] for p in self.patient[keep]], self.observed_at[keep], self.risk[keep], self.news2[keep],
            self.level[keep], self.label[keep], self.outcome_at[keep], self.horizon_hours, self.event_id[keep],
        )

    @property
    def size(self) -> int:
        return int(self.label.size)


def labelled_scores_of_cohort(
    cohort: CohortScores, thresholds: Mapping[str, float], event_ids: Sequence[Sequence[str]] | None = None
) -> LabelledScores:
    """A scored simulated (or real) cohort labelled offline: every score up to each stay's
    outcome, labelled by its horizon, its level from the thresholds with the worker's
    hysteresis (no re-alert interval, no NEWS2 safety net: those need the worker's state).
    ``event_ids``: per stay, the id of each of its series' rows, where they are known."""
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("patient", "ts", "risk", "news2", "level", "label", "outcome", "id")}
    for k, (series, risk, news2) in enumerate(zip(cohort.series, cohort.risk, cohort.news2)):
        outcomes = [] if series.event_at is None else [series.event_at]
        labels = label_scores(series.ts, outcomes, ["sepsis_onset"] * len(outcomes), cohort.horizon_hours)
        keep = labels.label != EXCLUDED
        ids = np.asarray(event_ids[k], dtype=object) if event_ids is not None else np.array(
            [f"{series.patient_id}#{row}" for row in range(series.ts.size)], dtype=object
        )
        columns["id"].append(ids[keep])
        r = risk[keep].astype(np.float64)
        medium = alert_state(r, thresholds["medium"], MODEL_CLEAR_RATIO * thresholds["medium"])
        high = alert_state(r, thresholds["high"], MODEL_HIGH_CLEAR_RATIO * thresholds["high"])
        columns["patient"].append(np.full(r.size, series.patient_id, dtype=object))
        columns["ts"].append(series.ts[keep])
        columns["risk"].append(r)
        columns["news2"].append(news2[keep])
        columns["level"].append(np.maximum(medium.astype(np.int64), 2 * high.astype(np.int64)))
        columns["label"].append(labels.label[keep] == POSITIVE)
        columns["outcome"].append(labels.outcome_ts[keep])
    joined = {k: np.concatenate(v) if v else np.empty(0) for k, v in columns.items()}
    return LabelledScores.build(
        joined["patient"], joined["ts"], joined["risk"], joined["news2"], joined["level"], joined["label"], joined["outcome"],
        cohort.horizon_hours, joined["id"],
    )


class _Patients:
    """Per-patient sums of labelled scores, so every figure is a function of patient weights."""

    def __init__(self, scores: LabelledScores) -> None:
        self.scores = scores
        self.n = len(scores.patient_ids)
        patient = scores.patient
        self.first = np.r_[True, patient[1:] != patient[:-1]] if patient.size else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(self.first)
        self.days = (np.maximum.reduceat(scores.observed_at, starts) - np.minimum.reduceat(scores.observed_at, starts)) / _DAY_S if starts.size else np.zeros(0)
        self.with_outcome = self._per_patient(scores.label) > 0

    def _per_patient(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.scores.patient, weights=values.astype(np.float64), minlength=self.n)

    def ranking_statistics(self) -> dict[str, Callable[[np.ndarray], float]]:
        """``model.auroc``, ``model.auprc``, ``model.ece``, ``news2.auroc``, ``news2.auprc``."""
        s = self.scores
        model = WeightedRanking(s.label, s.risk, s.patient)
        news2 = WeightedRanking(s.label, s.news2, s.patient)
        return {
            "model.auroc": model.auroc, "model.auprc": model.auprc, "model.ece": model.ece,
            "news2.auroc": news2.auroc, "news2.auprc": news2.auprc,
        }

    def point_statistics(self, name: str, flagged: np.ndarray) -> dict[str, Callable[[np.ndarray], float]]:
        """The operating point's confusion rates, alert burden, detection and lead time."""
        s = self.scores
        label = s.label
        raised = flagged & (self.first | ~np.r_[False, flagged[:-1]])
        tp, fp, fn, tn = (self._per_patient(m) for m in (flagged & label, flagged & ~label, ~flagged & label, ~flagged & ~label))
        alerts = self._per_patient(raised)
        warned = np.flatnonzero(flagged & label)  # sorted by patient then time: the first per patient is its earliest
        lead = np.full(self.n, np.nan)
        patients, first = np.unique(s.patient[warned], return_index=True)
        lead[patients] = (s.outcome_at[warned[first]] - s.observed_at[warned[first]]) / 3600.0
        detected = (~np.isnan(lead)).astype(np.float64)
        with_outcome = self.with_outcome

        def ratio(numerator: np.ndarray, denominator: np.ndarray) -> Callable[[np.ndarray], float]:
            def statistic(w: np.ndarray) -> float:
                below = weighted_sum(w, denominator)
                return weighted_sum(w, numerator) / below if below else float("nan")
            return statistic

        return {
            f"{name}.sensitivity": ratio(tp, tp + fn),
            f"{name}.specificity": ratio(tn, tn + fp),
            f"{name}.precision": ratio(tp, tp + fp),
            f"{name}.alerts_per_patient_day": ratio(alerts, self.days),
            f"{name}.detected_fraction": ratio(detected, with_outcome.astype(np.float64)),
            f"{name}.median_lead_time_h": lambda w: weighted_median(lead[with_outcome], w[with_outcome]),
        }

    def description(self) -> dict[str, Any]:
        s = self.scores
        return {
            "patients": self.n,
            "patients_with_outcome": int(self.with_outcome.sum()),
            "scores": s.size,
            "positive_scores": int(s.label.sum()),
            "prevalence": float(s.label.mean()) if s.size else None,
            "patient_days": float(self.days.sum()),
            "horizon_hours": s.horizon_hours,
            "observed_from": float(s.observed_at.min()) if s.size else None,
            "observed_until": float(s.observed_at.max()) if s.size else None,
        }


def calibration_deciles(label: np.ndarray, risk: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Per equal-count risk bin (deciles by default): its risk range, mean predicted risk,
    observed rate and count. Tied risks stay in one bin, so a bin may hold more than its share."""
    if not risk.size:
        return []
    edges = np.quantile(risk, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    which = np.searchsorted(edges, risk, side="right")
    rows = []
    for k in range(bins):
        members = which == k
        if members.any():
            rows.append({
                "risk_from": float(risk[members].min()), "risk_to": float(risk[members].max()),
                "predicted": float(risk[members].mean()), "observed": float(label[members].mean()), "count": int(members.sum()),
            })
    return rows


def labelled_report(scores: LabelledScores, *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The JSON-ready report (see the module doc). Raises ValueError when the scores hold no
    positive or no negative: nothing can be ranked then."""
    if not scores.label.any() or scores.label.all():
        raise ValueError(
            f"{scores.size} labelled scores with {int(scores.label.sum())} positives: both positives and negatives are needed"
        )
    patients = _Patients(scores)
    statistics = patients.ranking_statistics()
    flagged_by = {"level": scores.level.astype(np.float64), "news2": scores.news2}
    for name, _, scorer, threshold in OPERATING_POINTS:
        statistics.update(patients.point_statistics(name, flagged_by[scorer] >= threshold))
    ones = np.ones(patients.n)
    estimates = {name: statistic(ones) for name, statistic in statistics.items()}
    draws = replicate_values(statistics, patients.n, replicates=replicates, seed=seed)
    return {
        "cohort": patients.description(),
        "scorers": grouped_figures(estimates, draws, ("model", "news2")),
        "operating_points": {
            name: {"label": label} | grouped_figures(estimates, draws, [name])[name] for name, label, _, _ in OPERATING_POINTS
        },
        "differences": paired_differences(estimates, draws, DIFFERENCES),
        "calibration": {
            "ece": finite(estimates["model.ece"]),
            "deciles": calibration_deciles(scores.label, scores.risk),
        },
        "bootstrap": {
            "replicates": replicates, "seed": seed, "level": LEVEL, "unit": "patient",
            "unscorable_replicates": int(np.isnan(draws["model.auroc"]).sum()),
        },
    }


def reports_by_model(
    records: Sequence[ScoredOutcomeV1], *, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """One entry per (model version, role) of ``records``, live before shadow: the model, its
    record count and its report, or the reason there is none (no positive yet, say). Each
    model is judged on its own scores; comparing a shadow with the live model on the same
    patients and hours is a separate, paired figure."""
    groups: dict[tuple[str, str], list[ScoredOutcomeV1]] = {}
    for record in records:
        groups.setdefault((record.model_version, record.role), []).append(record)
    entries = []
    for (version, role), members in sorted(groups.items(), key=lambda item: (item[0][1] != "live", item[0])):
        entry: dict[str, Any] = {"model_version": version, "role": role, "records": len(members)}
        try:
            entry["report"] = labelled_report(LabelledScores.from_records(members), replicates=replicates, seed=seed)
        except ValueError as exc:
            entry["error"] = str(exc)
        entries.append(entry)
    return entries
