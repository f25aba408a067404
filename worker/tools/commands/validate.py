"""`vitalwatch validate`: how well the model did on this site's own patients, from scored-outcomes.

Reads the ``scored-outcomes`` topic (VITALWATCH_TOPIC_SCORED_OUTCOMES: every score the worker
published, labelled once the patient's course was known), keeps the scores observed in
``[--since, --until)`` of one model version (``--model-version``) or of all, drops duplicates
by label_id, and prints per model version and role (the live model; a shadow beside it
separately) the report offline ``vitalwatch evaluate --scored`` prints for an export of the
same records: AUROC and AUPRC with patient-bootstrap 95 % intervals, NEWS2 of the same events
beside with the paired difference, the alert levels published as operating points (sensitivity,
specificity, PPV, alerts per patient-day, outcomes alerted and lead times), and calibration by
risk decile with ECE. Definitions: models/evaluation/labelled_report.py. With a shadow model's
scores beside the live one's, it also compares the two on the events both scored: AUROC and
AUPRC of each by the live labels, and shadow - live with a paired patient-bootstrap interval
(models/evaluation/paired.py).

The topic is read outside any consumer group, from the beginning to its end as reading starts,
and nothing is committed. When nothing answers at the broker's address, the command stops
within worker.tools.reach.REACH_TIMEOUT_S with one line naming the address and its setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.tools.feed import positive_int

if TYPE_CHECKING:
    from worker.tools.scored_outcomes import Read, Selection

#: Bootstrap resamples and seed (models.evaluation.bootstrap's defaults, not imported here:
#: building the parser must not load numpy).
DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """--since, --until and --model-version: which labelled scores a command reads."""
    from worker.tools.scored_outcomes import timestamp

    parser.add_argument("--since", type=timestamp, help="keep scores observed at or after this time (ISO 8601; UTC without an offset)")
    parser.add_argument("--until", type=timestamp, help="keep scores observed before this time")
    parser.add_argument("--model-version", help="keep one model version's scores (default: every version, each reported apart)")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """--replicates, --seed, --json and --plots: how the labelled report is computed and delivered."""
    parser.add_argument(
        "--replicates", type=positive_int, default=DEFAULT_REPLICATES,
        help=f"bootstrap resamples of patients for the 95 %% intervals (default {DEFAULT_REPLICATES})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    parser.add_argument("--json", type=Path, help="write the full report as JSON here")
    parser.add_argument("--plots", type=Path, help="write roc.png, pr.png and calibration.png per model into DIR/<version>-<role>/")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="report the model's accuracy on this site's labelled scores (the scored-outcomes topic), NEWS2 beside",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selection_arguments(parser)
    add_report_arguments(parser)
    parser.add_argument("--export", type=Path, help="also write the selected, de-duplicated records here as JSONL")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)")
    parser.set_defaults(func=run)


def selection_of(args: argparse.Namespace) -> "Selection":
    from worker.tools.scored_outcomes import Selection

    return Selection(since=args.since, until=args.until, model_version=args.model_version)


def report_read(
    command: str, source: dict[str, Any], read: "Read", selection: "Selection", *, replicates: int, seed: int,
    json_path: Path | None, plots: Path | None,
) -> int:
    """Deliver the report of ``read`` (validate, and evaluate --scored for an export: one code,
    one document); 2 when nothing was selected."""
    from models.evaluation.labelled_report import reports_by_model
    from models.evaluation.paired import shadow_comparisons
    from worker.tools.labelled_tables import deliver

    if read.malformed:
        print(f"vitalwatch {command}: skipped {read.malformed} malformed records (first: {read.first_problem})", file=sys.stderr)
    if not read.records:
        print(f"vitalwatch {command}: no labelled scores selected ({read.counts()}, selection {selection.describe()})", file=sys.stderr)
        return 2
    document = {
        "source": source,
        "selection": selection.describe(),
        "records": read.counts(),
        "models": reports_by_model(read.records, replicates=replicates, seed=seed),
        "comparisons": shadow_comparisons(read.records, replicates=replicates, seed=seed),
    }
    deliver(document, read.records, json_path=json_path, plots=plots)
    return 0


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from worker.tools import kafka_clients
    from worker.tools.scored_outcomes import read_topic, write_jsonl

    settings = kafka_clients.reachable_settings(args.bootstrap)
    try:
        read = read_topic(settings, selection_of(args))
    except (KafkaError, TimeoutError) as exc:
        print(f"vitalwatch validate: {exc}", file=sys.stderr)
        return 1
    if args.export:
        write_jsonl(args.export, read.records)
    return report_read(
        "validate", {"topic": settings.topic_scored_outcomes}, read, selection_of(args),
        replicates=args.replicates, seed=args.seed, json_path=args.json, plots=args.plots,
    )
