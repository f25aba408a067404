"""``worker_eps``: the real worker, `python -m worker.cli worker` as production runs it, on the
pre-produced topic; plus its peak RSS, the Redis bytes it keeps per patient and its Redis time
per batch.

A worker's throughput counts only what is safe: risk-scores (and dead-letters) acknowledged by
the broker, from the first to the last, stated in input events per second (the encounters it
applied without an output included: worker.bench.produce.input_eps). K workers in one consumer
group on the same topic give the scale-out figure the same way. ``redis_env`` points the
workers at another Redis than the stack's (a cluster, a Redis with a replica:
worker.bench.topologies); the Redis time per batch is the mean of the workers' own
``vitalwatch_redis_seconds{operation="persist"}``, read from their /metrics before they stop.
``shadow`` runs the workers with a shadow model beside the live one (VITALWATCH_SHADOW_CHECKPOINT):
the same events then cost two engines' scoring and two state writes per batch, and the figure
still counts the live risk scores (the shadow's go out in the same acknowledged publish).
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from worker.bench.output_watch import OutputWatch
from worker.bench.processes import Contender
from worker.bench.produce import Record, input_eps, scored_count
from worker.bench.stack import BenchStack

#: Keys sampled for MEMORY USAGE: enough for a stable mean, few enough to stay quick.
REDIS_SAMPLE = 200
#: Slowest rate the wait allows for before giving up on a phase (events/s), plus start-up.
MIN_EPS = 100
START_S = 120.0


@dataclass(frozen=True)
class WorkerRun:
    eps: float
    peak_rss_mb: float
    redis_bytes_per_patient: float | None  # None when the state is not on the stack's Redis
    redis_ms_per_batch: float


def worker_argv() -> list[str]:
    return ["-m", "worker.cli", "worker"]


async def measure_worker(
    stack: BenchStack, inputs: str, workload: Sequence[Record], *, workers: int, device: str, run_dir: Path, phase: str,
    redis_env: Mapping[str, str] | None = None, shadow: Path | None = None,
) -> WorkerRun:
    """Start ``workers`` worker processes in one group on the ``inputs`` topic set, holding
    ``workload``, and wait until all its observations are scored (or dead-lettered)."""
    n_events = scored_count(workload)
    topics = stack.topics(inputs=inputs, outputs=phase)
    extra = {**(redis_env or {}), **({"VITALWATCH_SHADOW_CHECKPOINT": str(shadow)} if shadow is not None else {})}
    envs = [{**stack.env(topics, phase, device=device, run_dir=run_dir), **extra} for _ in range(workers)]
    contenders = [stack.start_contender(f"{phase}-{i}", worker_argv(), env, run_dir) for i, env in enumerate(envs)]
    try:
        async with OutputWatch(stack.bootstrap, topics.scored) as watch:
            reached = await watch.wait_for(n_events, START_S + n_events / MIN_EPS, check=lambda: _check_all(contenders))
            if reached < n_events:
                raise TimeoutError(f"{phase}: {reached} of {n_events} events scored in time; logs in {run_dir}")
            span = watch.span()
        rss = max(c.peak_rss_mb() for c in contenders)
        redis_ms = await asyncio.to_thread(redis_ms_per_batch, [int(env["VITALWATCH_METRICS_PORT"]) for env in envs])
    finally:
        for contender in contenders:
            contender.terminate()
    state_bytes = None
    if not redis_env:
        state_bytes = await asyncio.to_thread(redis_bytes_per_patient, stack.redis_url, f"{stack.redis_prefix(phase)}state:")
    return WorkerRun(input_eps(span.eps, workload), rss, state_bytes, redis_ms)


def redis_ms_per_batch(metrics_ports: Sequence[int]) -> float:
    """Mean write-behind time per batch, ms, over the workers answering on ``metrics_ports``."""
    return 1000 * histogram_mean(metrics_ports, "vitalwatch_redis_seconds", '{operation="persist"}')


def histogram_mean(metrics_ports: Sequence[int], name: str, labels: str = "") -> float:
    """Mean observation of the histogram ``name`` (its ``labels`` exactly as exposed) over the
    workers answering on ``metrics_ports``; 0 when none was observed."""
    total = count = 0.0
    for port in metrics_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total += _sample(text, f"{name}_sum{labels}")
        count += _sample(text, f"{name}_count{labels}")
    return total / count if count else 0.0


def _sample(exposition: str, name: str) -> float:
    """The value of one sample (name and labels exactly as exposed) in Prometheus text, 0 if absent."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _check_all(contenders: Sequence[Contender]) -> None:
    for contender in contenders:
        contender.check()


def redis_bytes_per_patient(url: str, state_prefix: str) -> float:
    """Mean MEMORY USAGE (value, key and Redis's overhead) over a sample of patient keys."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        keys = []
        for key in client.scan_iter(match=f"{state_prefix}*", count=1000):
            keys.append(key)
            if len(keys) == REDIS_SAMPLE:
                break
        if not keys:
            return 0.0
        sizes = [client.memory_usage(key) or 0 for key in keys]
        return sum(sizes) / len(sizes)
    finally:
        client.close()
