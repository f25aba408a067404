"""The sepsis evaluation's hour grid, alerts and bootstrap on hand-made stays and scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.datasets.physionet import load_psv_file
from models.datasets.series import PatientSeries
from models.evaluation.bootstrap import WeightedRanking, interval, replicate_values, weighted_median
from models.evaluation.hour_grid import StayHours, at_hours, carry_forward, read_hour_grid
from models.evaluation.hourly_alerts import stay_alerts
from models.evaluation.metrics import auprc, auroc, expected_calibration_error
from models.evaluation.sepsis import judge_hours
from models.evaluation.sepsis_data import SepsisStay
from models.evaluation.sepsis_scores import SCORERS, HourlyScores, baseline_scores
from schemas.variables import VARIABLE_INDEX, VARIABLES
from tests.psv_writer import write_psv

nan = math.nan


def grid(hours: int, first_label: int | None, stay_id: str = "s") -> StayHours:
    h = np.arange(1, hours + 1, dtype=float)
    return StayHours(stay_id, h, np.zeros(hours, dtype=bool) if first_label is None else h >= first_label)


@pytest.fixture
def stay(tmp_path: Path) -> SepsisStay:
    # Hours 1-8; nothing measured at 1, 4, 6, 7; labs (lactate) and vitals at 3; SepsisLabel from 2: onset at 8.
    path = write_psv(
        tmp_path, "p1", [1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 1, 1, 1, 1, 1, 1],
        {"HR": [nan, 100, 120, nan, 95, nan, nan, 90], "Lactate": [nan, nan, 3.0, nan, nan, nan, nan, nan], "Resp": [nan, 24, nan, nan, nan, nan, nan, nan]},
    )
    return SepsisStay(read_hour_grid(path), load_psv_file(path, horizon_hours=6))


def test_the_grid_is_every_row_of_the_file(stay: SepsisStay) -> None:
    assert stay.grid.hours.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert stay.grid.onset_hour == 8.0
    assert stay.grid.scored.all()  # up to and including onset
    assert np.array_equal(stay.grid.ts[[1, 2]], np.unique(stay.series.ts)[:2])  # same instants as the series rows
    assert len(stay.series.ts) == 5  # hour 2 vitals; hour 3 labs then vitals; hours 5 and 8 vitals


def test_what_is_known_at_each_hour(stay: SepsisStay) -> None:
    carried = carry_forward(stay.series, stay.grid.ts, [VARIABLE_INDEX["heart_rate"], VARIABLE_INDEX["lactate"]])
    assert carried.last_row.tolist() == [-1, 0, 2, 2, 3, 3, 3, 4]  # hour 3: after its vitals row (row 2)
    assert np.allclose(carried.values[:, 0], [nan, 100, 120, 120, 95, 95, 95, 90], equal_nan=True)
    assert np.allclose(carried.values[:, 1], [nan, nan, 3, 3, 3, 3, 3, 3], equal_nan=True)
    assert carried.age_h[:, 1].tolist() == [math.inf, math.inf, 0, 1, 2, 3, 4, 5]
    assert carried.counts[:, 0].tolist() == [0, 1, 2, 2, 3, 3, 3, 4]
    # the risk the worker would show at each hour: the last row's, none before the first event
    risk = at_hours(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), carried.last_row)
    assert np.allclose(risk, [nan, 0.1, 0.3, 0.3, 0.4, 0.4, 0.4, 0.5], equal_nan=True)


def test_baselines_use_values_at_most_24_hours_old() -> None:
    h = StayHours("s", np.array([1.0, 2.0, 26.0, 27.0]), np.zeros(4, dtype=bool))
    values = np.full((2, len(VARIABLES)), nan, dtype=np.float32)
    values[0, VARIABLE_INDEX["resp_rate"]] = 25  # NEWS2 3, qSOFA 1, SIRS 1
    values[1, VARIABLE_INDEX["heart_rate"]] = 95  # NEWS2 1, SIRS 1
    series = PatientSeries("s", h.ts[[1, 2]], values, np.zeros(2, dtype=np.float32), None)
    scores = baseline_scores(carry_forward(series, h.ts, range(len(VARIABLES))))
    # hour 1: nothing yet; hour 2: the rate; hour 26: rate (24 h old) and pulse; hour 27: the rate is 25 h old
    assert np.allclose(scores["news2"], [nan, 3, 4, 1], equal_nan=True)
    assert np.allclose(scores["qsofa"], [nan, 1, 1, 0], equal_nan=True)
    assert np.allclose(scores["sirs"], [nan, 1, 2, 1], equal_nan=True)


def test_alerts_true_false_and_lead_time() -> None:
    g = grid(30, 15)  # onset at 21: true alerts are raised in hours 9-24
    scores = np.full(30, 0.1)
    scores[0] = nan  # no prediction before the first event
    scores[2] = 0.6  # hour 3: too early, false
    scores[11:14] = [0.6, 0.45, 0.6]  # hour 12: true; 0.45 holds the run (clears under 0.4)
    scores[21] = 0.7  # hour 22: true, second
    scores[25] = 0.9  # hour 26: after the window, false
    alerts = stay_alerts(g, scores, 0.5, 0.4)
    assert (alerts.alerts, alerts.true_alerts, alerts.lead_h) == (4, 2, 9.0)
    assert np.flatnonzero(alerts.alerting).tolist() == [2, 11, 12, 13, 21, 25]
    clean = stay_alerts(grid(30, None), scores, 0.5, 0.4)
    assert (clean.alerts, clean.true_alerts, math.isnan(clean.lead_h)) == (4, 0, True)


def hand_scores() -> HourlyScores:
    """Two stays: a septic one (12 h, onset at hour 8) whose model score rises from hour 4 and
    stays high after onset, and a clean one (6 h) scored low; no prediction at hour 1."""
    septic, clean = grid(12, 2, "a"), grid(6, None, "b")
    model = [np.r_[nan, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], np.r_[nan, 0.2, 0.2, 0.2, 0.2, 0.2]]
    flat = [np.where(np.isnan(m), nan, 0.0) for m in model]
    return HourlyScores(
        [SepsisStay(septic, None), SepsisStay(clean, None)],
        {name: (model if name in ("model", "trees") else flat) for name in SCORERS},
        [{"medium": 0.5, "high": 0.8}] * 2,
    )


def test_hours_after_onset_are_not_ranked_but_count_for_utility() -> None:
    report = judge_hours(hand_scores(), {"medium": 0.5, "high": 0.8}, replicates=20).report
    c = report["cohort"]
    # ranked: the septic stay's hours 2-8 (7, all positive: SepsisLabel from hour 2), the clean stay's 2-6 (5)
    assert (c["ranked_hours"], c["positive_hours"], c["septic_stays"], c["hours"]) == (12, 7, 1, 18)
    assert report["scorers"]["model"]["auroc"] == pytest.approx(5 / 7)  # hours 2-3 (0.1) rank below the clean 0.2
    # Utility by hand, rows of the septic stay (t_sepsis = row 1 + 6 = 7, hour 8): alerting rows
    # 3-11. Row 2 (dt -5) missed: -2/9; rows 3-10 (dt -4..3) earn 7/9 down to 0, three of them
    # after onset; row 11 is past the window: U = 26/9. Best: rows 0-10 = 5/6 + 1 + 36/9 = 35/6;
    # inaction: -2/9 x (1 + ... + 9) = -10. The clean stay never alerts: 0.
    assert report["operating_points"]["model_medium"]["utility"] == pytest.approx((26 / 9 + 10) / (35 / 6 + 10))
    point = report["operating_points"]["model_medium"]
    # one alert, at hour 4, true (onset 8): lead 4 h; 18 hours observed
    assert point["alerts_per_patient_day"] == pytest.approx(1 / (18 / 24))
    assert (point["false_per_true"], point["alerted_share"], point["median_lead_h"], point["median_lead_alerted_h"]) == (0.0, 1.0, 4.0, 4.0)
    # NEWS2 >= 5 never alerts: utility 0 (inaction), no septic stay alerted, lead 0 when unalerted count as 0
    news2 = report["operating_points"]["news2_5"]
    assert (news2["utility"], news2["alerted_share"], news2["median_lead_h"], news2["median_lead_alerted_h"]) == (0.0, 0.0, 0.0, None)
    assert report["differences"]["model - news2"]["auroc"] == pytest.approx(5 / 7 - 0.5)


def test_weighted_metrics_equal_the_plain_ones() -> None:
    rng = np.random.default_rng(3)
    labels, scores, stay = rng.random(400) < 0.2, np.round(rng.random(400), 1), rng.integers(0, 40, 400)
    ranking = WeightedRanking(labels, scores, stay)
    ones = np.ones(40)
    assert ranking.auroc(ones) == pytest.approx(auroc(labels, scores))
    assert ranking.auprc(ones) == pytest.approx(auprc(labels, scores))
    assert ranking.ece(ones) == pytest.approx(expected_calibration_error(labels, scores))
    weights = rng.integers(0, 3, 40).astype(float)  # a resample: stay k drawn weights[k] times
    repeat = weights[stay].astype(int)
    assert ranking.auroc(weights) == pytest.approx(auroc(np.repeat(labels, repeat), np.repeat(scores, repeat)))
    assert ranking.auprc(weights) == pytest.approx(auprc(np.repeat(labels, repeat), np.repeat(scores, repeat)))
    for _ in range(50):
        values, counts = rng.integers(0, 6, 7).astype(float), rng.integers(0, 3, 7)
        if counts.sum():
            assert weighted_median(values, counts) == np.median(np.repeat(values, counts))


def test_bootstrap_repeats_exactly_for_a_seed() -> None:
    values = np.arange(30, dtype=float)

    def statistics() -> dict:
        return {"mean": lambda w: float(w @ values / w.sum()), "none": lambda w: nan}

    first = replicate_values(statistics(), 30, replicates=50, seed=7)
    again = replicate_values(statistics(), 30, replicates=50, seed=7)
    other = replicate_values(statistics(), 30, replicates=50, seed=8)
    assert np.array_equal(first["mean"], again["mean"]) and not np.array_equal(first["mean"], other["mean"])
    low, high = interval(first["mean"])
    assert low < 14.5 < high
    assert interval(first["none"]) is None  # never computable: no interval, not a made-up one
    report = judge_hours(hand_scores(), {"medium": 0.5, "high": 0.8}, replicates=30, seed=1).report
    assert report == judge_hours(hand_scores(), {"medium": 0.5, "high": 0.8}, replicates=30, seed=1).report
