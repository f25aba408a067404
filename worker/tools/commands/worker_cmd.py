"""`vitalwatch worker`: run the streaming worker.

It runs Faust's own worker command on worker.stream.app, so `vitalwatch worker` and
`faust -A worker.stream.app worker` are the same process with the same signal handling and shutdown.
Configuration comes only from VITALWATCH_* variables (worker.operations.config), which is what
docker-compose and `vitalwatch dev` set.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the streaming worker (configured by VITALWATCH_* variables)",
        description="Consume vitals, labs and FHIR observations, publish risk scores, alerts and "
        "dead-letters. Settings: `python -m worker.operations.config --markdown`.",
    )
    parser.set_defaults(func=run)


#: Faust's --loglevel accepts crit, error, warn, info and debug (click.Choice), not Python's
#: level names, so WARNING and CRITICAL must be spelled its way or Faust refuses to start.
FAUST_LOGLEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "crit"}


def faust_loglevel(level: str) -> str:
    """VITALWATCH_LOG_LEVEL (already validated by worker.operations.config) as Faust's --loglevel value."""
    return FAUST_LOGLEVELS[level]


def run(args: argparse.Namespace) -> int:
    from faust.cli.faust import cli

    from worker.stream.app import settings

    # Faust's --loglevel only matters when no logging_config is set; ours is (JSON lines at
    # VITALWATCH_LOG_LEVEL), so the level is passed for the banner and stays consistent.
    argv = ["-A", "worker.stream.app", "worker", "--loglevel", faust_loglevel(settings.log_level)]
    return int(cli.main(args=argv, prog_name="vitalwatch worker", standalone_mode=False) or 0)
