"""The stays of a sepsis evaluation and how they are partitioned.

A stay is its hour grid (every ICULOS row of its file, ``models.evaluation.hour_grid``) and
its series (the events the model steps on; None for a file with nothing measured, which
still has hours to judge). Which stays are judged, and which the trees baseline learns from,
is a ``Partition``:

* a checkpoint trained on this data set (or on a site's PSV files, ``train --psv``) names its
  split in its manifest
  (``training.data.split``: ``validation_stays`` and ``test_stays``): the test stays are
  judged, the trees train on every other stay of the directory but the validation ones, which
  they early-stop and set thresholds on (``checkpoint_partitions``);
* a checkpoint that never saw the data set (the simulator-trained one) is judged on every
  stay; the trees are then cross-fitted: the stays are halved (seeded) and each half is scored
  by trees trained on the other (15 % of it for validation), so no stay is scored by trees
  that saw it;
* the ICU-type split (``icu_partition``) trains on one ICU type and tests on the other.

A checkpoint trained on the data set without a listed test split is refused: no stay of it
would be fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from models.datasets.clif_demo import PHYSIONET_2019
from models.datasets.physionet import load_psv_directory, psv_files
from models.datasets.series import IcuType, PatientSeries
from models.evaluation.hour_grid import StayHours, read_hour_grid
from models.evaluation.real_data import training_lineage

#: Share of a training pool kept for early stopping, calibration and thresholds.
VALIDATION_SHARE = 0.15
#: Folds of the trees' cross-fitting when the checkpoint has no split of the data set.
CROSS_FIT_FOLDS = 2


@dataclass(frozen=True, slots=True)
class SepsisStay:
    """One stay: its hour grid and its series (None when nothing was ever measured)."""

    grid: StayHours
    series: PatientSeries | None

    @property
    def stay_id(self) -> str:
        return self.grid.stay_id

    @property
    def icu_type(self) -> IcuType | None:
        return self.series.icu_type if self.series is not None else None


@dataclass(frozen=True, slots=True)
class Partition:
    """Stay ids a baseline trains on, validates on and is tested on (disjoint)."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def load_sepsis_stays(directory: Path | str, horizon_hours: float) -> list[SepsisStay]:
    """Every ``*.psv`` stay of ``directory``: its hour grid and its series (labels for ``horizon_hours``)."""
    series = {s.patient_id: s for s in load_psv_directory(directory, horizon_hours=horizon_hours)}
    grids = [read_hour_grid(path) for path in psv_files(directory)]
    return [SepsisStay(grid, series.get(grid.stay_id)) for grid in grids]


def checkpoint_partitions(manifest: dict[str, Any], stays: Sequence[SepsisStay], seed: int) -> tuple[list[Partition], dict[str, Any]]:
    """The partitions for a checkpoint's evaluation on these stays, and what they are (JSON-ready)."""
    split = checkpoint_split(manifest)
    present = {s.stay_id for s in stays}
    if split is None:
        partitions = cross_fit_partitions(stays, seed)
        return partitions, {
            "judged": "every stay of the directory: the checkpoint was not trained on this data set",
            "trees": f"cross-fitted over {len(partitions)} seeded halves (seed {seed}), each half scored by trees trained on the other",
        }
    test = tuple(sorted(present & set(split["test_stays"])))
    if not test:
        raise ValueError(
            f"none of the checkpoint's {len(split['test_stays'])} test stays is in the directory: "
            "point --psv-dir at the data set it was trained on"
        )
    validation = tuple(sorted(present & set(split["validation_stays"]) - set(test)))
    train = tuple(sorted(present - set(test) - set(validation)))
    return [Partition(train, validation, test)], {
        "judged": "the checkpoint's test stays",
        "split_seed": split.get("seed"),
        "test_stays_listed": len(split["test_stays"]),
        "test_stays_found": len(test),
        "trees": "trained on every other stay of the directory but the checkpoint's validation stays, early-stopped on those",
    }


