"""Metrics against hand-computed cases, ties included (NEWS2 is an integer score)."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.metrics import (
    auprc,
    auroc,
    calibration_bins,
    expected_calibration_error,
    operating_point,
    pr_curve,
    roc_curve,
    threshold_for_specificity,
)


def test_auroc_counts_ordered_pairs() -> None:
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered.
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half() -> None:
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # positives (2, 3, 1) vs negatives (1, 2): 1 + 0.5 + 2 + 0.5 + 0 = 4 of 6
    assert auroc([0, 0, 1, 1, 1], [1, 2, 2, 3, 1]) == pytest.approx(4 / 6)


def test_auprc_is_average_precision() -> None:
    # thresholds 0.9: P 1, R .5 | 0.8: P .5 | 0.7: P 2/3, R 1 | 0.1: P .5
    assert auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert auprc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # one tied threshold, not an order


def test_curves_put_tied_scores_on_one_point() -> None:
    roc = roc_curve([0, 1, 1, 0], [2, 2, 5, 1])
    assert roc.x.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert roc.y.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert roc.thresholds.tolist() == [np.inf, 5, 2, 1]
    pr = pr_curve([0, 1, 1, 0], [2, 2, 5, 1])
    assert pr.x.tolist() == [0.5, 1.0, 1.0] and pr.y.tolist() == pytest.approx([1.0, 2 / 3, 0.5])


def test_operating_point() -> None:
    point = operating_point([1, 1, 0, 0, 0], [1, 0, 1, 0, 0])
    assert (point.sensitivity, point.specificity, point.precision, point.f1) == pytest.approx((0.5, 2 / 3, 0.5, 0.5))
    assert operating_point([1, 0], [0, 0]).f1 == 0.0


def test_threshold_for_specificity_flags_just_enough() -> None:
    labels = np.r_[np.zeros(10), np.ones(2)]
    scores = np.r_[np.arange(1, 11) / 10, 0.95, 0.5]
    threshold = threshold_for_specificity(labels, scores, 0.9)
    assert 0.9 < threshold <= 0.95
    assert operating_point(labels, scores >= threshold).specificity == pytest.approx(0.9)


def test_expected_calibration_error_weighs_bins_by_count() -> None:
    # bin 0: predicted .05, observed 0 (2 events); bin 9: predicted .95, observed .5 (2 events)
    assert expected_calibration_error([0, 0, 1, 0], [0.05, 0.05, 0.95, 0.95]) == pytest.approx((2 * 0.05 + 2 * 0.45) / 4)
    predicted, observed, count = calibration_bins([0, 1], [0.0, 1.0])
    assert count.tolist() == [1] + [0] * 8 + [1] and observed[9] == 1.0 and np.isnan(predicted[5])


@pytest.mark.parametrize("labels, scores", [([1, 1], [0.2, 0.3]), ([0, 1], [0.2, np.nan]), ([0, 1], [0.2])])
def test_metrics_reject_unusable_input(labels: list, scores: list) -> None:
    with pytest.raises(ValueError):
        auroc(labels, scores)
