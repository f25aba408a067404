"""`vitalwatch recalibrate`: fit the calibration and the alert thresholds again on this site's labelled scores.

Reads the labelled scores of the parent checkpoint's own version (the risks it published are
what is refitted; ``--role shadow`` when it ran as the shadow model) from the scored-outcomes
topic, or ``--scored FILE.jsonl`` (an export such as ``vitalwatch validate --export`` writes),
observed in ``[--since, --until)``;
fits a Platt layer on them and sets each level's threshold at the site's target: a
specificity (``--target specificity --medium 0.90 --high 0.97``) or alerts per patient-day
(``--target alerts-per-day --medium 0.5 --high 0.1``). Refuses too little evidence (by default
100 patients with an outcome and 100 positive scores), naming the numbers needed.

Writes a new checkpoint directory (``--out``): the parent's weights file byte for byte, its
manifest with a new version (``--version``), the new calibration and thresholds, and a
``recalibration`` block naming the parent (version, weights sha256) and the evidence (time
range, counts). It is verified like any checkpoint before the command reports success. Point
VITALWATCH_CHECKPOINT at it and send the running worker SIGHUP: it reloads it keeping every
patient's state (the weights are unchanged). Definitions: models/training/recalibration.py.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from worker.tools.commands.validate import add_selection_arguments
from worker.tools.feed import positive_int

if TYPE_CHECKING:
    from models.training.recalibration import Recalibration


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recalibrate",
        help="refit a checkpoint's calibration and alert thresholds on this site's labelled scores (same weights, new checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, help="the parent checkpoint, the one that scored (default: the shipped one)")
    parser.add_argument("--out", type=Path, required=True, help="directory of the new checkpoint (new or empty)")
    parser.add_argument("--version", help="the new model_version (default: <parent version>-site-<UTC date and time>)")
    parser.add_argument("--target", choices=("specificity", "alerts-per-day"), required=True, help="what the thresholds are set on")
    parser.add_argument("--medium", type=float, required=True, help="the medium level's goal: a specificity in (0, 1] or alerts per patient-day")
    parser.add_argument("--high", type=float, required=True, help="the high level's goal (a higher specificity, or fewer alerts per patient-day)")
    parser.add_argument(
        "--role", choices=("live", "shadow"), default="live",
        help="whose labelled scores: the checkpoint ran live (default) or as the shadow model",
    )
    parser.add_argument("--scored", type=Path, metavar="FILE.jsonl", help="read labelled scores from this export instead of the topic")
    add_selection_arguments(parser)
    parser.add_argument("--min-outcomes", type=positive_int, help="patients with an outcome needed (default 100)")
    parser.add_argument("--min-positive-scores", type=positive_int, help="positive (and negative) scores needed (default 100)")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)")
    parser.set_defaults(func=run)


def _goals_problem(args: argparse.Namespace) -> str | None:
    if args.target == "specificity":
        if not (0.0 < args.medium < args.high <= 1.0):
            return f"--target specificity needs 0 < --medium < --high <= 1, got {args.medium} and {args.high}"
    elif not (args.medium > args.high > 0.0):
        return f"--target alerts-per-day needs --medium > --high > 0 (fewer high alerts), got {args.medium} and {args.high}"
    if args.model_version is not None:
        return "--model-version is the parent checkpoint's own version: choose the parent with --checkpoint"
    return None


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from worker.tools import kafka_clients

    problem = _goals_problem(args)
    if problem:
        print(f"vitalwatch recalibrate: {problem}", file=sys.stderr)
        return 2
    settings = None if args.scored else kafka_clients.reachable_settings(args.bootstrap)  # before any work, torch included

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.evaluation.labelled_report import LabelledScores
    from models.training.recalibration import MIN_OUTCOMES, MIN_POSITIVE_SCORES, InsufficientEvidence, recalibrate, write_recalibrated
    from worker.tools.scored_outcomes import Selection, read_jsonl, read_topic

    parent = args.checkpoint or DEFAULT_CHECKPOINT
    manifest = load_checkpoint(parent).manifest
    selection = Selection(since=args.since, until=args.until, model_version=manifest["version"])
    if settings is None:
        read, source = read_jsonl(args.scored, selection), {"file": str(args.scored)}
    else:
        source = {"topic": settings.topic_scored_outcomes}
        try:
            read = read_topic(settings, selection)
        except (KafkaError, TimeoutError) as exc:
            print(f"vitalwatch recalibrate: {exc}", file=sys.stderr)
            return 1
    scores = LabelledScores.from_records([r for r in read.records if r.role == args.role])
    try:
        result = recalibrate(
            scores, manifest, args.target, {"medium": args.medium, "high": args.high},
            min_outcomes=args.min_outcomes or MIN_OUTCOMES, min_positive_scores=args.min_positive_scores or MIN_POSITIVE_SCORES,
        )
    except (InsufficientEvidence, ValueError) as exc:
        print(f"vitalwatch recalibrate: {manifest['version']}: {exc}", file=sys.stderr)
        return 2
    version = args.version or f"{manifest['version']}-site-{datetime.now(timezone.utc):%Y%m%dT%H%M}"
    evidence = {
        "source": source, "selection": selection.describe(), "role": args.role, "records": read.counts(), "scores": scores.size,
        "positive_scores": int(scores.label.sum()), "patients": len(scores.patient_ids),
        "patients_with_outcome": int(len(set(scores.patient[scores.label].tolist()))),
        "observed_from": _iso(float(scores.observed_at.min())), "observed_until": _iso(float(scores.observed_at.max())),
    }
    try:
        out = write_recalibrated(
            parent, args.out, result, version=version, evidence=evidence,
            target={"kind": args.target, "medium": args.medium, "high": args.high},
        )
    except FileExistsError as exc:
        print(f"vitalwatch recalibrate: {exc}", file=sys.stderr)
        return 2
    _print_summary(manifest["version"], version, out, result)
    return 0


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def _print_summary(parent: str, version: str, out: Path, result: "Recalibration") -> None:
    from rich.table import Table

    from worker.tools.console import console

    table = Table(title=f"{parent} -> {version} ({out}), on the evidence")
    table.add_column("figure")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for key in result.after:
        before = result.before.get(key)
        table.add_row(key.replace("_", " "), "—" if before is None else f"{before:.4g}", f"{result.after[key]:.4g}")
    for level, threshold in result.alert_thresholds.items():
        table.add_row(f"{level} threshold", "", f"{threshold:.4g}")
    console().print(table)
