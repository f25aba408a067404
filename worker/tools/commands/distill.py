"""`vitalwatch distill`: train a smaller student LSTM from a teacher checkpoint.

The student learns the teacher's per-event outputs (soft targets) on simulated patients, mixed
with the hard labels (see models.training.distill), on cohorts from ``--seed`` (training) and
``--seed``+1 (validation: early stopping, calibration, alert thresholds). Both models are then
compared on a third, held-out cohort from ``--seed``+2, which must not be one the teacher was
trained on, and their step cost (patient-steps/s of one batched incremental step at batch 512,
the worker's per-event cost) is measured here on this machine. The student checkpoint's
manifest names its teacher and records both comparisons.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.tools.commands.evaluate import training_seeds
from worker.tools.commands.train import SYNTHETIC_PROVENANCE

if TYPE_CHECKING:  # torch is imported only when the command runs
    from models.checkpoint import LoadedModel
    from models.training.distill import DistillConfig
    from models.datasets.series import PatientSeries
    from models.training.train import TrainResult

log = logging.getLogger(__name__)

#: Patients per batch when the step cost is measured (the worker's default micro-batch scale).
STEP_BATCH = 512


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="distil a checkpoint into a smaller student LSTM and compare the two",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--teacher", type=Path,
        help="teacher checkpoint directory (default: the simulated-ward model, which learnt from the simulated "
        "ward patients a student is distilled on)",
    )
    parser.add_argument("--hidden", type=int, default=32, help="student LSTM hidden size (default 32)")
    parser.add_argument("--layers", type=int, default=1, help="student LSTM layers (default 1)")
    parser.add_argument("--patients", type=int, default=4000, help="simulated distillation patients (default 4000)")
    parser.add_argument("--val-patients", type=int, default=1000, help="simulated validation patients (default 1000)")
    parser.add_argument("--heldout-patients", type=int, default=2000, help="simulated held-out patients for the comparison (default 2000)")
    parser.add_argument("--seed", type=int, default=11, help="simulator seed of the distillation cohort; +1 validation, +2 held-out (default 11)")
    # Unset options keep models.training.train.TrainConfig's / models.training.distill.DistillConfig's defaults.
    tuning = parser.add_argument_group("optimisation (defaults: models.training.train.TrainConfig, models.training.distill.DistillConfig)")
    tuning.add_argument("--epochs", type=int, help="maximum epochs")
    tuning.add_argument("--batch-size", type=int)
    tuning.add_argument("--lr", type=float)
    tuning.add_argument("--patience", type=int, help="epochs without a better validation AUROC before stopping")
    tuning.add_argument("--temperature", type=float, help="softening of the teacher's outputs")
    tuning.add_argument("--soft-weight", type=float, help="share of the loss on the teacher's soft targets, 0-1")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("out/student"), help="student checkpoint directory (default out/student)")
    out.add_argument("--version", help="student model version (default vw-lstm-student<hidden>-<UTC date and time>)")
    out.add_argument("--json", type=Path, help="write the comparison report as JSON here")
    out.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    out.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


_TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "patience")
_DISTILL_OPTIONS = ("temperature", "soft_weight")


def run(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import SIMULATED_WARD_CHECKPOINT, LoadedModel, load_checkpoint, save_checkpoint
    from models.training.distill import DistillConfig, compare_models, distill, parameter_count, step_rate
    from models.training.train import TrainConfig

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    teacher_dir = args.teacher or SIMULATED_WARD_CHECKPOINT
    teacher = load_checkpoint(teacher_dir, device)
    heldout_seed = args.seed + 2
    seen = training_seeds(teacher.manifest)
    if heldout_seed in seen:
        print(f"held-out seed {heldout_seed} (--seed + 2) was used to train {teacher_dir} (seeds {sorted(seen)}); pick another --seed")
        return 2

    options = {name: getattr(args, name) for name in _TRAIN_OPTIONS if getattr(args, name) is not None}
    train_config = TrainConfig(
        **options, hidden_size=args.hidden, num_layers=args.layers, seed=args.seed,
        horizon_hours=float(teacher.manifest["horizon_hours"]), device=device,
    )
    config = DistillConfig(train_config, **{name: getattr(args, name) for name in _DISTILL_OPTIONS if getattr(args, name) is not None})
    horizon = train_config.horizon_hours
    train, val, heldout = (
        _cohort(n, seed, horizon)
        for n, seed in ((args.patients, args.seed), (args.val_patients, args.seed + 1), (args.heldout_patients, heldout_seed))
    )
    log.info("distilling", extra={"train_stays": len(train), "val_stays": len(val), "hidden_size": args.hidden, "device": device})
    result = distill(teacher, train, val, config, progress=not args.no_progress)

    version = args.version or f"vw-lstm-student{args.hidden}-{datetime.now(timezone.utc):%Y.%m.%d-%H%M}"
    student = LoadedModel(result.model, result.encoder, {"version": version})
    comparison = compare_models(heldout, {"teacher": teacher, "student": student})
    for name, loaded in (("teacher", teacher), ("student", student)):
        comparison[name].update(
            hidden_size=loaded.model.hidden_size,
            parameters=parameter_count(loaded.model),
            patient_steps_per_s=step_rate(loaded.model, batch=STEP_BATCH),
        )
    report = {
        "heldout": {"seed": heldout_seed, "patients": args.heldout_patients, "device": device, "step_batch": STEP_BATCH},
        **comparison,
    }
    manifest = _manifest(args, config, result, teacher, version, report)
    save_checkpoint(args.out, result.model, result.encoder, manifest)
    _print_report(args.out, version, teacher.manifest["version"], report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cohort(n: int, seed: int, horizon_hours: float) -> list[PatientSeries]:
    from models.datasets.series import series_from_simulated
    from models.datasets.simulator import simulate_cohort

    return [series_from_simulated(p, horizon_hours) for p in simulate_cohort(n, seed=seed)]


def _manifest(
    args: argparse.Namespace, config: DistillConfig, result: TrainResult, teacher: LoadedModel, version: str, report: dict[str, Any]
) -> dict[str, Any]:
    """The student's manifest: the training manifest's shape, with the teacher in its provenance."""
    from models.training.train import training_manifest

    data = {
        "provenance": SYNTHETIC_PROVENANCE,
        "licence": "synthetic: generated by the simulator, no patient data",
        "simulator_seeds": [args.seed, args.seed + 1],
        "n_patients": {"train": args.patients, "val": args.val_patients},
        "distilled_from": {
            "version": teacher.manifest["version"],
            "weights_sha256": teacher.manifest["weights_sha256"],
            "hidden_size": teacher.model.hidden_size,
            "num_layers": teacher.model.num_layers,
            "training_data": teacher.manifest.get("training", {}).get("data"),
        },
    }
    manifest = training_manifest(result, config.train, version=version, training_data=data, metrics={"heldout_comparison": report})
    manifest["training"]["distillation"] = {"temperature": config.temperature, "soft_weight": config.soft_weight}
    return manifest


def _print_report(out: Path, version: str, teacher_version: str, report: dict[str, Any]) -> None:
    from rich.table import Table

    from worker.tools.console import console

    heldout = report["heldout"]
    table = Table(title=f"{teacher_version} -> {version}: {heldout['patients']} held-out simulated patients (seed {heldout['seed']})")
    table.add_column("")
    table.add_column("teacher", justify="right")
    table.add_column("student", justify="right")
    rows = (
        ("hidden size", "hidden_size", "{}"),
        ("parameters", "parameters", "{:,}"),
        ("AUROC", "auroc", "{:.3f}"),
        ("AUPRC", "auprc", "{:.3f}"),
        ("calibration error (ECE)", "ece", "{:.3f}"),
        (f"patient-steps/s at batch {heldout['step_batch']} ({heldout['device']})", "patient_steps_per_s", "{:,.0f}"),
    )
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(report["teacher"][key]), fmt.format(report["student"][key]))
    console().print(table)
    print(f"wrote {out} ({version})")
