"""Evaluation: NEWS2 as the worker charts it, alert runs, exclusions, the report and the
`vitalwatch evaluate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint
from models.evaluation.cohort import CohortScores, alert_behaviour, alert_state, evaluate, news2_per_event
from schemas.variables import VARIABLE_NAMES
from models.features import FeatureEncoder, n_features
from models.network import RiskLSTM
from models.datasets.series import PatientSeries, horizon_labels
from schemas.variables import VARIABLE_INDEX, VARIABLES
from worker.cli import main

N_FEATURES = n_features(len(VARIABLE_NAMES))  # an encoder over the whole catalogue

V = len(VARIABLES)
H = 3600.0
T0 = 1_760_000_000.0


def stay(pid: str, hours: list[float], event_h: float | None, **columns: list[float]) -> PatientSeries:
    ts = T0 + np.array(hours) * H
    values = np.full((len(hours), V), np.nan, dtype=np.float32)
    for name, column in columns.items():
        values[:, VARIABLE_INDEX[name]] = column
    event_at = None if event_h is None else T0 + event_h * H
    return PatientSeries(pid, ts, values, horizon_labels(ts, event_at, 12.0), event_at)


def test_news2_carries_vitals_forward_for_24_hours() -> None:
    nan = math.nan
    s = stay(
        "a",
        [0.0, 1.0, 24.0, 25.5],
        None,
        heart_rate=[135, nan, nan, nan],  # 3 points
        resp_rate=[26, nan, nan, nan],  # 3 points
        spo2=[nan, 91, nan, nan],  # 3 points
        temperature=[nan, nan, nan, 37.0],
    )
    # at 24 h the first set is exactly 24 h old (still charted); at 25.5 h everything is stale
    assert news2_per_event(s).tolist() == [6, 9, 9, 0]


def test_alert_state_holds_until_the_clear_level() -> None:
    scores = np.array([0.1, 0.5, 0.45, 0.35, 0.5, 0.2, 0.6])
    assert alert_state(scores, 0.5, 0.4).tolist() == [False, True, True, False, True, False, True]
    assert alert_state(scores, 0.5, 0.5).tolist() == [False, True, False, False, True, False, True]


def cohort() -> CohortScores:
    stable = stay("s", [0, 6, 12, 24], None)
    sick = stay("d", [0, 10, 14, 18, 20, 21], 20.5)  # 10-20 h are within 12 h of the event; 21 h is after it
    return CohortScores(
        series=[stable, sick],
        risk=[np.array([0.1, 0.6, 0.1, 0.1]), np.array([0.1, 0.1, 0.2, 0.7, 0.8, 0.0])],
        news2=[np.array([0.0, 5, 0, 0]), np.array([0.0, 0, 0, 3, 7, 9])],
        horizon_hours=12.0,
    )


def test_alert_behaviour_counts_runs_days_and_lead_time() -> None:
    behaviour = alert_behaviour(cohort(), cohort().risk, 0.5, 0.8)
    # one alert in each stay; observed time 24 h + 20 h (the post-event event is excluded)
    assert behaviour["alerts_per_patient_day"] == pytest.approx(2 / (44 / 24))
    assert behaviour["median_lead_time_h"] == pytest.approx(2.5)  # first alert at 18 h, event at 20.5 h
    assert behaviour["detected_fraction"] == 1.0


def test_report_excludes_events_after_the_deterioration() -> None:
    report = evaluate(cohort(), {"medium": 0.5, "high": 0.75})
    assert report["cohort"] == {"patients": 2, "deteriorating": 1, "events": 9, "positive_events": 4, "horizon_hours": 12.0}
    # positives 0.1, 0.2, 0.7, 0.8 vs negatives 0.1 x4, 0.6: 2 + 4 + 5 + 5 of 20 pairs (ties 1/2)
    assert report["model"]["auroc"] == pytest.approx(16 / 20)
    assert report["model"]["sensitivity"] == pytest.approx(2 / 4) and report["model"]["specificity"] == pytest.approx(4 / 5)
    assert report["news2_5"]["sensitivity"] == pytest.approx(1 / 4) and report["news2_7"]["specificity"] == 1.0
    assert set(report["news2"]) == {"auroc", "auprc"}
    assert report["model_high"]["sensitivity"] == pytest.approx(1 / 4) and report["model_high"]["specificity"] == 1.0


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = RiskLSTM(N_FEATURES, hidden_size=8)
    encoder = FeatureEncoder(torch.tensor([v.normal for v in VARIABLES]), torch.ones(V))
    manifest = {
        "version": "vw-test-eval",
        "horizon_hours": 12.0,
        "alert_thresholds": {"medium": 0.45, "high": 0.6},
        "training": {"data": {"simulator_seeds": [5, 6]}},
    }
    return save_checkpoint(tmp_path / "ckpt", model, encoder, manifest)


def test_evaluate_command_writes_report_and_plots(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    plots = tmp_path / "img"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--patients", "40", "--seed", "77", "--json", str(out), "--plots", str(plots)]) == 0
    report = json.loads(out.read_text())
    assert {"model", "model_high", "news2", "news2_5", "news2_7"} <= set(report)
    assert report["model_high"]["threshold"] == 0.6
    assert {"auroc", "auprc", "ece", "sensitivity", "specificity", "f1", "median_lead_time_h", "alerts_per_patient_day"} <= set(report["model"])
    assert report["simulator"] == {"seed": 77, "patients": 40} and report["checkpoint"]["version"] == "vw-test-eval"
    assert 0.0 <= report["model"]["auroc"] <= 1.0 and report["model"]["threshold"] == 0.45
    for name in ("roc.png", "pr.png", "calibration.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NEWS2 >= 5" in capsys.readouterr().out


def test_evaluate_refuses_a_training_seed(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--patients", "10", "--seed", "6", "--json", str(out)]) == 2
    assert "seed 6 was used to train" in capsys.readouterr().err and not out.exists()
