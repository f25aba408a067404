"""A site's recalibration: the same weights, a calibration and alert thresholds fitted again on
the site's own labelled scores.

A model trained elsewhere ranks a site's patients about as well as it ranked its training
patients far more often than it gets their absolute risk right: the case mix, the outcome's
prevalence and its definition move the calibration, and with it what every alert threshold
means. So the network is kept (its sha256 too, which lets a running worker keep every
patient's state on reload) and only what sits on its output is refitted:

* **Calibration**: a Platt recalibration ``sigmoid(a * logit(risk) + b)`` of the risks the
  parent published, fitted by log loss on the labelled scores (``fit_platt``, as training fits
  the parent's own on its validation split). It composes with the parent's Platt layer into a
  new one (scale ``a * s``, bias ``a * c + b``), so the new checkpoint computes it in the same
  single step. ``a`` must come out positive: the order of risks, and so AUROC, is unchanged.
* **Thresholds**, the site's choice: a target specificity per level (over labelled scores, as
  training sets them), or a target number of alerts per patient-day per level (alerts counted
  as the labelled report counts them: runs of scores at or above the threshold, held until
  they fall under the worker's clearing ratio, per patient, over the days its scores span).

Too little evidence is refused, with the numbers needed: a calibration fitted on a handful of
outcomes would move every threshold on noise.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from models.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint
from models.evaluation.cohort import MODEL_CLEAR_RATIO, MODEL_HIGH_CLEAR_RATIO
from models.evaluation.labelled_report import LabelledScores
from models.evaluation.metrics import expected_calibration_error, threshold_for_specificity
from models.training.train import fit_platt

#: Evidence needed by default: patients whose outcome followed a score within the horizon, and
#: positive scores (100 events is the usual floor for fitting a calibration; Riley et al., BMJ 2020).
MIN_OUTCOMES = 100
MIN_POSITIVE_SCORES = 100
#: Risks are clipped this far from 0 and 1 before their logit is taken.
_EPS = 1e-7
_CLEAR = {"medium": MODEL_CLEAR_RATIO, "high": MODEL_HIGH_CLEAR_RATIO}
_DAY_S = 86400.0
#: Thresholds at which the alert rate is first looked at to find its peak.
_RATE_GRID = 200

Target = Literal["specificity", "alerts-per-day"]


class InsufficientEvidence(ValueError):
    """Too few outcomes or positive scores to refit on; the message says how many are needed."""


@dataclass(frozen=True, slots=True)
class Recalibration:
    """The fitted layer on the parent's risk, the composed Platt calibration, the thresholds,
    and the figures before and after on the evidence."""

    a: float
    b: float
    calibration: dict[str, Any]
    alert_thresholds: dict[str, float]
    before: dict[str, float]
    after: dict[str, float]


def logit(risk: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(risk, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def recalibrated(risk: np.ndarray, a: float, b: float) -> np.ndarray:
    """The parent's risks through the fitted layer."""
    return 1.0 / (1.0 + np.exp(-(a * logit(risk) + b)))


def alerts_per_patient_day(scores: LabelledScores, risk: np.ndarray, threshold: float, clear_ratio: float) -> float:
    """Alerts (starts of runs at or above ``threshold``, held until under ``clear_ratio`` x it)
    per patient-day of the scores, all patients' runs at once."""
    patient = scores.patient
    first = np.r_[True, patient[1:] != patient[:-1]]
    raised = risk >= threshold
    decisive = raised | (risk < clear_ratio * threshold) | first
    last = np.maximum.accumulate(np.where(decisive, np.arange(risk.size), 0))
    alerting = raised[last]
    starts = alerting & (first | ~np.r_[False, alerting[:-1]])
    begins = np.flatnonzero(first)
    days = float(np.sum(np.maximum.reduceat(scores.observed_at, begins) - np.minimum.reduceat(scores.observed_at, begins))) / _DAY_S
    return float(starts.sum()) / days if days else float("nan")


def threshold_for_alert_rate(scores: LabelledScores, risk: np.ndarray, rate: float, clear_ratio: float) -> float:
    """The threshold whose alerts per patient-day come closest to ``rate``, on the side of
    thresholds above the busiest one. The rate is not monotone in the threshold: far below
    every risk each patient is alerting throughout, one alert per stay; it peaks where scores
    cross the threshold most often, then falls. Above that peak it falls (all but exactly:
    hysteresis can merge runs), so a bisection over the distinct risks there finds the goal.
    ValueError when the goal exceeds the peak: no threshold gives that many alerts."""
    candidates = np.unique(risk)
    grid = np.unique(np.quantile(candidates, np.linspace(0.0, 1.0, _RATE_GRID)))
    rates = [alerts_per_patient_day(scores, risk, float(t), clear_ratio) for t in grid]
    busiest = int(np.nanargmax(rates))
    if rate > rates[busiest]:
        raise ValueError(f"at most {rates[busiest]:.3g} alerts per patient-day at any threshold on these scores; {rate:g} asked")
    low = int(np.searchsorted(candidates, grid[busiest]))
    high = candidates.size - 1  # rate(candidates[low]) >= goal, rate(candidates[high]) about 0
    while high - low > 1:
        middle = (low + high) // 2
        if alerts_per_patient_day(scores, risk, float(candidates[middle]), clear_ratio) > rate:
            low = middle
        else:
            high = middle
    return float(min(
        (candidates[low], candidates[high]),
        key=lambda t: abs(alerts_per_patient_day(scores, risk, float(t), clear_ratio) - rate),
    ))


