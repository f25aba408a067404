"""The internal-external split: does what the model learned in one ICU hold in the other?

A random split of one hospital's stays flatters every model: test stays come from the same
units, charting habits and case mix as the training ones. Within set A the medical and
surgical ICUs (the challenge's ``Unit1`` / ``Unit2``) differ in case mix and in how often each
variable is charted, so training on one and testing on the other imitates, in a small way, a
new site. Both directions are run: the model is retrained from scratch with the checkpoint's
own recipe (``TrainConfig(**manifest["training"]["config"])``: same features, sizes, horizon,
early stopping, Platt calibration and thresholds) on the stays of one ICU type, with a seeded
15 % of them for early stopping, calibration and thresholds; the trees baseline likewise; both
are judged with NEWS2, qSOFA and SIRS on every stay of the other type
(``models.evaluation.sepsis.evaluate_hours``). Stays with neither flag take no part.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

from models.checkpoint import LoadedModel
from models.evaluation.sepsis import evaluate_hours
from models.evaluation.sepsis_data import SepsisStay, icu_partition
from models.training.train import TrainConfig, train_model

#: (trained on, tested on), both ways.
DIRECTIONS: tuple[tuple[str, str], ...] = (("MICU", "SICU"), ("SICU", "MICU"))


def recipe(manifest: dict[str, Any], device: str) -> TrainConfig:
    """The checkpoint's training recipe, on ``device``; ValueError when the manifest has none
    or it names settings this build's TrainConfig does not know."""
    config = manifest.get("training", {}).get("config")
    if not isinstance(config, dict):
        raise ValueError("the checkpoint's manifest has no training recipe (training.config) to retrain on an ICU type with")
    unknown = sorted(set(config) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"the checkpoint's training recipe names settings this build does not know: {', '.join(unknown)}")
    return TrainConfig(**{**config, "device": device})


def transfer_evaluation(
    loaded: LoadedModel, stays: Sequence[SepsisStay], *, replicates: int, seed: int, device: str, progress: bool = False
) -> dict[str, Any]:
    """Both directions of the ICU-type split: per direction the stays, the retrained model's
    training summary and the full evaluation report (JSON-ready)."""
    config = recipe(loaded.manifest, device)
    by_id = {s.stay_id: s for s in stays}
    directions = {}
    for train_type, test_type in DIRECTIONS:
        started = time.perf_counter()
        partition = icu_partition(stays, train_type, test_type, seed)  # type: ignore[arg-type]
        train = [by_id[i].series for i in partition.train if by_id[i].series is not None]
        validation = [by_id[i].series for i in partition.validation if by_id[i].series is not None]
        result = train_model(train, validation, config, progress=progress)
        retrained = LoadedModel(
            result.model, result.encoder,
            {**loaded.manifest, "features": list(result.encoder.variables), "alert_thresholds": result.alert_thresholds},
        )
        trained_s = time.perf_counter() - started
        evaluation = evaluate_hours(retrained, stays, [partition], replicates=replicates, seed=seed)
        directions[f"{train_type} -> {test_type}"] = {
            "trained_on": train_type,
            "tested_on": test_type,
            "stays": {"train": len(partition.train), "validation": len(partition.validation), "test": len(partition.test)},
            "model_training": {
                "best_val_auroc": result.best_val_auroc,
                "epochs": len(result.history),
                "alert_thresholds": result.alert_thresholds,
                "seconds": round(trained_s, 1),
            },
            **evaluation.report,
            "seconds": {**evaluation.report["seconds"], "training": round(trained_s, 1), "total": round(time.perf_counter() - started, 1)},
        }
    return {"recipe": dataclasses.asdict(config), "seed": seed, "directions": directions}
