"""Pipelined batches: batch N+1 is decoded and scored while batch N's outputs await the broker's
acknowledgement and its state Redis (issue 16).

Why: at steady load a batch is small (~40 events) and used to pay its fixed costs in series
(scoring ~5.5 ms, the broker's ack ~2.9 ms, the Redis write ~1.7 ms): the event loop sat idle
through the two waits while the next batch queued. Overlapping them keeps every guarantee of
one batch at a time:

* N's outputs are acknowledged before N's state is written: ``publish_ahead`` persists only
  after its publish returned, and writes only N's sealed state (worker.scoring.engine.seal),
  never N+1's, which the slab already holds.
* N's state is written before N is acked: N's completion (what ``begin`` returns) ends only
  after its persist; batch delivery acks batches in fetch order, so offsets are committed in
  order.
* Outputs go out in order: N+1's publish starts only once N is safe.
* A failure of N leaves N+1 unacknowledged and re-scored from the state N+1 first saw: when
  N's publish fails (or its scoring ahead did), every unpersisted change is discarded, batch
  N+1's included, and N is settled again from Redis alone (``BatchPipeline.settle``, with its
  retries and isolation); N+1, scored before that discard (its epoch is older), is settled
  again after N, on the state N left. Scoring ahead waits while this happens (``_scoring``),
  so no batch is scored on a state that is being discarded.
* A rebalance waits for both: both batches are tracked by batch delivery until acked.

Only two batches are ever in flight: batch delivery waits for N before it hands over N+2.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Sequence

from worker.stream.messages import RawMessage
from worker.stream.pipeline import BatchPipeline, ScoredAhead


class OverlappedPipeline:
    """Drives a BatchPipeline two batches deep; see the module doc."""

    def __init__(self, pipeline: BatchPipeline) -> None:
        self.pipeline = pipeline
        self._scoring = asyncio.Lock()  # held while a batch is scored, or settled after a discard
        self._epoch = 0  # bumped by every discard: a batch scored in an older epoch is stale
        self._tail: asyncio.Future[None] | None = None  # completion of the newest batch begun

    async def begin(self, batch: Sequence[RawMessage]) -> Awaitable[None]:
        """Score ``batch`` now; returns what completes once it is safe (outputs acknowledged,
        state written) or raises Stopping when it cannot be made safe (nor can any batch after
        it). The batches before it need not be safe yet."""
        async with self._scoring:
            epoch = self._epoch
            ahead = await self.pipeline.score_ahead(batch)
            done = asyncio.ensure_future(self._finish(ahead, epoch, self._tail))
            done.add_done_callback(_retrieve)  # awaited by batch delivery, or abandoned with its batch
            self._tail = done
        return done

    @asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Inside the block no batch is in flight: none is being scored or scored ahead, and
        the last one begun is safe (or failed). What a model swap needs (Runtime.reload)."""
        while True:
            async with self._scoring:
                tail = self._tail
                if tail is None or tail.done():
                    yield
                    return
            await asyncio.wait([tail])  # its failure path takes _scoring: wait outside it

    async def _finish(self, ahead: ScoredAhead, epoch: int, previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            await previous  # not safe (Stopping): neither is this batch, which then never acks
        if epoch == self._epoch and await self.pipeline.publish_ahead(ahead):
            return
        async with self._scoring:
            self.pipeline.discard_unpersisted()
            self._epoch += 1
            await self.pipeline.settle(ahead)


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark a completion's outcome seen: a withheld batch's is never awaited."""
    if not done.cancelled():
        done.exception()
