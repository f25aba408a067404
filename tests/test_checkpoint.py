"""Checkpoints: round trip, and refusal of tampered, mismatched, incomplete or pickled files."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from models.checkpoint import DEFAULT_CHECKPOINT, SIMULATED_WARD_CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from models.features import INPUTS, FeatureEncoder, n_features
from models.network import RiskLSTM
from schemas.variables import PREVIOUS_CATALOGUES, VARIABLE_NAMES, VARIABLES

N_FEATURES = n_features(len(VARIABLE_NAMES))  # an encoder over the whole catalogue

V = len(VARIABLES)


def saved(directory: Path) -> tuple[RiskLSTM, FeatureEncoder]:
    torch.manual_seed(0)
    model = RiskLSTM(N_FEATURES, hidden_size=16, num_layers=2)
    model.set_calibration(0.7, -2.5)
    encoder = FeatureEncoder(torch.arange(V, dtype=torch.float32), torch.full((V,), 3.0))
    save_checkpoint(directory, model, encoder, {"version": "test-1", "horizon_hours": 12.0, "alert_thresholds": {"medium": 0.2, "high": 0.5}})
    return model, encoder


def edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_round_trip_scores_identically(tmp_path: Path) -> None:
    model, encoder = saved(tmp_path)
    loaded = load_checkpoint(tmp_path, "cpu")
    x = torch.randn(3, 7, N_FEATURES)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.risk(loaded.model(x)), model.risk(model(x)), rtol=0, atol=0)
    assert torch.equal(loaded.encoder.mean, encoder.mean) and torch.equal(loaded.encoder.std, encoder.std)
    assert (loaded.model.hidden_size, loaded.model.num_layers) == (16, 2)
    m = loaded.manifest
    assert m["version"] == "test-1" and m["features"] == list(VARIABLE_NAMES)
    assert m["calibration"]["scale"] == pytest.approx(0.7) and m["alert_thresholds"] == {"medium": 0.2, "high": 0.5}
    assert m["weights_sha256"] == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert not loaded.model.training


def test_a_modified_weights_file_is_refused(tmp_path: Path) -> None:
    saved(tmp_path)
    weights = tmp_path / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 .* does not match"):
        load_checkpoint(tmp_path)


def test_a_manifest_whose_variable_order_was_changed_is_refused(tmp_path: Path) -> None:
    """The stored normalisation is per variable: shuffling the names no longer matches it."""
    saved(tmp_path)
    edit_manifest(tmp_path, features=list(reversed(VARIABLE_NAMES)))
    with pytest.raises(CheckpointError, match=r"manifest\.json: normalisation differs"):
        load_checkpoint(tmp_path)


def test_a_variable_this_build_does_not_know_is_refused(tmp_path: Path) -> None:
    saved(tmp_path)
    edit_manifest(tmp_path, features=[*VARIABLE_NAMES[:-1], "serum_unobtainium"])
    with pytest.raises(CheckpointError, match=r"manifest\.json: trained on variables \['serum_unobtainium'\] that this build"):
        load_checkpoint(tmp_path)


def test_a_model_of_fewer_variables_reads_only_those(tmp_path: Path) -> None:
    """A checkpoint trained before the catalogue grew: its encoder takes the whole memory and
    reads its own columns, so the other variables change nothing."""
    names = ("heart_rate", "lactate", "spo2")
    model = RiskLSTM(n_features(len(names)), hidden_size=8)
    save_checkpoint(tmp_path, model, FeatureEncoder(torch.zeros(3), torch.ones(3), names), {"version": "few-1", "horizon_hours": 12})
    loaded = load_checkpoint(tmp_path)
    assert loaded.encoder.variables == names and loaded.manifest["features"] == list(names)
    values = torch.full((2, len(VARIABLE_NAMES)), float("nan"))
    values[:, VARIABLE_NAMES.index("heart_rate")] = 120.0
    values[1, VARIABLE_NAMES.index("bun")] = 40.0  # not one of the model's variables
    memory = loaded.encoder.initial_memory(2)
    x, _ = loaded.encoder.step(values, torch.tensor([1.7e9, 1.7e9], dtype=torch.float64), memory)
    assert x.shape == (2, n_features(3)) and torch.equal(x[0], x[1])


def test_manifest_that_does_not_fit_the_weights_is_refused(tmp_path: Path) -> None:
    saved(tmp_path)
    edit_manifest(tmp_path, hidden_size=32)
    with pytest.raises(CheckpointError, match="do not fit the manifest"):
        load_checkpoint(tmp_path)


def test_edited_normalisation_is_refused(tmp_path: Path) -> None:
    saved(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["normalisation"]["variables"]["heart_rate"]["mean"] = 80.0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="normalisation differs"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("missing", ["manifest.json", "model.safetensors"])
def test_missing_files_are_named(tmp_path: Path, missing: str) -> None:
    saved(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(CheckpointError, match=rf"{missing}: missing"):
        load_checkpoint(tmp_path)


class _Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint load must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(tmp_path).manifest["version"] == "test-1"


def test_a_pickle_in_place_of_the_weights_is_refused_without_running(tmp_path: Path) -> None:
    saved(tmp_path)
    marker = tmp_path / "code-ran"
    blob = pickle.dumps(_Trap(marker))
    (tmp_path / "model.safetensors").write_bytes(blob)
    edit_manifest(tmp_path, weights_sha256=hashlib.sha256(blob).hexdigest())  # an attacker who also edits the manifest
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def test_the_shipped_default_checkpoint_is_the_set_a_model_and_says_so() -> None:
    """The worker's default learnt from PhysioNet 2019 set A alone: its manifest names the data,
    licence and citation, the outcome, the population, the split with its test stays, and the
    held-out figures."""
    loaded = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    manifest = loaded.manifest
    data = manifest["training"]["data"]
    assert data["dataset"] == "physionet2019" and data["licence"] == "CC-BY-4.0"
    assert "Reyna MA" in data["attribution"] and "10.13026/v64v-d857" in data["attribution"] and "Goldberger" in data["attribution"]
    assert len(data["split"]["test_stays"]) > 3000 and data["split"]["seed"] == 0
    assert manifest["outcome"]["name"] == "sepsis" and manifest["horizon_hours"] == 6.0
    assert "set A" in manifest["population"]
    assert manifest["inputs"] == list(INPUTS) and "bun" in manifest["features"] and "etco2" not in manifest["features"]
    assert manifest["metrics"]["test"]["cohort"]["stays"] == len(data["split"]["test_stays"])
    thresholds = manifest["alert_thresholds"]
    assert 0 < thresholds["medium"] < thresholds["high"] <= 1
    assert (DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size < 400_000


def test_the_simulated_ward_model_is_kept_under_its_own_name() -> None:
    loaded = load_checkpoint(SIMULATED_WARD_CHECKPOINT, "cpu")
    assert loaded.manifest["features"] == list(PREVIOUS_CATALOGUES[0]), "trained on the first catalogue's 18 variables"
    assert "synthetic" in json.dumps(loaded.manifest["training"]["data"])
