"""The paired comparison of two models on the same events (models.evaluation.paired)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from models.evaluation.metrics import auprc, auroc
from models.evaluation.paired import compare_on_events, paired_difference, shadow_comparisons
from schemas.scored_outcome import ScoredOutcomeV1, label_id


def cohort(seed: int = 0, patients: int = 60, hours: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patients' hours; about a third of the patients deteriorate in their last 6 hours. Model
    ``weak`` is weakly informative, ``strong`` strongly."""
    rng = np.random.default_rng(seed)
    patient = np.repeat([f"p{i}" for i in range(patients)], hours)
    hour = np.tile(np.arange(hours), patients)
    sick = np.repeat(rng.random(patients) < 1 / 3, hours)
    labels = sick & (hour >= hours - 6)
    weak = np.clip(0.3 + 0.1 * labels + rng.normal(0, 0.2, labels.size), 0, 1)
    strong = np.clip(0.2 + 0.5 * labels + rng.normal(0, 0.15, labels.size), 0, 1)
    return patient, labels, weak, strong


def test_the_point_figures_are_the_plain_ones_and_second_minus_first_is_reported() -> None:
    patient, labels, weak, strong = cohort()
    report = paired_difference(patient, labels, {"live": weak, "shadow": strong}, replicates=200)
    assert report["scorers"]["live"]["auroc"] == pytest.approx(auroc(labels, weak))
    assert report["scorers"]["shadow"]["auroc"] == pytest.approx(auroc(labels, strong))
    assert report["scorers"]["shadow"]["auprc"] == pytest.approx(auprc(labels, strong))
    assert report["differences"]["shadow - live"]["auroc"] == pytest.approx(auroc(labels, strong) - auroc(labels, weak))
    assert (report["events"], report["patients"], report["positives"]) == (1200, 60, int(labels.sum()))


def test_a_clearly_better_model_has_an_interval_above_zero_and_the_worse_one_below() -> None:
    patient, labels, weak, strong = cohort()
    better = paired_difference(patient, labels, {"a": weak, "b": strong}, replicates=300)["differences"]["b - a"]
    worse = paired_difference(patient, labels, {"a": strong, "b": weak}, replicates=300)["differences"]["b - a"]
    for figure in ("auroc", "auprc"):
        low, high = better[f"{figure}_ci95"]
        assert 0 < low <= better[figure] <= high
        assert worse[f"{figure}_ci95"] == pytest.approx([-high, -low])


def test_a_model_against_itself_differs_by_exactly_nothing() -> None:
    patient, labels, weak, _ = cohort()
    report = paired_difference(patient, labels, {"a": weak, "b": weak.copy()}, replicates=100)
    assert report["differences"]["b - a"]["auroc"] == 0.0 and report["differences"]["b - a"]["auroc_ci95"] == [0.0, 0.0]


def test_pairing_makes_the_interval_of_two_close_models_narrow() -> None:
    """Two close models: their paired difference's interval is far narrower than the interval
    of either model's own AUROC (what comparing two separate intervals would go by)."""
    patient, labels, weak, _ = cohort(seed=3)
    close = np.clip(weak + np.random.default_rng(1).normal(0, 0.02, weak.size), 0, 1)
    report = paired_difference(patient, labels, {"a": weak, "b": close}, replicates=300)
    paired_width = np.diff(report["differences"]["b - a"]["auroc_ci95"])[0]
    alone_width = np.diff(report["scorers"]["a"]["auroc_ci95"])[0]
    assert paired_width < 0.5 * alone_width


def test_without_both_classes_or_with_ragged_inputs_it_refuses() -> None:
    with pytest.raises(ValueError, match="both positives and negatives"):
        paired_difference(["p1", "p1", "p2"], np.zeros(3), {"a": np.array([0.1, 0.2, 0.3]), "b": np.array([0.3, 0.2, 0.1])})
    with pytest.raises(ValueError, match="one entry per event"):
        paired_difference(["p1", "p2"], np.array([1, 0]), {"a": np.array([0.1, 0.2]), "b": np.array([0.1])})


def records(
    patient: np.ndarray, labels: np.ndarray, risk: np.ndarray, version: str, role: str, horizon_h: float = 6.0
) -> list[ScoredOutcomeV1]:
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return [
        ScoredOutcomeV1(
            label_id=label_id(version, role, f"e{k}"), patient_id=str(patient[k]), event_id=f"e{k}",
            observed_at=start + timedelta(hours=k), risk=float(risk[k]), level="none", news2=0, model_version=version,
            role=role, horizon_h=horizon_h, label=bool(labels[k]), resolution="outcome" if labels[k] else "horizon_passed",
            outcome_kind="death" if labels[k] else None, outcome_at=start + timedelta(hours=k + 1) if labels[k] else None,
            labelled_at=start,
        )
        for k in range(len(labels))
    ]


def test_a_shadow_is_compared_with_the_live_model_on_the_events_both_scored_whatever_their_order() -> None:
    patient, labels, weak, strong = cohort(patients=30)
    live = records(patient, labels, weak, "v-live", "live")
    # The shadow started late (its first 100 events are missing) and labels by a longer horizon,
    # so a few of its labels differ; it is judged by the live labels all the same.
    shadow_labels = labels.copy()
    shadow_labels[200:210] = True
    shadow = records(patient, shadow_labels, strong, "v-shadow", "shadow", horizon_h=12.0)[100:][::-1]
    (entry,) = shadow_comparisons(live + shadow, replicates=100)
    assert entry == compare_on_events(live, shadow, replicates=100)
    assert (entry["live"], entry["shadow"], entry["horizon_h"]) == ("v-live", "v-shadow", {"live": 6.0, "shadow": 12.0})
    assert (entry["paired_events"], entry["live_only"], entry["shadow_only"]) == (500, 100, 0)
    assert entry["label_disagreements"] == int((labels[200:210] != shadow_labels[200:210]).sum())
    expected = paired_difference(patient[100:], labels[100:], {"live": weak[100:], "shadow": strong[100:]}, replicates=100)
    assert entry["report"] == expected


def test_without_a_shadow_nothing_is_compared_and_a_shadow_without_positives_says_so() -> None:
    patient, labels, weak, _ = cohort(patients=10)
    assert shadow_comparisons(records(patient, labels, weak, "v", "live")) == []
    no_outcome = np.zeros(labels.size, dtype=bool)
    (entry,) = shadow_comparisons(records(patient, no_outcome, weak, "v", "live") + records(patient, no_outcome, weak, "s", "shadow"))
    assert "report" not in entry and "both positives and negatives" in entry["error"]
