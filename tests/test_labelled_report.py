"""The labelled-scores report (validate, evaluate --scored): its figures against their definitions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.datasets.series import series_from_simulated
from models.datasets.simulator import simulate_cohort
from models.evaluation.cohort import evaluate, score_cohort
from models.evaluation.labelled_report import LabelledScores, labelled_report, labelled_scores_of_cohort, reports_by_model
from models.evaluation.metrics import auprc, auroc, expected_calibration_error
from tests.labelled_records import records_of
from worker.tools.scored_outcomes import Selection, select

H = 3600.0


@pytest.fixture(scope="module")
def cohort():
    loaded = load_checkpoint(DEFAULT_CHECKPOINT)
    horizon = float(loaded.manifest["horizon_hours"])
    scored = score_cohort(loaded, [series_from_simulated(p, horizon) for p in simulate_cohort(80, seed=4141)])
    return loaded, scored


def test_ranking_equals_the_offline_evaluation_of_the_same_cohort(cohort) -> None:
    loaded, scored = cohort
    thresholds = loaded.manifest["alert_thresholds"]
    scores = labelled_scores_of_cohort(scored, thresholds)
    report = labelled_report(scores, replicates=50)
    offline = evaluate(scored, thresholds)
    assert report["cohort"]["scores"] == offline["cohort"]["events"]
    assert report["cohort"]["positive_scores"] == offline["cohort"]["positive_events"]
    assert report["scorers"]["model"]["auroc"] == pytest.approx(offline["model"]["auroc"], abs=1e-12)
    assert report["scorers"]["model"]["auprc"] == pytest.approx(offline["model"]["auprc"], abs=1e-12)
    assert report["scorers"]["news2"]["auroc"] == pytest.approx(offline["news2"]["auroc"], abs=1e-12)
    assert report["calibration"]["ece"] == pytest.approx(expected_calibration_error(scores.label, scores.risk), abs=1e-12)
    assert sum(b["count"] for b in report["calibration"]["deciles"]) == scores.size
    low, high = report["scorers"]["model"]["auroc_ci95"]
    assert low <= report["scorers"]["model"]["auroc"] <= high


def _two_patients() -> LabelledScores:
    """p1: outcome at 10 h, scores hourly from 0 h to 10 h, alerting (medium) from 6 h on;
    p2: no outcome, scores at 0 h to 24 h every 6 h, one alert at 12 h."""
    t1 = np.arange(0, 11) * H
    t2 = np.arange(0, 25, 6) * H
    level1 = (t1 >= 6 * H).astype(int)
    level2 = np.array([0, 0, 1, 0, 0])
    label1 = t1 >= 4 * H  # within 6 h of the outcome at 10 h
    return LabelledScores.build(
        ["p1"] * t1.size + ["p2"] * t2.size, np.r_[t1, t2], np.r_[np.linspace(0.1, 0.9, t1.size), [0.2, 0.1, 0.5, 0.1, 0.05]],
        np.r_[np.full(t1.size, 3.0), [1.0, 1.0, 6.0, 1.0, 0.0]], np.r_[level1, level2], np.r_[label1, np.zeros(t2.size, bool)],
        np.r_[np.where(label1, 10 * H, np.nan), np.full(t2.size, np.nan)], 6.0,
    )


def test_operating_points_count_alerts_lead_times_and_burden() -> None:
    scores = _two_patients()
    report = labelled_report(scores, replicates=20)
    medium = report["operating_points"]["model_medium"]
    # p1's alert at 6 h is 4 h before its outcome; two alerts over 10 h + 24 h of patient time.
    assert medium["median_lead_time_h"] == pytest.approx(4.0)
    assert medium["detected_fraction"] == 1.0
    assert medium["alerts_per_patient_day"] == pytest.approx(2 / (34 / 24))
    assert medium["sensitivity"] == pytest.approx(5 / 7)  # positives at 4..10 h, flagged from 6 h
    assert medium["precision"] == pytest.approx(5 / 6)
    news2 = report["operating_points"]["news2_5"]
    assert news2["detected_fraction"] == 0.0 and news2["median_lead_time_h"] is None
    assert report["scorers"]["model"]["auroc"] == pytest.approx(auroc(scores.label, scores.risk))
    assert report["scorers"]["model"]["auprc"] == pytest.approx(auprc(scores.label, scores.risk))
    assert report["cohort"]["patients_with_outcome"] == 1


def test_nothing_to_rank_is_refused() -> None:
    scores = _two_patients()
    only_negatives = scores.only(scores.event_id[~scores.label])
    assert only_negatives.size == int((~scores.label).sum()) and only_negatives.patient_ids == ("p1", "p2")
    with pytest.raises(ValueError, match="0 positives"):
        labelled_report(only_negatives)


def test_records_are_deduplicated_selected_and_reported_per_model() -> None:
    scores = _two_patients()
    live = records_of(scores, "vw-a")
    shadow = records_of(scores, "vw-b", role="shadow")
    values = [r.model_dump_json().encode() for r in live + live[:4] + shadow] + [b"{not json", b'{"label_id": "x"}']
    read = select(values, Selection())
    assert read.counts() == {"read": len(values), "selected": 2 * scores.size, "duplicates": 4, "malformed": 2, "not_selected": 0}
    entries = reports_by_model(read.records, replicates=20)
    assert [(e["model_version"], e["role"]) for e in entries] == [("vw-a", "live"), ("vw-b", "shadow")]
    assert entries[0]["report"] == entries[1]["report"]  # same scores, same report: each judged on its own

    since = datetime.fromtimestamp(0, timezone.utc) + timedelta(hours=6)
    chosen = select(values, Selection(since=since, model_version="vw-a"))
    assert {r.model_version for r in chosen.records} == {"vw-a"}
    assert all(r.observed_at >= since for r in chosen.records)
    assert chosen.not_selected == scores.size + int((scores.observed_at < 6 * H).sum())
