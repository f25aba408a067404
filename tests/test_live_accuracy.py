"""Live accuracy counters: AUROC from the per-bin counters (what the dashboard's PromQL
computes) within 0.005 of the exact figure on realistic low-prevalence samples, NEWS2's exactly,
and the counters a batch's labelled scores leave in a registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluation.metrics import auroc
from worker.operations.live_accuracy import RISK_BINS, account, auroc_from_bins, ranked_above, risk_bins
from worker.operations.metrics import Metrics
from worker.scoring.labelling import LabelledScore, Labelling, OutcomeSeen
from worker.state.history import ScoreEntry


def binned_auroc(risk: np.ndarray, label: np.ndarray) -> float:
    bins = risk_bins(risk)
    negatives = np.bincount(bins[~label], minlength=RISK_BINS).astype(float)
    ranked = ranked_above(np.bincount(bins[label], minlength=RISK_BINS).astype(float))
    return auroc_from_bins(negatives, ranked, (~label).sum(), label.sum())


@pytest.mark.parametrize(
    "prevalence, separation, centre",
    [(0.02, 0.8, -4.0), (0.05, 1.5, -3.5), (0.005, 1.0, -5.0), (0.2, 0.5, -1.5)],
)
def test_binned_auroc_is_within_0_005_of_the_exact_one(prevalence: float, separation: float, centre: float) -> None:
    """Risks as a calibrated model gives them: logits normal around a low centre, positives
    shifted up; the ward's prevalence of a positive label is a few per cent or less."""
    rng = np.random.default_rng(7)
    n = 60_000
    label = rng.random(n) < prevalence
    logit = rng.normal(centre, 1.0, n) + separation * label
    risk = 1 / (1 + np.exp(-logit))
    exact = auroc(label.astype(int), risk)
    assert abs(binned_auroc(risk, label) - exact) < 0.005, (binned_auroc(risk, label), exact)


def test_coarse_bins_would_not_do() -> None:
    """The bins matter: the same sample in deciles of risk misses by more than the tolerance."""
    rng = np.random.default_rng(7)
    label = rng.random(60_000) < 0.02
    risk = 1 / (1 + np.exp(-(rng.normal(-4.0, 1.0, 60_000) + 0.8 * label)))
    deciles = np.minimum((risk * 10).astype(int), 9)
    negatives = np.bincount(deciles[~label], minlength=10).astype(float)
    ranked = ranked_above(np.bincount(deciles[label], minlength=10).astype(float))
    coarse = auroc_from_bins(negatives, ranked, (~label).sum(), label.sum())
    assert abs(coarse - auroc(label.astype(int), risk)) > 0.05


def labelled(risk: float, news2: int, label: bool, alerted: bool = False, version: str = "m-1") -> LabelledScore:
    entry = ScoreEntry(0.0, risk, 0, news2, f"e-{risk}-{news2}-{label}", version, alerted)
    return LabelledScore("p", entry, label, "outcome" if label else "horizon_passed", "death" if label else None, math.nan)


def sample(registry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_batch_leaves_counters_that_give_auroc_ppv_sensitivity_and_calibration() -> None:
    m = Metrics()
    scores = [
        labelled(0.30, 7, True, alerted=True), labelled(0.04, 3, True), labelled(0.05, 1, False),
        labelled(0.01, 0, False), labelled(0.20, 5, False, alerted=True), labelled(0.02, 3, False),
    ]
    batch = Labelling(scores, [OutcomeSeen("death", True, 2 * 3600.0)], dropped=0, patient_s=12 * 3600.0)
    account(m, batch, model_version="m-1", role="live")
    r, tags = m.registry, {"model_version": "m-1", "role": "live"}
    negatives = np.array([sample(r, "vitalwatch_labelled_negatives_total", **tags, bin=f"{b:03d}") for b in range(RISK_BINS)])
    ranked = np.array([sample(r, "vitalwatch_labelled_positives_ranked_total", **tags, bin=f"{b:03d}") for b in range(RISK_BINS)])
    n_pos = sample(r, "vitalwatch_labelled_scores_total", **tags, label="positive")
    n_neg = sample(r, "vitalwatch_labelled_scores_total", **tags, label="negative")
    risk = np.array([s.score.risk for s in scores])
    label = np.array([s.label for s in scores])
    assert auroc_from_bins(negatives, ranked, n_neg, n_pos) == pytest.approx(auroc(label.astype(int), risk))
    news2_neg = np.array([sample(r, "vitalwatch_labelled_news2_negatives_total", **tags, news2=str(n)) for n in range(21)])
    news2_ranked = np.array([sample(r, "vitalwatch_labelled_news2_positives_ranked_total", **tags, news2=str(n)) for n in range(21)])
    news2 = np.array([s.score.news2 for s in scores])
    assert auroc_from_bins(news2_neg, news2_ranked, n_neg, n_pos) == pytest.approx(auroc(label.astype(int), news2))
    assert sample(r, "vitalwatch_labelled_alerts_total", **tags, label="positive") == 1
    assert sample(r, "vitalwatch_labelled_alerts_total", **tags, label="negative") == 1
    assert sample(r, "vitalwatch_outcomes_total", **tags, kind="death", alerted="true") == 1
    assert sample(r, "vitalwatch_alert_lead_hours_sum", **tags) == 2.0
    assert sample(r, "vitalwatch_patient_hours_total", **tags) == 12.0
    assert sample(r, "vitalwatch_calibration_scores_total", **tags, band="0.05") == 2, "0.04 and 0.05 share a band"
    assert sample(r, "vitalwatch_calibration_observed_total", **tags, band="0.05") == 1
    assert sample(r, "vitalwatch_calibration_predicted_total", **tags, band="0.05") == pytest.approx(0.09)
