"""End-to-end latency at a steady load: Kafka timestamp of an input observation → broker
timestamp of its risk score (the score is acknowledged when the broker stamps it; an encounter
has no score, so it has no latency of its own).

The worker gets its own input topics here (the pre-produced topic cannot be replayed at a
pace), is warmed up until it scores (model loaded, group joined) and then fed at a fixed rate
for a fixed time, so the figures describe a worker in service, not one starting up. The mean
size of its micro-batches, read from its own metrics, says how far the load let it amortise
each batch's fixed cost (a backlog makes batches grow toward the catch-up run's).

The harness itself must not pause: it keeps a record of every event sent and every score read
(over 100 000 of each), and a full cyclic collection over them stopped its paced producer for
130-150 ms every ~10 s (measured), a backlog the worker then got blamed for. Its collector is
paused while it paces and reads (``collector_paused``); reference counting still frees memory.
"""

from __future__ import annotations

import asyncio
import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from worker.bench.output_watch import OutputWatch
from worker.bench.produce import Record, produce_all, produce_paced, relabelled, scored_count
from worker.bench.real_worker import histogram_mean, worker_argv
from worker.bench.stack import BenchStack

#: Events sent before the paced run, to have the worker loaded, joined and scoring.
WARMUP_EVENTS = 200
#: Longest wait for the worker to start and score the warm-up, and to drain after the run.
START_S = 120.0
DRAIN_S = 60.0


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    events: int
    rate_eps: float
    batch_events: float  # mean events per micro-batch the worker scored (warm-up included)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in this process inside the block (restored after)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already-sorted values (q in [0, 100])."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def measure_latency(
    stack: BenchStack, workload: Sequence[Record], *, rate_eps: float, seconds: float, device: str, run_dir: Path,
    name: str = "latency",
) -> Latency:
    """Latency of the paced events (the warm-up's are left out) at ``rate_eps`` for ``seconds``."""
    topics = stack.topics(inputs=name, outputs=name)
    n_paced = max(1, round(rate_eps * seconds))
    records = relabelled(workload, WARMUP_EVENTS + n_paced)
    env = stack.env(topics, name, device=device, run_dir=run_dir)
    contender = stack.start_contender(name, worker_argv(), env, run_dir)
    try:
        async with OutputWatch(stack.bootstrap, topics.scored, keep_values=True) as watch:
            await produce_all(stack.bootstrap, topics.inputs, records[:WARMUP_EVENTS])
            warmup = scored_count(records[:WARMUP_EVENTS])
            if await watch.wait_for(warmup, START_S, contender.check) < warmup:
                raise TimeoutError(f"the worker did not score its warm-up within {START_S:.0f} s; log {contender.log_path}")
            with collector_paused():
                sent_at = await produce_paced(stack.bootstrap, topics.inputs, records[WARMUP_EVENTS:], rate_eps)
                await watch.wait_for(scored_count(records), DRAIN_S, contender.check)
            acked = watch.acknowledged_at()
        batch_events = await asyncio.to_thread(histogram_mean, [int(env["VITALWATCH_METRICS_PORT"])], "vitalwatch_batch_size")
    finally:
        contender.terminate()
    latencies = sorted(1000 * (acked[e] - sent) for e, sent in sent_at.items() if e in acked)
    if not latencies:
        raise RuntimeError(f"no paced event was scored; log {contender.log_path}")
    return Latency(percentile(latencies, 50), percentile(latencies, 99), latencies[-1], len(latencies), rate_eps, batch_events)
