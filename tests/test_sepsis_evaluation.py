"""The sepsis evaluation end to end: partitions from a checkpoint's split, the trees baseline,
and `vitalwatch evaluate --dataset physionet2019` on the set-A fixtures plus written stays,
with a small checkpoint trained here (a few stays, one epoch)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import save_checkpoint
from models.datasets.physionet import load_psv_directory
from models.evaluation.sepsis_data import checkpoint_partitions, checkpoint_split, cross_fit_partitions, icu_partition, load_sepsis_stays
from models.evaluation.trees import feature_names, fit_trees
from models.evaluation.sepsis_scores import stay_features
from models.training.train import TrainConfig, train_model, training_manifest
from schemas.variables import VARIABLE_INDEX
from tests.psv_writer import FIXTURES, write_cohort
from worker.cli import main

CONFIG = TrainConfig(hidden_size=8, epochs=1, batch_size=16, patience=1, horizon_hours=6.0, seed=0)


@pytest.fixture(scope="module")
def psv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("psv")
    write_cohort(directory, 44, seed=5, septic_every=2)
    for fixture in FIXTURES.glob("*.psv"):
        shutil.copy(fixture, directory / fixture.name)
    return directory


@pytest.fixture(scope="module")
def split(psv_dir: Path) -> dict[str, list[str]]:
    ids = sorted(p.stem for p in psv_dir.glob("*.psv"))
    return {"test": ids[0::3], "validation": ids[1::6], "train": sorted(set(ids) - set(ids[0::3]) - set(ids[1::6]))}


def save(directory: Path, result, data: dict) -> Path:
    return save_checkpoint(directory, result.model, result.encoder, training_manifest(result, CONFIG, version="vw-test-sepsis", training_data=data))


@pytest.fixture(scope="module")
def trained(psv_dir: Path, split: dict[str, list[str]]):
    series = {s.patient_id: s for s in load_psv_directory(psv_dir, horizon_hours=6.0)}
    return train_model([series[i] for i in split["train"]], [series[i] for i in split["validation"]], CONFIG, progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, trained, split: dict[str, list[str]]) -> Path:
    data = {
        "dataset": "physionet2019",
        "licence": "CC-BY-4.0",
        "split": {"seed": 3, "fractions": {"train": 0.7, "validation": 0.15, "test": 0.15}, "validation_stays": split["validation"], "test_stays": split["test"]},
    }
    return save(tmp_path_factory.mktemp("ckpt") / "set-a", trained, data)


def test_partitions_follow_the_checkpoints_split(psv_dir: Path, split: dict[str, list[str]]) -> None:
    manifest = {"training": {"data": {"dataset": "physionet2019", "split": {"seed": 3, "validation_stays": split["validation"], "test_stays": [*split["test"], "p_elsewhere"]}}}}
    stays = load_sepsis_stays(psv_dir, 6.0)
    ids = [s.stay_id for s in stays]
    (partition,), described = checkpoint_partitions(manifest, stays, seed=0)
    assert list(partition.test) == split["test"] and list(partition.validation) == split["validation"] and list(partition.train) == split["train"]
    assert (described["test_stays_listed"], described["test_stays_found"]) == (len(split["test"]) + 1, len(split["test"]))
    # a fine-tuned child of it keeps out what its parent tested on, intersected with its own test stays
    child = {"training": {"data": {"dataset": "physionet2019", "split": {"validation_stays": [], "test_stays": split["test"][:3]}, "fine_tuned_from": {"training_data": manifest["training"]["data"]}}}}
    assert checkpoint_split(child)["test_stays"] == split["test"][:3]
    # a site's own PSV files (`train --psv`: no data set name, a split by stay) count too
    site = {"training": {"data": {"provenance": "PhysioNet/CinC 2019 PSV files (x)", "split": {"by": "stay", "validation_stays": [], "test_stays": ["p1"]}}}}
    assert checkpoint_split(site)["test_stays"] == ["p1"]
    assert checkpoint_split({"training": {"data": {"simulator_seeds": [1, 2]}}}) is None
    with pytest.raises(ValueError, match="without a held-out test split"):
        checkpoint_split({"training": {"data": {"dataset": "physionet2019", "split_seed": 1}}})
    folds = cross_fit_partitions(stays, seed=0)
    assert sorted(i for p in folds for i in p.test) == sorted(ids)
    for p in folds:
        assert not set(p.test) & (set(p.train) | set(p.validation)) and not set(p.train) & set(p.validation)


def test_icu_partition_trains_on_one_unit_and_tests_on_the_other(psv_dir: Path) -> None:
    stays = load_sepsis_stays(psv_dir, 6.0)
    partition = icu_partition(stays, "MICU", "SICU", seed=0)
    unit = {s.stay_id: s.icu_type for s in stays}
    assert {unit[i] for i in partition.train + partition.validation} == {"MICU"} and {unit[i] for i in partition.test} == {"SICU"}
    septic = {s.stay_id for s in stays if s.grid.onset_hour is not None}
    pool_septic = septic & set(partition.train + partition.validation)
    # a stratified 15 %: both outcomes on the validation side, in proportion
    assert len(septic & set(partition.validation)) == round(0.15 * len(pool_septic)) >= 1
    assert len(set(partition.validation) - septic) == round(0.15 * (len(partition.train) + len(partition.validation) - len(pool_septic)))


def test_trees_train_and_score_deterministically(psv_dir: Path, split: dict[str, list[str]]) -> None:
    stays = {s.stay_id: s for s in load_sepsis_stays(psv_dir, 6.0)}
    variables = ["heart_rate", "resp_rate", "temperature", "lactate", "sodium"]  # sodium: never in PSV files
    columns = [VARIABLE_INDEX[v] for v in variables]

    def design(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [(stay_features(stays[i], columns), stays[i].grid) for i in ids]
        keep = [predicted & grid.scored for (_, predicted), grid in parts]
        return np.concatenate([f[k] for ((f, _), _), k in zip(parts, keep)]), np.concatenate([g.sepsis[k] for (_, g), k in zip(parts, keep)])

    train, validation, test = design(split["train"]), design(split["validation"]), design(split["test"])
    names = feature_names(variables)
    first = fit_trees(train, validation, names, specificities={"medium": 0.9, "high": 0.97}, seed=0)
    again = fit_trees(train, validation, names, specificities={"medium": 0.9, "high": 0.97}, seed=0)
    assert np.array_equal(first.predict(test[0]), again.predict(test[0]))
    assert {"sodium", "sodium_hours_since"} & set(first.fit["dropped_all_missing"]) == {"sodium"}  # hours-since is the cap, not NaN
    assert first.thresholds["medium"] <= first.thresholds["high"]
    from models.evaluation.metrics import auroc

    assert auroc(test[1], first.predict(test[0])) > 0.7  # the written cohort's septic stays drift before onset
    sub = fit_trees(train, validation, names, specificities={"medium": 0.9}, seed=0, max_training_hours=300)
    assert sub.fit["training_hours_used"] == 300 and 0 < sub.fit["negative_share_kept"] < 1


def test_evaluate_physionet2019_end_to_end(checkpoint: Path, psv_dir: Path, split: dict[str, list[str]], tmp_path: Path, capsys) -> None:
    out, plots = tmp_path / "eval.json", tmp_path / "img"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "physionet2019", "--psv-dir", str(psv_dir), "--replicates", "20"]
    assert main([*argv, "--json", str(out), "--plots", str(plots)]) == 0
    report = json.loads(out.read_text())
    assert report["split"]["judged"] == "the checkpoint's test stays" and report["cohort"]["stays"] == len(split["test"])
    assert report["dataset"]["directory"] == psv_dir.name and report["dataset"]["licence"] == "CC-BY-4.0"
    assert set(report["scorers"]) == {"model", "trees", "news2", "qsofa", "sirs"}
    assert set(report["operating_points"]) == {"model_medium", "model_high", "trees_medium", "trees_high", "news2_5", "news2_7", "qsofa_2", "sirs_2"}
    model = report["scorers"]["model"]
    assert 0 <= model["auroc_ci95"][0] <= model["auroc_ci95"][1] <= 1 and model["ece"] is not None
    assert report["differences"]["model - news2"]["auroc"] == pytest.approx(model["auroc"] - report["scorers"]["news2"]["auroc"])
    assert len(report["targets"]) == 7 and all(t["met"] in (True, False) for t in report["targets"])
    assert report["trees"][0]["training_hours"] > 0 and report["bootstrap"]["replicates"] == 20
    for name in ("roc.png", "pr.png", "calibration.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "qSOFA >= 2" in printed and "Targets" in printed and "caveat" in printed


def test_record_writes_the_held_out_figures_into_the_manifest_and_keeps_the_weights(
    checkpoint: Path, psv_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint carries what it was measured at on its held-out stays; the weights and their
    checksum do not change, so it still loads."""
    import shutil

    from models.checkpoint import load_checkpoint

    copy = tmp_path / "recorded"
    shutil.copytree(checkpoint, copy)
    weights = (copy / "model.safetensors").read_bytes()
    argv = ["evaluate", "--checkpoint", str(copy), "--dataset", "physionet2019", "--psv-dir", str(psv_dir), "--replicates", "10"]
    assert main([*argv, "--record", "--json", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    test = json.loads((copy / "manifest.json").read_text())["metrics"]["test"]
    assert test["auroc"] == report["scorers"]["model"]["auroc"] and test["auroc_ci95"] == report["scorers"]["model"]["auroc_ci95"]
    assert test["cohort"]["stays"] == report["cohort"]["stays"] and test["split"]["judged"] == "the checkpoint's test stays"
    assert test["high_threshold"]["false_per_true"] == report["operating_points"]["model_high"]["false_per_true"]
    assert (copy / "model.safetensors").read_bytes() == weights
    assert load_checkpoint(copy).manifest["metrics"]["test"]["trees_auroc"] == report["scorers"]["trees"]["auroc"]


def test_evaluate_transfer_runs_both_directions(checkpoint: Path, psv_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "physionet2019", "--psv-dir", str(psv_dir), "--replicates", "10"]
    assert main([*argv, "--transfer", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    directions = report["transfer"]["directions"]
    assert set(directions) == {"MICU -> SICU", "SICU -> MICU"}
    for block in directions.values():
        assert block["stays"]["test"] == block["cohort"]["stays"] and block["model_training"]["epochs"] == 1
        assert block["scorers"]["model"]["auroc"] is not None and block["seconds"]["training"] >= 0
    assert report["transfer"]["recipe"]["hidden_size"] == 8
    assert len(report["targets"]) == 7 + 4


def test_a_checkpoint_that_never_saw_the_data_is_judged_on_every_stay(trained, psv_dir: Path, tmp_path: Path) -> None:
    checkpoint = save(tmp_path / "sim", trained, {"simulator_seeds": [1, 2]})
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "physionet2019", "--psv-dir", str(psv_dir), "--replicates", "10"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["cohort"]["stays"] == len(list(psv_dir.glob("*.psv"))) and "every stay" in report["split"]["judged"]
    assert len(report["trees"]) == 2  # cross-fitted: each half scored by trees trained on the other


def test_a_checkpoint_trained_on_the_data_without_a_test_split_is_refused(trained, psv_dir: Path, tmp_path: Path, capsys) -> None:
    checkpoint = save(tmp_path / "nosplit", trained, {"dataset": "physionet2019", "split_seed": 1})
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "physionet2019", "--psv-dir", str(psv_dir)]) == 2
    assert "without a held-out test split" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--dataset", "physionet2019"], "needs --psv-dir"),
        (["--psv-dir", "x"], "--psv-dir needs --dataset physionet2019"),
        (["--dataset", "mimic-iv-demo", "--transfer"], "--transfer needs --dataset physionet2019"),
        (["--dataset", "physionet2019", "--psv-dir", "x", "--clif-dir", "y"], "--clif-dir needs --dataset"),
        (["--dataset", "mimic-iv-demo", "--record"], "--record needs --dataset physionet2019"),
    ],
)
def test_options_that_do_not_fit_are_named(argv: list[str], problem: str, capsys) -> None:
    assert main(["evaluate", *argv]) == 2
    assert problem in capsys.readouterr().err


def test_the_recipe_is_the_checkpoints_own() -> None:
    from models.evaluation.transfer import recipe

    assert recipe({"training": {"config": dataclasses.asdict(CONFIG)}}, "cpu") == CONFIG
    with pytest.raises(ValueError, match="no training recipe"):
        recipe({"training": {}}, "cpu")
    with pytest.raises(ValueError, match="does not know: warp"):
        recipe({"training": {"config": {"warp": 9}}}, "cpu")
