"""``batch_cost_us``: what the worker's own code costs per event at a given micro-batch size.

The worker's pipeline — decode, score, the output records, sealing and writing the state to
Redis, the accounting — runs here in the bench's process on the workload's records, in batches
of each of BATCH_SIZES, each size on a fresh engine warmed up on the same first events, with a
publisher that acknowledges at once: no broker, no Faust, no other process on the clock.

A batch costs a fixed part (a tensor operation costs microseconds whatever its size, an LSTM
call tens of them, a Redis write a round trip) plus a part per event. At a steady input rate
the worker's batches are whatever arrived while it scored the one before, so the cost per event
at small batches against the cost at 512 (the size the catch-up run mostly sees) is what
decides how far below ``worker_eps`` its latency holds (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from worker.bench.produce import Record

if TYPE_CHECKING:
    from worker.stream.messages import OutRecord, RawMessage
    from worker.stream.pipeline import BatchPipeline

BATCH_SIZES = (5, 50, 512)
#: Events each fresh engine scores before the clock starts: patients resident, model warm.
WARMUP_EVENTS = 1000
#: Measuring time per batch size (less when the workload runs out first).
SECONDS = 4.0


class _Acknowledged:
    """A publisher whose broker acknowledges everything at once: the cost left is the worker's."""

    async def publish(self, records: Sequence[OutRecord]) -> None:
        return None


def batch_cost_us(
    workload: Sequence[Record], *, redis_url: str, prefix: str, device: str, checkpoint: Path | None,
) -> dict[str, float]:
    """Microseconds per event at each of BATCH_SIZES (keys: the sizes as text)."""
    return asyncio.run(_batch_cost(workload, redis_url, prefix, device, checkpoint))


async def _batch_cost(
    workload: Sequence[Record], redis_url: str, prefix: str, device: str, checkpoint: Path | None,
) -> dict[str, float]:
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from worker.operations.config import Settings
    from worker.operations.logs import Pseudonymiser
    from worker.operations.metrics import Metrics
    from worker.scoring.alert_policy import AlertPolicy
    from worker.scoring.engine import RiskEngine
    from worker.state.store import RedisStateStore
    from worker.stream.messages import RawMessage
    from worker.stream.pipeline import BatchPipeline, OutputTopics

    settings = Settings()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)  # as the worker runs
    model = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT, device)
    messages = [RawMessage(r.kind, 0, offset, r.key, r.value, None) for offset, r in enumerate(workload)]
    result: dict[str, float] = {}
    try:
        for size in BATCH_SIZES:
            store = RedisStateStore(redis_url, prefix=f"{prefix}{size}:", ttl_s=3600)
            engine = RiskEngine(
                model, store, policy=AlertPolicy.from_manifest(model.manifest), device=torch.device(device),
                **settings.engine_options,
            )
            pipeline = BatchPipeline(
                engine, _Acknowledged(), input_kinds={r.kind: r.kind for r in workload},
                topics=OutputTopics("risk-scores", "alerts", "dead-letters"), metrics=Metrics(), worker_name="bench",
                max_message_bytes=settings.max_message_bytes, pseudonym=Pseudonymiser(None),
            )
            try:
                result[str(size)] = await _per_event_us(pipeline, messages, size)
            finally:
                await store.close()
    finally:
        torch.set_num_threads(threads)
    return result


async def _per_event_us(pipeline: BatchPipeline, messages: Sequence[RawMessage], size: int) -> float:
    """Warm up on the first WARMUP_EVENTS, then score batches of ``size`` for SECONDS."""
    warmup = min(WARMUP_EVENTS, len(messages) // 2)
    for start in range(0, warmup, size):
        await _one(pipeline, messages[start : min(start + size, warmup)])
    done, began = warmup, time.perf_counter()
    while done < len(messages) and time.perf_counter() - began < SECONDS:
        batch = messages[done : done + size]
        await _one(pipeline, batch)
        done += len(batch)
    return 1e6 * (time.perf_counter() - began) / (done - warmup)


async def _one(pipeline: BatchPipeline, batch: Sequence[RawMessage]) -> None:
    """One batch made safe as the worker makes it: scored and sealed, published, persisted."""
    ahead = await pipeline.score_ahead(batch)
    if not await pipeline.publish_ahead(ahead):
        raise RuntimeError("a batch failed to score or persist in the batch-cost phase")
