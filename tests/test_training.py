"""Training loop on tiny simulated cohorts: collate, early stopping, calibration, fine-tuning,
serving parity of the trained model, and the `vitalwatch train` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from schemas.variables import PREVIOUS_CATALOGUES
from models.features import Context, INPUTS, n_features
from models.datasets.series import PatientSeries, series_from_simulated
from models.datasets.simulator import simulate_cohort
from models.training.train import (
    TrainConfig,
    TrainResult,
    choose_thresholds,
    collate,
    fit_platt,
    predict_series,
    train_model,
    training_manifest,
)
from worker.cli import main


TINY = TrainConfig(hidden_size=8, epochs=2, batch_size=16, patience=2)


@pytest.fixture(scope="module")
def cohorts() -> tuple[list[PatientSeries], list[PatientSeries]]:
    train = [series_from_simulated(p) for p in simulate_cohort(40, seed=11)]
    val = [series_from_simulated(p) for p in simulate_cohort(20, seed=12)]
    return train, val


@pytest.fixture(scope="module")
def trained(cohorts) -> TrainResult:
    return train_model(*cohorts, TINY, progress=False)


def test_collate_pads_and_masks_events_after_the_deterioration(cohorts, trained: TrainResult) -> None:
    train, _ = cohorts
    deteriorating = next(s for s in train if s.event_at is not None and (s.ts > s.event_at).any())
    stable = min((s for s in train if s.event_at is None), key=lambda s: len(s.ts))
    x, labels, mask = collate([deteriorating, stable], trained.encoder)
    longest = max(len(deteriorating.ts), len(stable.ts))
    assert x.shape == (2, longest, trained.encoder.n_features) and labels.shape == mask.shape == (2, longest)
    assert mask[0].tolist() == (deteriorating.ts <= deteriorating.event_at).tolist() + [False] * (longest - len(deteriorating.ts))
    assert mask[1, : len(stable.ts)].all() and not mask[1, len(stable.ts) :].any()
    assert labels[0, : len(deteriorating.ts)].tolist() == deteriorating.labels.tolist()


def test_a_new_model_reads_the_variables_its_training_data_measures(trained: TrainResult) -> None:
    """The simulator charts the first catalogue's 18 variables and none of the later ones: a model
    trained on it reads exactly those, in catalogue order (so it scores as it did before the
    catalogue grew)."""
    assert trained.encoder.variables == PREVIOUS_CATALOGUES[0]
    assert trained.encoder.inputs == INPUTS
    assert trained.model.n_features == n_features(18, INPUTS) == 4 * 18 + 6


def test_training_produces_a_calibrated_model_and_ordered_thresholds(trained: TrainResult) -> None:
    assert [h["epoch"] for h in trained.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and 0.0 <= h["val_auroc"] <= 1.0 for h in trained.history)
    assert trained.best_val_auroc == max(h["val_auroc"] for h in trained.history)
    assert (float(trained.model.platt_scale), float(trained.model.platt_bias)) != (1.0, 0.0)
    assert 0 < trained.alert_thresholds["medium"] < trained.alert_thresholds["high"] <= 1


def test_early_stopping_ends_a_run_that_stops_improving(cohorts) -> None:
    # lr 0: the validation AUROC never improves after the first epoch.
    result = train_model(*cohorts, replace(TINY, epochs=20, patience=2, lr=0.0), progress=False)
    assert len(result.history) == 3


def test_fit_platt_recovers_a_known_calibration() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, 40_000)
    labels = (rng.random(logits.size) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(np.float64)
    scale, bias = fit_platt(logits, labels)
    assert scale == pytest.approx(0.5, abs=0.05) and bias == pytest.approx(-1.0, abs=0.05)


def test_thresholds_stay_ordered_when_the_specificities_coincide() -> None:
    labels = np.r_[np.zeros(50), np.ones(5)]
    risk = np.r_[np.full(50, 0.1), np.full(5, 0.9)]
    thresholds = choose_thresholds(labels, risk, TINY)
    assert 0.1 < thresholds["medium"] < thresholds["high"] <= 1.0


def test_predicted_risk_equals_streaming_the_events_one_by_one(cohorts, trained: TrainResult) -> None:
    """What evaluation measures (forward over the history) is what the worker serves (step), the
    encounter context (age, sex, time since admission) included."""
    _, val = cohorts
    stays = val[:3]
    assert all(stay.admission is not None for stay in stays)
    predicted = predict_series(trained.model, trained.encoder, stays)
    enc, model = trained.encoder, trained.model
    for stay, risk in zip(stays, predicted):
        memory = enc.initial_memory(1)
        context = stay.context()
        h = torch.zeros(model.num_layers, 1, model.hidden_size)
        c = torch.zeros_like(h)
        streamed = []
        with torch.no_grad():
            for k in range(len(stay.ts)):
                now = Context(torch.tensor(context.age[k : k + 1]), torch.tensor(context.sex[k : k + 1]), torch.tensor(context.admitted[k : k + 1]))
                x, memory = enc.step(
                    torch.from_numpy(stay.values[k : k + 1]), torch.tensor([stay.ts[k]], dtype=torch.float64), memory, now
                )
                logits, h, c = model.step(x, h, c)
                streamed.append(float(model.risk(logits)))
        np.testing.assert_allclose(risk, streamed, rtol=0, atol=1e-5)


def test_fine_tuning_keeps_architecture_and_normalisation(cohorts, trained: TrainResult, tmp_path: Path) -> None:
    manifest = training_manifest(trained, TINY, version="base", training_data={"simulator_seeds": [11, 12]})
    base = load_checkpoint(save_checkpoint(tmp_path, trained.model, trained.encoder, manifest))
    other = [series_from_simulated(p) for p in simulate_cohort(30, seed=13)]
    tuned = train_model(other, cohorts[1], replace(TINY, hidden_size=32, epochs=1), init_from=base, progress=False)
    assert tuned.model.hidden_size == 8
    assert torch.equal(tuned.encoder.mean, base.encoder.mean) and torch.equal(tuned.encoder.std, base.encoder.std)
    assert not torch.equal(tuned.model.head.weight, base.model.head.weight)
    assert torch.equal(base.model.head.weight, load_checkpoint(tmp_path).model.head.weight)  # the base is untouched


def test_train_command_writes_a_loadable_checkpoint_with_its_provenance(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ckpt"
    args = ["train", "--patients", "30", "--val-patients", "15", "--seed", "40", "--epochs", "1", "--hidden", "8", "--out", str(out), "--no-progress", "--version", "vw-test-1"]
    assert main(args) == 0
    loaded = load_checkpoint(out)
    data = loaded.manifest["training"]["data"]
    assert loaded.manifest["version"] == "vw-test-1" and loaded.model.hidden_size == 8
    assert data["simulator_seeds"] == [40, 41] and data["n_patients"] == {"train": 30, "val": 15}
    assert data["provenance"] == "synthetic, vitalwatch simulator"
    assert "best validation AUROC" in capsys.readouterr().out

    tuned = tmp_path / "tuned"
    assert main(["train", "--patients", "30", "--val-patients", "15", "--seed", "50", "--epochs", "1", "--init-from", str(out), "--out", str(tuned), "--no-progress"]) == 0
    manifest = json.loads((tuned / "manifest.json").read_text())
    assert manifest["training"]["data"]["fine_tuned_from"]["version"] == "vw-test-1"
    assert manifest["hidden_size"] == 8