def check_evidence(scores: LabelledScores, min_outcomes: int = MIN_OUTCOMES, min_positive_scores: int = MIN_POSITIVE_SCORES) -> None:
    """InsufficientEvidence unless the scores hold enough outcomes, positives and negatives."""
    outcomes = int(np.unique(scores.patient[scores.label]).size)
    positives = int(scores.label.sum())
    negatives = scores.size - positives
    if outcomes < min_outcomes or positives < min_positive_scores or negatives < min_positive_scores:
        raise InsufficientEvidence(
            f"too little evidence to recalibrate: {outcomes} patients with an outcome (needs {min_outcomes}), "
            f"{positives} positive scores (needs {min_positive_scores}), {negatives} negative scores (needs {min_positive_scores})"
        )


def recalibrate(
    scores: LabelledScores,
    parent: Mapping[str, Any],
    target: Target,
    goals: Mapping[str, float],
    *,
    min_outcomes: int = MIN_OUTCOMES,
    min_positive_scores: int = MIN_POSITIVE_SCORES,
) -> Recalibration:
    """Fit the layer on the risks the parent (its manifest: calibration, alert thresholds)
    published and set each level's threshold at its goal (``goals``: {"medium": x, "high": y},
    specificities in (0, 1] or alerts per patient-day > 0)."""
    check_evidence(scores, min_outcomes, min_positive_scores)
    a, b = fit_platt(logit(scores.risk), scores.label.astype(np.float64))
    if not a > 0:
        raise InsufficientEvidence(f"the labelled scores rank the wrong way round (fitted slope {a:.3g}): the model does not rank this site's patients")
    risk = recalibrated(scores.risk, a, b)
    thresholds: dict[str, float] = {}
    for level in ("medium", "high"):
        goal = float(goals[level])
        if target == "specificity":
            threshold = threshold_for_specificity(scores.label, risk, goal)
        else:
            threshold = threshold_for_alert_rate(scores, risk, goal, _CLEAR[level])
        thresholds[level] = min(threshold, 1.0)
    if not 0.0 < thresholds["medium"] < thresholds["high"] <= 1.0:
        raise ValueError(f"the goals {dict(goals)} give thresholds {thresholds}: the high level must lie above the medium one")
    scale, bias = float(parent["calibration"]["scale"]), float(parent["calibration"]["bias"])
    return Recalibration(
        a=a, b=b,
        calibration={"method": "platt", "scale": a * scale, "bias": a * bias + b},
        alert_thresholds=thresholds,
        before=_figures(scores, scores.risk, parent.get("alert_thresholds")),
        after=_figures(scores, risk, thresholds),
    )


def _figures(scores: LabelledScores, risk: np.ndarray, thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """ECE, mean risk and observed rate, and (with thresholds) each level's specificity and
    alerts per patient-day on the evidence."""
    figures = {
        "ece": expected_calibration_error(scores.label, risk),
        "mean_risk": float(risk.mean()),
        "observed_rate": float(scores.label.mean()),
    }
    for level, threshold in (thresholds or {}).items():
        threshold = float(threshold)
        negatives = risk[~scores.label]
        figures[f"{level}_specificity"] = float(np.mean(negatives < threshold))
        figures[f"{level}_alerts_per_patient_day"] = alerts_per_patient_day(scores, risk, threshold, _CLEAR[level])
    return figures


def write_recalibrated(
    parent: Path | str, directory: Path | str, result: Recalibration, *, version: str, evidence: Mapping[str, Any], target: Mapping[str, Any]
) -> Path:
    """A new checkpoint in ``directory``: the parent's weights file copied byte for byte (same
    sha256), its manifest with the new version, calibration and thresholds, ``same_weights_as``
    (the parent's version and those it shared its weights with: a worker keeps patients' states
    written by any of them), and a ``recalibration`` block naming the parent (version, weights sha256, calibration,
    thresholds), the evidence and the target. Loaded back through ``load_checkpoint`` before
    returning, so a checkpoint that would not verify is never left behind as if it did."""
    parent, directory = Path(parent), Path(directory)
    manifest = json.loads((parent / MANIFEST_FILE).read_text())
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory}: exists and is not empty; choose a new directory for the new checkpoint")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(parent / manifest.get("weights_file", WEIGHTS_FILE), directory / WEIGHTS_FILE)
    same_weights = [*manifest.get("same_weights_as", []), manifest["version"]]
    manifest.update(
        version=version,
        same_weights_as=same_weights,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        calibration=result.calibration,
        alert_thresholds=result.alert_thresholds,
        weights_file=WEIGHTS_FILE,
        recalibration={
            "parent": {k: manifest[k] for k in ("version", "weights_sha256", "calibration", "alert_thresholds")},
            "layer": {"a": result.a, "b": result.b},
            "target": dict(target),
            "evidence": dict(evidence),
            "before": result.before,
            "after": result.after,
        },
    )
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    try:
        load_checkpoint(directory)
    except CheckpointError:
        shutil.rmtree(directory)
        raise
    return directory
