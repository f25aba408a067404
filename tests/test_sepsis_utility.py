"""The PhysioNet/CinC 2019 utility score on hand-worked cases, and against a row-by-row
transcription of the challenge's published loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation.utility import normalized_utility, onset_row, row_utilities, stay_utility

# A septic stay of 20 hourly rows, SepsisLabel from row 8: t_sepsis = 8 + 6 = 14, so rows
# 2..17 are [t_sepsis - 12, t_sepsis + 3] and rows 18, 19 come after the window.
SEPTIC = np.r_[np.zeros(8), np.ones(12)]
# A stay that never becomes septic, 10 rows.
CLEAN = np.zeros(10)


def cohort_utility(stays: list[tuple[np.ndarray, np.ndarray]]) -> float:
    parts = [stay_utility(labels, predictions) for labels, predictions in stays]
    return normalized_utility(*(np.array([getattr(p, k) for p in parts]) for k in ("observed", "best", "inaction")))


def test_onset_is_six_hours_after_the_first_label() -> None:
    assert onset_row(SEPTIC) == 14.0
    assert onset_row(CLEAN) is None


def test_the_septic_stays_sums_by_hand() -> None:
    parts = stay_utility(SEPTIC, np.zeros(20, dtype=bool))
    # best: rows 2..8 earn 0, 1/6, ..., 1 (= 3.5), rows 9..17 earn 8/9 down to 0 (= 4)
    assert parts.best == pytest.approx(7.5)
    # inaction: rows 9..17 (dt -5..3) each lose 2 (dt + 6) / 9: 2/9 x (1 + ... + 9) = 10
    assert parts.inaction == pytest.approx(-10.0)
    assert parts.observed == pytest.approx(-10.0)


def test_a_perfect_predictor_scores_one_and_inaction_zero() -> None:
    best = (np.arange(20) >= 2) & (np.arange(20) <= 17)
    assert cohort_utility([(SEPTIC, best), (CLEAN, np.zeros(10, dtype=bool))]) == pytest.approx(1.0)
    assert cohort_utility([(SEPTIC, np.zeros(20, dtype=bool)), (CLEAN, np.zeros(10, dtype=bool))]) == pytest.approx(0.0)


def test_always_positive_on_a_small_cohort() -> None:
    # septic stay all positive: rows 0, 1 (dt -14, -13) earn u_fp = -0.05 each, 2..17 earn 7.5,
    # rows 18, 19 nothing: 7.4. The clean stay's 10 false positives: -0.5. U = 6.9.
    # normalized = (6.9 - (-10)) / (7.5 - (-10)) = 16.9 / 17.5
    everything = [(SEPTIC, np.ones(20, dtype=bool)), (CLEAN, np.ones(10, dtype=bool))]
    assert stay_utility(*everything[0]).observed == pytest.approx(7.4)
    assert cohort_utility(everything) == pytest.approx(16.9 / 17.5)


@pytest.mark.parametrize(
    ("row", "earned", "missed"),
    [
        (1, -0.05, 0.0),  # dt -13: too early, a false alarm's cost
        (2, 0.0, 0.0),  # dt -12: the window opens at 0
        (5, 0.5, 0.0),  # dt -9: half way up (1/6 per hour)
        (8, 1.0, 0.0),  # dt -6: the optimum; a miss costs nothing yet
        (11, 2.0 / 3.0, -2.0 / 3.0),  # dt -3: 1/9 per hour down from 1; a miss costs 2/9 per hour from -6
        (17, 0.0, -2.0),  # dt +3: the window closes at 0; a miss costs the most
        (19, 0.0, 0.0),  # after the window: nothing either way
    ],
)
def test_a_single_positive_earns_by_hand(row: int, earned: float, missed: float) -> None:
    predictions = np.zeros(20, dtype=bool)
    predictions[row] = True
    assert row_utilities(SEPTIC, predictions)[row] == pytest.approx(earned)
    assert row_utilities(SEPTIC, ~predictions)[row] == pytest.approx(missed)
    # the stay's sum: what the positive earns replaces what missing that row costs in -10
    assert stay_utility(SEPTIC, predictions).observed == pytest.approx(-10.0 - missed + earned)


def test_late_early_and_false_positives_normalized_by_hand() -> None:
    late = np.zeros(20, dtype=bool)
    late[16] = True  # dt +2: earns 1/9 instead of losing 16/9
    assert cohort_utility([(SEPTIC, late)]) == pytest.approx((17.0 / 9.0) / 17.5)
    early = np.zeros(20, dtype=bool)
    early[1] = True  # dt -13: -0.05
    assert cohort_utility([(SEPTIC, early)]) == pytest.approx(-0.05 / 17.5)
    false = np.zeros(10, dtype=bool)
    false[4] = True
    assert cohort_utility([(SEPTIC, np.zeros(20, dtype=bool)), (CLEAN, false)]) == pytest.approx(-0.05 / 17.5)


def test_a_cohort_without_septic_stays_cannot_be_normalized() -> None:
    assert np.isnan(cohort_utility([(CLEAN, np.ones(10, dtype=bool))]))


def test_weights_count_a_stay_several_times() -> None:
    a, b = stay_utility(SEPTIC, np.ones(20, dtype=bool)), stay_utility(CLEAN, np.ones(10, dtype=bool))
    observed, best, inaction = (np.array([getattr(a, k), getattr(b, k)]) for k in ("observed", "best", "inaction"))
    # the clean stay twice: U = 7.4 - 1.0
    assert normalized_utility(observed, best, inaction, np.array([1.0, 2.0])) == pytest.approx(16.4 / 17.5)


def challenge_loop(labels: np.ndarray, predictions: np.ndarray) -> float:
    """compute_prediction_utility of the challenge's evaluate_sepsis_score.py, row by row."""
    dt_early, dt_optimal, dt_late, max_u_tp, min_u_fn, u_fp, u_tn = -12, -6, 3.0, 1, -2, -0.05, 0
    septic = bool(np.any(labels))
    t_sepsis = np.argmax(labels) - dt_optimal if septic else float("inf")
    m_1 = float(max_u_tp) / float(dt_optimal - dt_early)
    b_1 = -m_1 * dt_early
    m_2 = float(-max_u_tp) / float(dt_late - dt_optimal)
    b_2 = -m_2 * dt_late
    m_3 = float(min_u_fn) / float(dt_late - dt_optimal)
    b_3 = -m_3 * dt_optimal
    u = np.zeros(len(labels))
    for t in range(len(labels)):
        if t <= t_sepsis + dt_late:
            if septic and predictions[t]:
                u[t] = max(m_1 * (t - t_sepsis) + b_1, u_fp) if t <= t_sepsis + dt_optimal else m_2 * (t - t_sepsis) + b_2
            elif not septic and predictions[t]:
                u[t] = u_fp
            elif septic and not predictions[t]:
                u[t] = 0 if t <= t_sepsis + dt_optimal else m_3 * (t - t_sepsis) + b_3
            else:
                u[t] = u_tn
    return float(np.sum(u))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), first=st.integers(0, 70), bits=st.integers(0, 2**60 - 1))
def test_matches_the_challenge_loop(n: int, first: int, bits: int) -> None:
    labels = (np.arange(n) >= first).astype(float)
    predictions = np.array([(bits >> k) & 1 for k in range(n)], dtype=bool)
    assert stay_utility(labels, predictions).observed == pytest.approx(challenge_loop(labels, predictions))
