"""`vitalwatch schemas`: show, check or regenerate the JSON Schema file of every topic.

The work lives in schemas.generate (also `python -m schemas.generate`) so that the contracts
package can maintain its own files without the worker; this module only wires it into the
console script.
"""

from __future__ import annotations

import argparse

from schemas import generate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="check or regenerate the JSON Schema files of the topics",
        description=generate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_arguments(parser)
    parser.set_defaults(func=generate.run)
