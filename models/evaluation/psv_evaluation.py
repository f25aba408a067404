"""`vitalwatch evaluate --dataset physionet2019`: a checkpoint judged on a directory of PSV stays.

Loads every stay (hour grid and series), chooses what is judged from the checkpoint's split
(``models.evaluation.sepsis_data.checkpoint_partitions``: its test stays, or every stay when it
never learned from the data set), scores and reports every hour (``models.evaluation.sepsis``),
optionally runs the ICU-type split (``models.evaluation.transfer``), and judges the report
against the targets with the caveat beside it (``models.evaluation.sepsis_report``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from models.checkpoint import LoadedModel
from models.datasets.clif_demo import PHYSIONET_2019, PHYSIONET_2019_ATTRIBUTION, PHYSIONET_2019_LICENCE
from models.evaluation.bootstrap import DEFAULT_REPLICATES, DEFAULT_SEED
from models.evaluation.sepsis import SepsisEvaluation, evaluate_hours
from models.evaluation.sepsis_data import checkpoint_partitions, load_sepsis_stays
from models.evaluation.sepsis_report import CAVEAT, judged_targets
from models.evaluation.transfer import transfer_evaluation


def evaluate_psv_directory(
    loaded: LoadedModel,
    directory: Path,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    transfer: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> SepsisEvaluation:
    """The full report (JSON-ready) and the ranked hours of the judged stays (for plots)."""
    started = time.perf_counter()
    stays = load_sepsis_stays(directory, float(loaded.manifest["horizon_hours"]))
    loaded_s = time.perf_counter() - started
    partitions, split = checkpoint_partitions(loaded.manifest, stays, seed)
    evaluation = evaluate_hours(loaded, stays, partitions, replicates=replicates, seed=seed)
    report: dict[str, Any] = {
        "checkpoint": {"version": loaded.manifest["version"], "weights_sha256": loaded.manifest.get("weights_sha256")},
        "dataset": {
            "name": PHYSIONET_2019,
            "directory": Path(directory).name,  # not the path: a shared report must not reveal a site's layout
            "stays_in_directory": len(stays),
            "attribution": PHYSIONET_2019_ATTRIBUTION,
            "licence": PHYSIONET_2019_LICENCE,
        },
        "split": split,
        **evaluation.report,
    }
    if transfer:
        report["transfer"] = transfer_evaluation(loaded, stays, replicates=replicates, seed=seed, device=device, progress=progress)
    report["targets"] = judged_targets(report)
    report["caveat"] = CAVEAT
    report["seconds"] = {**report["seconds"], "loading": round(loaded_s, 1), "run": round(time.perf_counter() - started, 1)}
    return SepsisEvaluation(report, evaluation.labels, evaluation.scores)
