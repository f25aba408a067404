"""`vitalwatch simulate`: publish simulated patients to the input topics in accelerated time.

The demo, docker-compose and load tests all feed the worker from the simulator
(models.datasets.simulator), published exactly as a hospital's interface engine would:
vitals.v1 and labs.v1 JSON keyed by patient id, and each patient's admission, transfer and
discharge as encounters.v1 (to VITALWATCH_TOPIC_ENCOUNTERS). ``--profile`` chooses the cohort:
``ward`` patients (nurses' observation sets hours apart, a quarter deteriorating; what the
simulator-trained model learned from) or ``icu`` stays resembling PhysioNet 2019 set A (charted
by the hour, the whole laboratory panel, set A's share turning septic), for the model trained on
set A. DEFAULT_PROFILE is the profile `simulate` and `vitalwatch dev` (so `make demo`) use when
none is given: the one that matches the shipped model. Pacing, time stamping and publishing are
worker.tools.feed's, shared with `vitalwatch replay`: ``--speed X`` plays X simulated seconds per
wall second, ``--speed 0`` sends as fast as the broker takes them, and the timeline is shifted
into the recent past so that no observation is stamped in the future when it is sent.

The broker is checked before the cohort is simulated: when nothing answers, the command stops
within worker.tools.reach.REACH_TIMEOUT_S with one line naming the address and its setting.
"""

from __future__ import annotations

import argparse
import sys

from models.datasets.profiles import PROFILES, Profile
from worker.tools.feed import events_to_send, feed, non_negative_float, positive_float, positive_int

#: The profile fed when none is given: the cohort the shipped model is meant for (it learnt
#: from PhysioNet 2019 set A, which the ICU profile imitates).
DEFAULT_PROFILE: Profile = "icu"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish simulated patients' vitals, labs and encounters to the input topics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--patients", type=positive_int, default=100, help="patients in the cohort (default 100)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed", type=non_negative_float, default=60.0,
        help="simulated seconds per wall second; 0 = as fast as possible (default 60)",
    )
    speed.add_argument("--as-fast-as-possible", action="store_true", help="same as --speed 0")
    parser.add_argument(
        "--seed", type=int, default=7, help="cohort seed: the same seed sends the same patients (default 7)"
    )
    parser.add_argument(
        "--profile", choices=PROFILES, default=DEFAULT_PROFILE,
        help=f"ward patients, or ICU stays resembling PhysioNet 2019 set A (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--deteriorating-fraction", type=_fraction, default=None,
        help="share of patients who deteriorate during their stay (default: the profile's, ward 0.25, icu set A's 0.088)",
    )
    parser.add_argument(
        "--admission-window-hours", type=non_negative_float, default=168.0,
        help="admissions spread over this many simulated hours (default 168: a week's ward)",
    )
    parser.add_argument("--duration", type=positive_float, default=None, help="stop after this many wall seconds")
    parser.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)"
    )
    parser.set_defaults(func=run)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from worker.tools import kafka_clients

    settings = kafka_clients.reachable_settings(args.bootstrap)
    from models.datasets.simulator import interleave, simulate_cohort  # numpy: after the check, not before

    speed = 0.0 if args.as_fast_as_possible else args.speed
    cohort = simulate_cohort(
        args.patients, seed=args.seed, deteriorating_fraction=args.deteriorating_fraction,
        admission_window_hours=args.admission_window_hours, profile=args.profile,
    )
    events = events_to_send([event for _, event in interleave(cohort, with_encounters=True, with_outcomes=True)], speed, args.duration)
    if not events:
        print("simulate: the cohort has no events", file=sys.stderr)
        return 1
    return feed("simulate", settings, events, speed, args.duration, f"{args.patients} {args.profile} patients")
