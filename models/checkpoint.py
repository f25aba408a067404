"""Checkpoints: the weights in safetensors, and a JSON manifest that says what they are.

A checkpoint is a directory with two files:

* ``model.safetensors`` — the RiskLSTM's tensors (``model.*``, Platt calibration included) and
  the encoder's normalisation (``encoder.mean``, ``encoder.std``). safetensors is a flat
  tensor format: loading it cannot run code, unlike a pickle.
* ``manifest.json`` — format version, model version, variable order, normalisation, horizon,
  architecture, calibration, alert thresholds, training data provenance, metrics and the
  sha256 of the weights file. The manifest's calibration is the one served (it equals the
  stored one unless a site recalibrated: then the weights file is the parent's, unchanged).

``load_checkpoint`` trusts nothing: it hashes the weights before parsing them, refuses
variables this build's catalogue (``schemas.variables``) does not know, rebuilds the network
and the encoder from the manifest (the encoder reads exactly the variables the model was trained
on, in their order, so a model trained before the catalogue grew scores as it always did) and
loads the tensors strictly (no missing, extra or reshaped tensor), and checks the manifest's
normalisation against the stored one. Every refusal is a ``CheckpointError`` naming the file
and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from models.features import INPUTS, LEGACY_INPUTS, FeatureEncoder, n_features
from models.network import RiskLSTM
from schemas.variables import VARIABLE_INDEX

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"
#: The model trained on simulated ward patients only (deterioration within 12 h): kept for the
#: tests and demos that need a model whose behaviour on the ward simulator is known, and as the
#: teacher of the distillation examples. Never the worker's default.
SIMULATED_WARD_CHECKPOINT = DEFAULT_CHECKPOINT.parent / "simulated-ward"

_MODEL_PREFIX = "model."
_ENCODER_KEYS = ("encoder.mean", "encoder.std")
_REQUIRED = ("format_version", "version", "features", "n_features", "hidden_size", "num_layers", "weights_sha256")


class CheckpointError(RuntimeError):
    """A checkpoint that must not be served: missing, corrupt, tampered or for another model."""


@dataclass(slots=True)
class LoadedModel:
    """A checkpoint ready to score: the network and encoder on one device, and the manifest."""

    model: RiskLSTM
    encoder: FeatureEncoder
    manifest: dict[str, Any]


def save_checkpoint(directory: Path | str, model: RiskLSTM, encoder: FeatureEncoder, manifest: dict[str, Any]) -> Path:
    """Write ``directory``/{model.safetensors, manifest.json} and return the directory.

    ``manifest`` carries what only the caller knows (version, horizon_hours, training data,
    metrics, alert thresholds); the fields that describe the tensors (format, features,
    architecture, normalisation, calibration, checksum, created_at unless given) are filled in
    here from the objects themselves so they cannot disagree with the weights.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {_MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors["encoder.mean"] = encoder.mean.detach().cpu().contiguous()
    tensors["encoder.std"] = encoder.std.detach().cpu().contiguous()
    blob = save_safetensors(tensors, metadata={"format": "vitalwatch-risk-lstm"})
    full = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "created_at": manifest.get("created_at") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": list(encoder.variables),
        "inputs": list(encoder.inputs),
        "n_features": model.n_features,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "normalisation": _normalisation(encoder),
        "calibration": {"method": "platt", "scale": float(model.platt_scale), "bias": float(model.platt_bias)},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    (directory / WEIGHTS_FILE).write_bytes(blob)
    (directory / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return directory


def load_checkpoint(directory: Path | str, device: torch.device | str = "cpu") -> LoadedModel:
    """Load and verify a checkpoint onto ``device``, in eval mode; see the module doc."""
    directory = Path(directory)
    manifest = _read_manifest(directory / MANIFEST_FILE)
    weights = directory / WEIGHTS_FILE
    tensors = _read_weights(weights, manifest["weights_sha256"])
    model = RiskLSTM(int(manifest["n_features"]), int(manifest["hidden_size"]), int(manifest["num_layers"]))
    state = {k[len(_MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
        encoder = FeatureEncoder(tensors["encoder.mean"], tensors["encoder.std"], manifest["features"], _inputs(manifest))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{weights}: tensors do not fit the manifest's model ({exc})") from exc
    unknown = set(tensors) - set(_ENCODER_KEYS) - {_MODEL_PREFIX + k for k in state}
    if unknown:
        raise CheckpointError(f"{weights}: unexpected tensors {sorted(unknown)}")
    if manifest.get("normalisation") != _normalisation(encoder):
        raise CheckpointError(f"{directory / MANIFEST_FILE}: normalisation differs from the one in {WEIGHTS_FILE}")
    if "calibration" in manifest:
        model.set_calibration(*_calibration(directory / MANIFEST_FILE, manifest["calibration"]))
    device = torch.device(device)
    return LoadedModel(model.to(device).eval(), encoder.to(device), manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing (a checkpoint is a directory with {MANIFEST_FILE} and {WEIGHTS_FILE})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: must hold a JSON object")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise CheckpointError(f"{path}: missing fields {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {manifest['format_version']!r}, this code reads {FORMAT_VERSION}")
    features = manifest["features"]
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise CheckpointError(f"{path}: features must be a non-empty list of variable names")
    unknown = [f for f in features if f not in VARIABLE_INDEX]
    if unknown or len(set(features)) != len(features):
        raise CheckpointError(
            f"{path}: trained on variables {unknown or features} that this build's catalogue does not know "
            "(or names one twice); upgrade vitalwatch or retrain the model"
        )
    inputs = _inputs(manifest)
    if (
        not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs)
        or not set(inputs) <= set(INPUTS) or len(set(inputs)) != len(inputs)
    ):
        raise CheckpointError(f"{path}: inputs must be distinct input groups of {list(INPUTS)}, got {inputs!r}")
    if manifest["n_features"] != n_features(len(features), inputs):
        raise CheckpointError(
            f"{path}: n_features {manifest['n_features']}, the encoder produces {n_features(len(features), inputs)} "
            f"for {len(features)} variables and inputs {inputs}"
        )
    return manifest


def _calibration(path: Path, calibration: Any) -> tuple[float, float]:
    """The manifest's Platt scale and bias: they rule over the ones stored with the weights, so
    a site's recalibration (``vitalwatch recalibrate``) ships the parent's weights byte for byte."""
    try:
        method, scale, bias = calibration["method"], float(calibration["scale"]), float(calibration["bias"])
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: calibration must be {{method: platt, scale, bias}}, got {calibration!r}") from exc
    if method != "platt" or not (math.isfinite(scale) and math.isfinite(bias)):
        raise CheckpointError(f"{path}: calibration must be Platt with a finite scale and bias, got {calibration!r}")
    return scale, bias


def _inputs(manifest: dict[str, Any]) -> Any:
    """The input groups a checkpoint's model reads; one written before they were named read
    the legacy ones."""
    return manifest.get("inputs", list(LEGACY_INPUTS))


def _read_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Hash the bytes first, then parse those same bytes (no second read that could differ)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing") from exc
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected_sha256:
        raise CheckpointError(f"{path}: sha256 {actual} does not match the manifest's {expected_sha256}; the file was modified")
    try:
        return load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc


def _normalisation(encoder: FeatureEncoder) -> dict[str, Any]:
    """Per-variable mean/std as the manifest shows them (float32 values, exactly as stored)."""
    mean, std = encoder.mean.cpu().tolist(), encoder.std.cpu().tolist()
    return {
        "method": "z-score of the decayed carried-forward value",
        "variables": {name: {"mean": m, "std": s} for name, m, s in zip(encoder.variables, mean, std)},
    }
