"""The `vitalwatch` console script.

Each subcommand lives in its own module under worker.tools.commands and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code. Imports are deferred to the chosen command so
`vitalwatch alerts` does not pay for importing torch.

A command that cannot reach (or start) the Kafka or Redis it needs raises
worker.tools.reach.Unavailable; it is turned here, in one place for every command, into one line
on stderr and exit code 1 rather than a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from worker.operations.config import ConfigError
from worker.tools.reach import UNAVAILABLE_EXIT, Unavailable

#: Subcommand modules under worker.tools.commands, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "dev",
    "worker_cmd",
    "simulate",
    "replay",
    "alerts",
    "train",
    "evaluate",
    "validate",
    "recalibrate",
    "distill",
    "bench",
    "schemas_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitalwatch",
        description="Streaming early-warning scores from vital signs and lab results.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"worker.tools.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # a setting the tool cannot use: the arguments' fault, like argparse's
        print(f"vitalwatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"vitalwatch {args.command}: {exc}", file=sys.stderr)
        return UNAVAILABLE_EXIT


if __name__ == "__main__":
    sys.exit(main())
