"""`vitalwatch evaluate`: the model against NEWS2 on a fresh simulated cohort.

Simulates ``--patients`` stays with ``--seed``, scores every event with the checkpoint and with
NEWS2 (carried-forward vitals, as the worker charts it), and prints AUROC, AUPRC, calibration
error and the operating-point numbers side by side (see models.evaluation for the exact
definitions). A seed the checkpoint was trained or validated on is refused: those patients
are not fresh, and their numbers would flatter the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

_ROWS: tuple[tuple[str, str, str], ...] = (
    ("auroc", "AUROC", "{:.3f}"),
    ("auprc", "AUPRC", "{:.3f}"),
    ("ece", "calibration error (ECE, 10 bins)", "{:.3f}"),
    ("threshold", "alert threshold", "{:.3g}"),
    ("sensitivity", "sensitivity", "{:.3f}"),
    ("specificity", "specificity", "{:.3f}"),
    ("precision", "precision (PPV)", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
    ("median_lead_time_h", "median lead time of first alert (h)", "{:.1f}"),
    ("detected_fraction", "deteriorations alerted within horizon", "{:.3f}"),
    ("alerts_per_patient_day", "alerts per patient-day", "{:.2f}"),
)
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model (medium)"),
    ("model_high", "model (high)"),
    ("news2", "NEWS2"),
    ("news2_5", "NEWS2 >= 5"),
    ("news2_7", "NEWS2 >= 7"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a checkpoint with NEWS2 on a fresh simulated cohort",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--patients", type=int, default=2000, help="simulated patients (default 2000)")
    parser.add_argument("--seed", type=int, default=2026, help="simulator seed; must not be one the checkpoint was trained on (default 2026)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON here")
    parser.add_argument("--plots", type=Path, help="write roc.png, pr.png and calibration.png into this directory")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.evaluation import evaluate, score_cohort
    from models.series import series_from_simulated
    from models.simulator import simulate_cohort

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    loaded = load_checkpoint(checkpoint, args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    used = training_seeds(loaded.manifest)
    if args.seed in used:
        print(f"seed {args.seed} was used to train or validate {checkpoint} (seeds {sorted(used)}); pick another seed")
        return 2
    horizon = float(loaded.manifest["horizon_hours"])
    series = [series_from_simulated(p, horizon) for p in simulate_cohort(args.patients, seed=args.seed)]
    cohort = score_cohort(loaded, series)
    report = {
        "checkpoint": {"version": loaded.manifest["version"], "weights_sha256": loaded.manifest["weights_sha256"]},
        "simulator": {"seed": args.seed, "patients": args.patients},
        **evaluate(cohort, loaded.manifest["alert_thresholds"]),
    }
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plots:
        from models.plots import write_plots

        labels, risk = cohort.scored(cohort.risk)
        _, news2 = cohort.scored(cohort.news2)
        for path in write_plots(args.plots, labels, risk, news2, loaded.manifest["alert_thresholds"]):
            print(f"wrote {path}")
    return 0


def training_seeds(manifest: dict[str, Any]) -> set[int]:
    """Every simulator seed recorded in the checkpoint's training data, fine-tuning bases included."""
    seeds: set[int] = set()
    data = manifest.get("training", {}).get("data")
    while isinstance(data, dict):
        seeds.update(int(s) for s in data.get("simulator_seeds", []))
        data = (data.get("fine_tuned_from") or {}).get("training_data")
    return seeds


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cohort = report["cohort"]
    table = Table(
        title=(
            f"{report['checkpoint']['version']} vs NEWS2 — {cohort['patients']} simulated patients (seed {report['simulator']['seed']}), "
            f"{cohort['events']} events, {cohort['positive_events']} within {cohort['horizon_hours']:g} h of deterioration"
        )
    )
    table.add_column("metric")
    for _, title in _COLUMNS:
        table.add_column(title, justify="right")
    for key, label, fmt in _ROWS:
        cells = []
        for column, _ in _COLUMNS:
            value = report[column].get(key)
            cells.append("—" if value is None else fmt.format(value))
        if any(c != "—" for c in cells):
            table.add_row(label, *cells)
    Console().print(table)
