"""`vitalwatch alerts`: follow the alerts topic and print each alert as one readable line.

For a nurse-in-charge screen, a pager bridge under test, or an engineer checking what the
worker raises. Records are validated against the published contract (schemas.outputs.AlertV1);
one that does not parse is reported as a warning line and skipped, never a crash, because a
follower must keep following whatever another producer wrote to the topic.

The follower joins no consumer group and commits nothing: it cannot take partitions from the
worker's group or from another follower. When nothing answers at the broker's address, it stops
within worker.tools.reach.REACH_TIMEOUT_S with one line naming the address and its setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from worker.tools.alert_text import MalformedAlert, format_alert, read_alert


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="follow the alerts topic and print each alert as a readable line",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from-beginning", action="store_true", help="print the alerts already on the topic first")
    parser.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default: VITALWATCH_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument("--max-records", type=int, default=None, help="stop after this many records")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    parser.set_defaults(func=run)


def follow(consumer: Any, out: TextIO, *, max_records: int | None, deadline: float | None) -> int:
    """Print records until max_records, the deadline or Ctrl-C; returns how many were read."""
    seen = 0
    while (max_records is None or seen < max_records) and (deadline is None or time.monotonic() < deadline):
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                try:
                    line = format_alert(read_alert(record.value))
                except MalformedAlert as exc:
                    where = f"{record.topic}/{record.partition}@{record.offset}"
                    line = f"warning: skipped a malformed record at {where}: {exc}"
                print(line, file=out, flush=True)
                seen += 1
                if max_records is not None and seen >= max_records:
                    return seen
    return seen


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from worker.tools import kafka_clients

    settings = kafka_clients.reachable_settings(args.bootstrap)
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    try:
        consumer = kafka_clients.follower(settings, [settings.topic_alerts], from_beginning=args.from_beginning)
    except (KafkaError, TimeoutError) as exc:
        print(f"vitalwatch alerts: {exc}", file=sys.stderr)
        return 1
    try:
        follow(consumer, sys.stdout, max_records=args.max_records, deadline=deadline)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
