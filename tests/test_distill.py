"""Distillation with a tiny teacher (hidden 16) and student (hidden 8) on small simulated cohorts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from models.training.distill import DistillConfig, distill, distillation_loss
from models.network import RiskLSTM
from models.datasets.series import PatientSeries, series_from_simulated
from models.datasets.simulator import simulate_cohort
from models.training.train import TrainConfig, collate, train_model, training_manifest
from worker.cli import main

TEACHER_SEEDS = (61, 62)
STUDENT = TrainConfig(hidden_size=8, epochs=4, batch_size=8, lr=1e-2)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Two torch threads on two shared cores stall each other; these tests train on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cohorts() -> tuple[list[PatientSeries], list[PatientSeries]]:
    return tuple([series_from_simulated(p) for p in simulate_cohort(n, seed=s)] for n, s in zip((40, 20), TEACHER_SEEDS))


@pytest.fixture(scope="module")
def teacher_dir(cohorts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(hidden_size=16, epochs=3, batch_size=8, lr=1e-2)
    result = train_model(*cohorts, config, progress=False)
    data = {"simulator_seeds": list(TEACHER_SEEDS), "n_patients": {"train": 40, "val": 20}}
    manifest = training_manifest(result, config, version="tiny-teacher", training_data=data)
    return save_checkpoint(tmp_path_factory.mktemp("teacher"), result.model, result.encoder, manifest)


def logit_correlation(teacher: LoadedModel, student: RiskLSTM, series: list[PatientSeries]) -> float:
    x, _, mask = collate(series, teacher.encoder)
    with torch.no_grad():
        return float(np.corrcoef(teacher.model(x)[mask].numpy(), student(x)[mask].numpy())[0, 1])


def test_the_student_learns_to_reproduce_the_teacher(cohorts, teacher_dir: Path) -> None:
    train, val = cohorts
    teacher = load_checkpoint(teacher_dir)
    result = distill(teacher, train, val, DistillConfig(STUDENT, soft_weight=1.0), progress=False)

    torch.manual_seed(0)
    untrained = RiskLSTM(result.model.n_features, 8)
    assert logit_correlation(teacher, result.model, val) > max(0.5, logit_correlation(teacher, untrained, val) + 0.3)
    assert result.model.hidden_size == 8
    assert torch.equal(result.encoder.mean, teacher.encoder.mean) and torch.equal(result.encoder.std, teacher.encoder.std)
    assert result.best_val_auroc == max(h["val_auroc"] for h in result.history)
    assert (float(result.model.platt_scale), float(result.model.platt_bias)) != (1.0, 0.0)
    assert 0 < result.alert_thresholds["medium"] < result.alert_thresholds["high"] <= 1


def test_the_soft_term_is_minimal_where_the_student_agrees_with_the_teacher() -> None:
    teacher = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    student = teacher.clone().requires_grad_(True)
    loss = distillation_loss(student, teacher, labels, temperature=2.0, soft_weight=1.0, pos_weight=5.0)
    loss.backward()
    assert torch.allclose(student.grad, torch.zeros(4), atol=1e-6)
    moved = distillation_loss(teacher + 0.5, teacher, labels, temperature=2.0, soft_weight=1.0, pos_weight=5.0)
    assert moved > loss


def test_without_soft_weight_the_loss_is_the_class_weighted_hard_label_loss() -> None:
    student = torch.tensor([-1.0, 0.3, 2.0])
    labels = torch.tensor([0.0, 1.0, 1.0])
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(4.0), reduction="sum")(student, labels)
    loss = distillation_loss(student, torch.zeros(3), labels, temperature=3.0, soft_weight=0.0, pos_weight=4.0)
    assert loss.item() == pytest.approx(expected.item())


@pytest.mark.parametrize(("options", "problem"), [({"temperature": 0.0}, "temperature"), ({"soft_weight": 1.5}, "soft_weight")])
def test_a_meaningless_mix_is_refused(options: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DistillConfig(STUDENT, **options)


def test_vitalwatch_distill_writes_a_student_that_names_its_teacher(teacher_dir: Path, tmp_path: Path) -> None:
    out, report_path = tmp_path / "student", tmp_path / "report.json"
    code = main([
        "distill", "--teacher", str(teacher_dir), "--hidden", "8", "--patients", "40", "--val-patients", "20",
        "--heldout-patients", "30", "--seed", "71", "--epochs", "2", "--batch-size", "8", "--out", str(out),
        "--json", str(report_path), "--threads", "1", "--no-progress",
    ])
    assert code == 0

    student, teacher = load_checkpoint(out), load_checkpoint(teacher_dir)
    assert student.model.hidden_size == 8
    assert student.manifest["normalisation"] == teacher.manifest["normalisation"]
    data = student.manifest["training"]["data"]
    assert data["simulator_seeds"] == [71, 72]
    assert data["distilled_from"]["version"] == "tiny-teacher"
    assert data["distilled_from"]["weights_sha256"] == teacher.manifest["weights_sha256"]
    assert data["distilled_from"]["training_data"]["simulator_seeds"] == list(TEACHER_SEEDS)

    report = json.loads(report_path.read_text())
    assert report["heldout"] == {"seed": 73, "patients": 30, "device": "cpu", "step_batch": 512}
    for name, hidden in (("teacher", 16), ("student", 8)):
        assert report[name]["hidden_size"] == hidden
        assert 0.0 <= report[name]["auroc"] <= 1.0 and 0.0 <= report[name]["ece"] <= 1.0
        assert report[name]["patient_steps_per_s"] > 0
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    assert student.manifest["metrics"]["heldout_comparison"] == report


def test_vitalwatch_distill_refuses_a_heldout_seed_the_teacher_was_trained_on(teacher_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["distill", "--teacher", str(teacher_dir), "--seed", str(TEACHER_SEEDS[0] - 2), "--out", str(tmp_path / "s")])
    assert code == 2
    assert "held-out seed 61 (--seed + 2) was used to train" in capsys.readouterr().out
    assert not (tmp_path / "s").exists()
