"""One module per `vitalwatch` subcommand, each with ``register(subparsers)``.

The module list lives in worker.cli.COMMANDS so `vitalwatch --help` shows them in a fixed order.
"""
