"""Faust's own ceiling: a consumer shaped like the worker's (same settings, same batch size)
that does nothing with the events but count them.

Two deliveries are measured. ``stream``: an agent iterating ``stream.take_events``, the way
the worker consumed before batch delivery. ``batch``: worker.stream.batch_delivery, as the worker
consumes now: fetched batches handed to one coroutine with Faust still tracking, acking and
committing every offset, and the worker's fetch wait.

Run as ``python -m worker.bench.bare_faust --delivery stream|batch --events N --result PATH``
with the bench's VITALWATCH_* environment; it writes {"events", "seconds"} (first to N-th
event) once N events have arrived. Nothing is published, so the count comes from the
consumer itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import faust

from faust.types import Message

from worker.stream.batch_delivery import BatchDeliveryApp
from worker.bench.faust_process import build_app, run
from worker.bench.stack import BenchStack
from worker.operations.config import load_settings

#: Longest wait for the agent to reach its target, beyond start-up, per event.
START_S = 120.0
SECONDS_PER_EVENT = 0.01
DELIVERIES = ("stream", "batch")


@dataclass
class Progress:
    """Events seen by the agent, and when the first arrived."""

    target: int
    result_path: Path
    count: int = 0
    first: float | None = None

    def add(self, n: int) -> None:
        """Count ``n`` events; on reaching the target, write the result for the harness."""
        if self.first is None:
            self.first = time.perf_counter()
        before = self.count
        self.count += n
        if before < self.target <= self.count:
            seconds = time.perf_counter() - self.first
            self.result_path.write_text(json.dumps({"events": self.count, "seconds": seconds}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.bench.bare_faust", description=__doc__.splitlines()[0])
    parser.add_argument("--delivery", choices=DELIVERIES, required=True, help="how Faust hands over the events")
    parser.add_argument("--events", type=int, required=True, help="events after which the result is written")
    parser.add_argument("--result", type=Path, required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    settings = load_settings()
    progress = Progress(args.events, args.result)
    if args.delivery == "batch":
        app, topic = build_app(settings, BatchDeliveryApp)
        app.fetch_max_wait_ms = settings.max_wait_ms

        async def count_batch(messages: Sequence[Message]) -> None:
            progress.add(len(messages))

        app.batch_handler = count_batch
        app.subscribe(topic)
    else:
        app, topic = build_app(settings)

        @app.agent(topic)
        async def count_only(stream: faust.StreamT) -> None:
            async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000):
                progress.add(len(events))

    run(app)


async def measure_bare_faust(stack: BenchStack, inputs: str, n_events: int, *, delivery: str, run_dir: Path) -> float:
    """Events/s of the do-nothing consumer over the ``inputs`` topic set, first to last event."""
    phase = f"bare-{delivery}"
    topics = stack.topics(inputs=inputs, outputs=phase)
    result = run_dir / f"{phase}.json"
    argv = ["-m", "worker.bench.bare_faust", "--delivery", delivery, "--events", str(n_events), "--result", str(result)]
    contender = stack.start_contender(phase, argv, stack.env(topics, phase, device="cpu", run_dir=run_dir), run_dir)
    try:
        deadline = time.monotonic() + START_S + n_events * SECONDS_PER_EVENT
        while not result.exists():
            contender.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare Faust did not reach {n_events} events in time; log {contender.log_path}")
            await asyncio.sleep(0.1)
    finally:
        contender.terminate()
    measured = json.loads(result.read_text())
    return (measured["events"] - 1) / measured["seconds"]


if __name__ == "__main__":
    main()
