"""`vitalwatch recalibrate` on a deliberately mis-calibrated model's labelled scores.

The parent is the shipped checkpoint with its calibration pushed off (every risk
systematically too high): the same weights, a manifest calibration of sigmoid(0.7 x logit + 1.5)
on top of the trained one. Its scores of a simulated cohort, labelled offline, are the
evidence; the recalibrated checkpoint must bring the calibration error under 0.05 and the
alerts per patient-day within 10 % of the site's target, keep the weights byte for byte, and
verify like any checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, MANIFEST_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint
from models.evaluation.metrics import expected_calibration_error
from models.training.recalibration import alerts_per_patient_day, recalibrated
from tests.labelled_records import records_of, simulated_labelled_scores
from worker.cli import main
from worker.tools.scored_outcomes import write_jsonl

TARGET_MEDIUM, TARGET_HIGH = 0.3, 0.08  # alerts per patient-day


def _miscalibrated(directory: Path) -> Path:
    shutil.copytree(DEFAULT_CHECKPOINT, directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    scale, bias = manifest["calibration"]["scale"], manifest["calibration"]["bias"]
    manifest["calibration"] = {"method": "platt", "scale": 0.7 * scale, "bias": 0.7 * bias + 1.5}
    manifest["version"] = "vw-miscalibrated-test"
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("recalibrate")
    parent = _miscalibrated(root / "parent")
    loaded = load_checkpoint(parent)
    scores = simulated_labelled_scores(loaded, patients=600, seed=6161)
    exported = root / "scored.jsonl"
    write_jsonl(exported, records_of(scores, loaded.manifest["version"]))
    return root, parent, scores, exported


def test_a_miscalibrated_stream_is_recalibrated_to_the_target(evidence) -> None:
    root, parent, scores, exported = evidence
    assert expected_calibration_error(scores.label, scores.risk) > 0.15  # the premise: risks far too high
    out = root / "site"
    assert main([
        "recalibrate", "--checkpoint", str(parent), "--scored", str(exported), "--out", str(out), "--version", "vw-site-1",
        "--target", "alerts-per-day", "--medium", str(TARGET_MEDIUM), "--high", str(TARGET_HIGH),
    ]) == 0
    child = load_checkpoint(out)  # verifies: checksum, tensors, manifest
    assert (out / WEIGHTS_FILE).read_bytes() == (parent / WEIGHTS_FILE).read_bytes()
    manifest = child.manifest
    assert manifest["version"] == "vw-site-1"
    assert manifest["weights_sha256"] == json.loads((parent / MANIFEST_FILE).read_text())["weights_sha256"]
    recal = manifest["recalibration"]
    assert recal["parent"]["version"] == "vw-miscalibrated-test"
    assert recal["evidence"]["scores"] == scores.size and recal["evidence"]["observed_from"]
    assert recal["target"] == {"kind": "alerts-per-day", "medium": TARGET_MEDIUM, "high": TARGET_HIGH}

    # The new checkpoint's own risks are the fitted layer on the parent's: one Platt step.
    rescored = simulated_labelled_scores(child, patients=600, seed=6161)
    layer = recalibrated(scores.risk, recal["layer"]["a"], recal["layer"]["b"])
    assert np.allclose(rescored.risk, layer, rtol=1e-4, atol=1e-7)
    assert expected_calibration_error(rescored.label, rescored.risk) < 0.05
    for level, target in (("medium", TARGET_MEDIUM), ("high", TARGET_HIGH)):
        ratio = {"medium": 0.8, "high": 0.85}[level]
        rate = alerts_per_patient_day(rescored, rescored.risk, manifest["alert_thresholds"][level], ratio)
        assert abs(rate - target) <= 0.1 * target, (level, rate)


def test_a_target_specificity_sets_the_thresholds_on_the_negatives(evidence) -> None:
    root, parent, scores, exported = evidence
    out = root / "by-specificity"
    assert main([
        "recalibrate", "--checkpoint", str(parent), "--scored", str(exported), "--out", str(out),
        "--target", "specificity", "--medium", "0.9", "--high", "0.97",
    ]) == 0
    after = load_checkpoint(out).manifest["recalibration"]["after"]
    assert after["medium_specificity"] == pytest.approx(0.9, abs=0.005)
    assert after["high_specificity"] == pytest.approx(0.97, abs=0.005)
    assert after["ece"] < 0.05


def test_too_little_evidence_is_refused_with_the_numbers_needed(evidence, capsys: pytest.CaptureFixture[str]) -> None:
    root, parent, scores, exported = evidence
    few = root / "few.jsonl"
    lines = exported.read_text().splitlines()
    few.write_text("\n".join(lines[: len(lines) // 10]) + "\n")
    out = root / "refused"
    assert main([
        "recalibrate", "--checkpoint", str(parent), "--scored", str(few), "--out", str(out),
        "--target", "specificity", "--medium", "0.9", "--high", "0.97",
    ]) == 2
    assert "patients with an outcome (needs 100)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("calibration", [{"method": "platt", "scale": "NaN", "bias": 0.0}, {"method": "isotonic"}, None])
def test_a_manifest_calibration_that_is_not_a_platt_step_does_not_verify(tmp_path: Path, calibration) -> None:
    directory = _miscalibrated(tmp_path / "bad")
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["calibration"] = calibration
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="calibration must be"):
        load_checkpoint(directory)