def checkpoint_split(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The split of PSV stays in the checkpoint's training lineage (its own, or a fine-tuning
    parent's; test stays = those held out by every one of them), None when no ancestor learned
    from PSV stays. ValueError when one did without listing its test stays."""
    splits = []
    for data in training_lineage(manifest):
        if not _learned_from_psv_stays(data):
            continue
        split = data.get("split")
        if not isinstance(split, dict) or not split.get("test_stays"):
            raise ValueError(f"the checkpoint was trained on {PHYSIONET_2019} without a held-out test split (training.data.split.test_stays)")
        splits.append(split)
    if not splits:
        return None
    test = set.intersection(*(set(s["test_stays"]) for s in splits))
    return {**splits[0], "test_stays": sorted(test)}


def _learned_from_psv_stays(data: dict[str, Any]) -> bool:
    """Whether a lineage entry trained on PSV stays: set A by name, or a site's PSV files
    (`train --psv`: no data set name, a split by stay)."""
    split = data.get("split")
    return data.get("dataset") == PHYSIONET_2019 or ("dataset" not in data and isinstance(split, dict) and split.get("by") == "stay")


def cross_fit_partitions(stays: Sequence[SepsisStay], seed: int, folds: int = CROSS_FIT_FOLDS) -> list[Partition]:
    """``folds`` partitions whose test parts cover every stay once (seeded); each trains on the
    rest, ``VALIDATION_SHARE`` of it held for validation."""
    ids = np.array(sorted(s.stay_id for s in stays))
    order = np.random.default_rng(seed).permutation(ids.size)
    parts = [tuple(sorted(ids[order[k::folds]])) for k in range(folds)]
    septic = septic_stays(stays)
    partitions = []
    for k, test in enumerate(parts):
        pool = sorted(i for j, part in enumerate(parts) if j != k for i in part)
        train, validation = split_pool(pool, septic, seed + k + 1)
        partitions.append(Partition(train, validation, test))
    return partitions


def icu_partition(stays: Sequence[SepsisStay], train_type: IcuType, test_type: IcuType, seed: int) -> Partition:
    """Train on the stays of ``train_type`` (``VALIDATION_SHARE`` of them, seeded, for
    validation), test on those of ``test_type``."""
    pool = sorted(s.stay_id for s in stays if s.icu_type == train_type)
    test = tuple(sorted(s.stay_id for s in stays if s.icu_type == test_type))
    if not pool or not test:
        raise ValueError(f"the ICU-type split needs stays of both types: {len(pool)} {train_type}, {len(test)} {test_type}")
    train, validation = split_pool(pool, septic_stays(stays), seed)
    return Partition(train, validation, test)


def septic_stays(stays: Sequence[SepsisStay]) -> set[str]:
    """The ids of the stays that become septic."""
    return {s.stay_id for s in stays if s.grid.onset_hour is not None}


def split_pool(pool: Sequence[str], septic: Collection[str], seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A seeded ``1 - VALIDATION_SHARE`` / ``VALIDATION_SHARE`` cut of ``pool``, stratified by
    sepsis (each side gets its share of septic stays, at least one of each kind where there
    are two), so that early stopping and thresholds always see both outcomes."""
    rng = np.random.default_rng(seed)
    validation: list[str] = []
    for group in ([i for i in pool if i in septic], [i for i in pool if i not in septic]):
        n_val = min(max(1, round(len(group) * VALIDATION_SHARE)), len(group) - 1) if len(group) >= 2 else 0
        validation += [group[i] for i in rng.permutation(len(group))[:n_val]]
    if not validation or len(validation) == len(pool):
        raise ValueError(f"need at least 2 stays of one outcome to train and validate on, found {len(pool)} stays")
    chosen = set(validation)
    return tuple(i for i in pool if i not in chosen), tuple(sorted(validation))
