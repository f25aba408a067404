"""The paired comparison of two models on the same events (models.evaluation.paired)."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.metrics import auprc, auroc
from models.evaluation.paired import pair_by_event, paired_difference


def cohort(seed: int = 0, patients: int = 60, hours: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patients' hours; a third of the patients deteriorate in their last 6 hours. Model a is
    weakly informative, model b strongly."""
    rng = np.random.default_rng(seed)
    patient = np.repeat([f"p{i}" for i in range(patients)], hours)
    hour = np.tile(np.arange(hours), patients)
    sick = np.repeat(rng.random(patients) < 1 / 3, hours)
    labels = sick & (hour >= hours - 6)
    weak = np.clip(0.3 + 0.1 * labels + rng.normal(0, 0.2, labels.size), 0, 1)
    strong = np.clip(0.2 + 0.5 * labels + rng.normal(0, 0.15, labels.size), 0, 1)
    return patient, labels, weak, strong


def test_the_point_figures_are_the_plain_ones_and_b_minus_a_is_reported() -> None:
    patient, labels, weak, strong = cohort()
    report = paired_difference(patient, labels, weak, strong, replicates=200)
    assert report["auroc"]["a"] == pytest.approx(auroc(labels, weak))
    assert report["auroc"]["b"] == pytest.approx(auroc(labels, strong))
    assert report["auprc"]["b"] == pytest.approx(auprc(labels, strong))
    assert report["auroc"]["difference"] == pytest.approx(auroc(labels, strong) - auroc(labels, weak))
    assert (report["events"], report["patients"], report["positives"]) == (1200, 60, int(labels.sum()))


def test_a_clearly_better_model_has_an_interval_above_zero_and_the_worse_one_below() -> None:
    patient, labels, weak, strong = cohort()
    better = paired_difference(patient, labels, weak, strong, replicates=300)
    worse = paired_difference(patient, labels, strong, weak, replicates=300)
    for figure in ("auroc", "auprc"):
        low, high = better[figure]["interval"]
        assert 0 < low <= better[figure]["difference"] <= high
        assert worse[figure]["interval"] == pytest.approx([-high, -low])


def test_a_model_against_itself_differs_by_exactly_nothing() -> None:
    patient, labels, weak, _ = cohort()
    report = paired_difference(patient, labels, weak, weak.copy(), replicates=100)
    assert report["auroc"]["difference"] == 0.0 and report["auroc"]["interval"] == [0.0, 0.0]


def test_pairing_is_by_patient_so_the_interval_is_narrower_than_resampling_hours_would_say() -> None:
    """Two close models: their paired difference's interval is far narrower than either model's
    own spread across the same resamples (what comparing two separate intervals would use)."""
    patient, labels, weak, _ = cohort(seed=3)
    rng = np.random.default_rng(1)
    close = np.clip(weak + rng.normal(0, 0.02, weak.size), 0, 1)
    report = paired_difference(patient, labels, weak, close, replicates=300)
    alone = paired_difference(patient, labels, weak, np.full(weak.size, 0.5), replicates=300)
    width = np.diff(report["auroc"]["interval"])[0]
    assert width < 0.5 * np.diff(alone["auroc"]["interval"])[0]


def test_without_both_classes_nothing_is_computed() -> None:
    report = paired_difference(["p1", "p1", "p2"], np.zeros(3), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))
    assert report["auroc"] == {"a": None, "b": None, "difference": None, "interval": None}


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per event"):
        paired_difference(["p1", "p2"], np.array([1, 0]), np.array([0.1, 0.2]), np.array([0.1]))


def test_events_are_paired_by_id_whatever_their_order() -> None:
    pairs = pair_by_event(["e1", "e2", "e3", "e4"], ["e4", "e2", "e9", "e1"])
    assert pairs.a.tolist() == [0, 1, 3] and pairs.b.tolist() == [3, 1, 0]
    assert (pairs.only_a, pairs.only_b) == (1, 1)
    with pytest.raises(ValueError, match="more than once"):
        pair_by_event(["e1", "e1"], ["e1"])
