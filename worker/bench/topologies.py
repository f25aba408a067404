"""The worker against other Redis topologies, beside the single Redis of the same run.

* ``cluster``: a Redis Cluster of three primaries (no replicas), started by the bench from the
  same redis-server binary: what spreading each batch over three primaries (one script per
  primary, worker.state.cluster) costs or gains.
* ``replicated``: one Redis with one replica and ``VITALWATCH_REDIS_MIN_REPLICAS=1``: what
  waiting for the replica's acknowledgement (WAIT) costs per batch.

Each runs the one-process worker phase on the same pre-produced topic and reports its
throughput and its Redis time per batch (worker.bench.real_worker). Every server runs on this
machine, so the figures say what the client side and the extra hops cost, not what a network
between hosts adds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

from worker.bench.produce import Record
from worker.bench.real_worker import measure_worker
from worker.bench.stack import BenchStack
from worker.tools.embedded import EmbeddedCluster, EmbeddedRedis, wait_replicating

TOPOLOGIES = ("cluster", "replicated")


def cluster_env(stack: BenchStack) -> dict[str, str]:
    """Start a three-primary cluster that the stack stops; the worker's settings for it."""
    cluster = EmbeddedCluster(primaries=3, replicas=0)
    stack.exits.callback(cluster.stop)
    cluster.start()
    return {"VITALWATCH_REDIS_URL": cluster.url, "VITALWATCH_REDIS_CLUSTER": "true"}


def replicated_env(stack: BenchStack) -> dict[str, str]:
    """Start a Redis and its replica that the stack stops; the worker's settings for them."""
    primary = EmbeddedRedis()
    stack.exits.callback(primary.stop)
    primary.start()
    replica = EmbeddedRedis(args=("--replicaof", "127.0.0.1", str(primary.port)))
    stack.exits.callback(replica.stop)
    replica.start()
    wait_replicating(replica)
    return {"VITALWATCH_REDIS_URL": primary.url, "VITALWATCH_REDIS_MIN_REPLICAS": "1"}


async def measure_topologies(
    stack: BenchStack, workload: Sequence[Record], names: Sequence[str], *, device: str, run_dir: Path,
) -> dict[str, Any]:
    """``<name>_worker_eps`` and ``<name>_redis_ms`` for each topology in ``names``."""
    starters = {"cluster": cluster_env, "replicated": replicated_env}
    result: dict[str, Any] = {}
    for name in names:
        env = await asyncio.to_thread(starters[name], stack)
        run = await measure_worker(
            stack, "main", workload, workers=1, device=device, run_dir=run_dir, phase=name, redis_env=env
        )
        result[f"{name}_worker_eps"] = run.eps
        result[f"{name}_redis_ms"] = run.redis_ms_per_batch
    return result
