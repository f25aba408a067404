"""The one line that says which model a worker runs (worker.tools.running_model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.checkpoint import DEFAULT_CHECKPOINT
from worker.tools.running_model import describe, read_manifest, running_model

SET_A: dict[str, Any] = {
    "version": "vw-lstm-2026.12.1",
    "horizon_hours": 6.0,
    "outcome": "sepsis",
    "population": "adult ICU stays, one US hospital system",
    "training": {"data": {"dataset": "physionet2019", "licence": "CC-BY-4.0", "split": {"seed": 1}}},
}
SIMULATED: dict[str, Any] = {
    "version": "vw-lstm-2026.11.1",
    "horizon_hours": 12.0,
    "training": {"data": {"provenance": "synthetic, vitalwatch simulator", "simulator_seeds": [1, 2]}},
}


def test_a_set_a_checkpoint_reads_as_the_issue_writes_it() -> None:
    assert describe(SET_A) == "vw-lstm-2026.12.1 · PhysioNet 2019 set A · sepsis within 6 h"


def test_the_simulator_trained_checkpoint_says_simulated_ward_patients() -> None:
    assert describe(SIMULATED) == "vw-lstm-2026.11.1 · simulated ward patients · deterioration within 12 h"
    icu = {**SIMULATED, "training": {"data": {**SIMULATED["training"]["data"], "simulator_profile": "icu"}}}
    assert describe(icu) == "vw-lstm-2026.11.1 · simulated ICU stays · deterioration within 12 h"


@pytest.mark.parametrize(
    ("outcome", "words"),
    [
        ({"name": "Sepsis-3", "definition": "the challenge's SepsisLabel, 6 h ahead of onset"}, "Sepsis-3 within 6 h"),
        ("Sepsis-3 onset as the PhysioNet/CinC 2019 challenge labels it, 6 h before it", "sepsis within 6 h"),
        (None, "sepsis within 6 h"),
    ],
)
def test_an_outcome_is_named_briefly_whatever_shape_the_manifest_gives_it(outcome: Any, words: str) -> None:
    assert describe({**SET_A, "outcome": outcome}).endswith(f" · {words}")


def test_other_data_sets_fine_tuning_and_the_unknown_are_named() -> None:
    clif = {"version": "v2", "horizon_hours": 12, "training": {"data": {
        "dataset": "mimic-iv-demo", "fine_tuned_from": {"version": "vw-lstm-2026.11.1"},
    }}}
    assert describe(clif) == "v2 · the MIMIC-IV demo (fine-tuned from vw-lstm-2026.11.1) · deterioration within 12 h"
    assert describe({"version": "v3", "training": {"data": {"provenance": "PhysioNet/CinC 2019 PSV files (site)"}}}) == (
        "v3 · PhysioNet/CinC 2019 PSV files (site) · deterioration"
    )
    assert describe({}) == "unversioned · unknown data · deterioration"


def test_the_running_model_is_the_workers_word_and_a_foreign_manifest_is_not_believed() -> None:
    assert running_model("vw-lstm-2026.12.1", SET_A) == describe(SET_A)
    assert running_model("vw-lstm-2026.12.2", SET_A) == "vw-lstm-2026.12.2 · its checkpoint's manifest was not found"
    assert running_model("vw-lstm-2026.12.1", None).startswith("vw-lstm-2026.12.1 · ")
    assert running_model(None, SET_A) == "model unknown (the worker did not report one)"


def test_read_manifest_reads_a_checkpoint_directory_and_returns_none_for_anything_else(tmp_path: Path) -> None:
    shipped = read_manifest(DEFAULT_CHECKPOINT)
    assert shipped is not None and describe(shipped).startswith(f"{shipped['version']} · ")
    assert read_manifest(tmp_path) is None  # no manifest.json
    (tmp_path / "manifest.json").write_text("[1, 2]")
    assert read_manifest(tmp_path) is None  # JSON, but not an object
    (tmp_path / "manifest.json").write_text("{not json")
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text(json.dumps(SET_A))
    assert read_manifest(tmp_path) == SET_A
