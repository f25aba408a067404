"""Which model a worker runs, in one line: what `vitalwatch dev` shows above its board and in its summary.

The version is the worker's own word (``/health``: ``engine.model_version``, the checkpoint it
actually loaded); what the model learned from and what it predicts come from the manifest of
the checkpoint the worker loads (``VITALWATCH_CHECKPOINT``, or the shipped one), e.g.

    vw-lstm-2026.12.1 · PhysioNet 2019 set A · sepsis within 6 h
    vw-lstm-2026.11.1 · simulated ward patients · deterioration within 12 h

A manifest that is missing, unreadable or of another version than the one the worker reports
says nothing about the running model: the line then gives the version alone and says so,
rather than describe a model that is not running.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from models.datasets.clif_demo import MIMIC_IV_DEMO, PHYSIONET_2019, SITE_CLIF
from worker.tools.commands.train import SYNTHETIC_PROVENANCE

#: What each data set a checkpoint names (``training.data.dataset``) is called on the board.
DATASET_NAMES: dict[str, str] = {
    PHYSIONET_2019: "PhysioNet 2019 set A",
    MIMIC_IV_DEMO: "the MIMIC-IV demo",
    SITE_CLIF: "a site's CLIF data",
}
#: The simulator's cohorts, by profile (``training.data.simulator_profile``; ward when absent).
SIMULATED = {"ward": "simulated ward patients", "icu": "simulated ICU stays"}
#: The outcome when a manifest does not name one: the challenge's label for set A, else the
#: simulator's and the CLIF adapter's composite of clinical deterioration.
DEFAULT_OUTCOMES = {PHYSIONET_2019: "sepsis"}
DEFAULT_OUTCOME = "deterioration"
#: Longer outcome texts are descriptions, not names: the line uses the default instead.
OUTCOME_NAME_MAX = 40
MANIFEST_FILE = "manifest.json"
SEPARATOR = " · "


def describe(manifest: Mapping[str, Any]) -> str:
    """The one-line description of a checkpoint: version · training data · outcome and horizon."""
    data = _training_data(manifest)
    return SEPARATOR.join((str(manifest.get("version") or "unversioned"), trained_on(data), predicts(manifest, data)))


def trained_on(data: Mapping[str, Any]) -> str:
    """What the model learned from, in a few words (fine-tuning named after the data)."""
    dataset = data.get("dataset")
    if dataset in DATASET_NAMES:
        words = DATASET_NAMES[dataset]
    elif data.get("provenance") == SYNTHETIC_PROVENANCE or "simulator_seeds" in data:
        words = SIMULATED.get(data.get("simulator_profile", "ward"), SIMULATED["ward"])
    else:
        words = str(data.get("provenance") or "unknown data")
    parent = data.get("fine_tuned_from")
    if isinstance(parent, Mapping) and parent.get("version"):
        words += f" (fine-tuned from {parent['version']})"
    return words


def predicts(manifest: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The outcome the risk is for and its horizon: "sepsis within 6 h"."""
    outcome = _outcome_name(manifest.get("outcome")) or DEFAULT_OUTCOMES.get(data.get("dataset"), DEFAULT_OUTCOME)
    horizon = manifest.get("horizon_hours")
    return f"{outcome} within {float(horizon):g} h" if isinstance(horizon, (int, float)) else outcome


def _outcome_name(outcome: Any) -> str | None:
    """A short name from a manifest's ``outcome``: the text itself, or a mapping's name or label."""
    if isinstance(outcome, Mapping):
        outcome = outcome.get("name") or outcome.get("label")
    if isinstance(outcome, str) and 0 < len(outcome) <= OUTCOME_NAME_MAX:
        return outcome
    return None


def _training_data(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    training = manifest.get("training")
    data = training.get("data") if isinstance(training, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def read_manifest(checkpoint: Path) -> dict[str, Any] | None:
    """The manifest of the checkpoint directory, or None when it cannot be read as a JSON object."""
    try:
        manifest = json.loads((checkpoint / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def running_model(version: str | None, manifest: Mapping[str, Any] | None) -> str:
    """The line for the model the worker reports running, described by ``manifest`` when the
    manifest is that model's."""
    if version is None:
        return "model unknown (the worker did not report one)"
    if manifest is None or manifest.get("version") != version:
        return f"{version}{SEPARATOR}its checkpoint's manifest was not found"
    return describe(manifest)
