"""Pipelined batches (worker.stream.overlap) with the fake engine and publisher of
tests/test_pipeline.py: batch N+1 is scored while N awaits the broker, and every rule of one
batch at a time still holds — N's outputs acknowledged before N's state is written, N+1
published only once N is safe, a failure of N re-scoring N+1 after it, a stop leaving both
unsafe. The fault tests (tests/integration) run the same code in the real worker."""

from __future__ import annotations

import asyncio
from typing import Sequence

import pytest

from tests.test_pipeline import TOPICS, FakeEngine, FakePublisher, calls, engine, no_sleep, vitals  # noqa: F401 (fixtures)
from worker.operations.logs import Pseudonymiser
from worker.operations.metrics import Metrics
from worker.stream.messages import OutRecord
from worker.stream.overlap import OverlappedPipeline
from worker.stream.pipeline import Backoff, BatchPipeline, Stopping


class GatedPublisher(FakePublisher):
    """Holds every publish until ``gate`` is set: a broker slow to acknowledge."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__(calls)
        self.gate = asyncio.Event()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.calls.append(f"publish:{len(records)}")
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.published.extend(records)


@pytest.fixture
def publisher(calls: list[str]) -> GatedPublisher:
    return GatedPublisher(calls)


def overlapped(engine: FakeEngine, publisher: FakePublisher, backoff: Backoff | None = None) -> OverlappedPipeline:
    return OverlappedPipeline(BatchPipeline(
        engine, publisher, input_kinds={"vitals": "vitals"}, topics=TOPICS, metrics=Metrics(), worker_name="test",
        max_message_bytes=10_000, pseudonym=Pseudonymiser(b"k"), backoff=backoff or Backoff(sleep=no_sleep),
    ))


async def settle_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_next_batch_is_scored_while_the_first_awaits_the_broker(
    engine: FakeEngine, publisher: GatedPublisher, calls: list[str]
) -> None:
    pipeline = overlapped(engine, publisher)
    first = await pipeline.begin([vitals(0)])
    await settle_loop()
    second = await pipeline.begin([vitals(1, patient="p2")])
    await settle_loop()
    assert calls == ["score:1", "publish:1", "score:1"], "batch 2 scored while batch 1's publish is unacknowledged"
    assert not first.done() and not second.done()  # type: ignore[attr-defined]
    publisher.gate.set()
    await first
    await second
    assert calls == ["score:1", "publish:1", "score:1", "persist:s1", "publish:1", "persist:s2"], (
        "batch 1's own sealed state after its outputs, batch 2 published only after that"
    )
    assert [r["event_id"] for r in publisher.on("risk-scores")] == ["e0", "e1"]


async def test_a_failed_publish_rescores_both_batches_from_the_persisted_state(
    engine: FakeEngine, publisher: GatedPublisher, calls: list[str]
) -> None:
    pipeline = overlapped(engine, publisher)
    publisher.failures = [ConnectionError("broker gone")]
    first = await pipeline.begin([vitals(0)])
    second = await pipeline.begin([vitals(1)])
    publisher.gate.set()
    await first
    await second
    assert calls == [
        "score:1", "score:1", "publish:1",  # both scored; batch 1's publish fails
        "discard", "score:1", "publish:1", "persist",  # batch 1 again, from Redis alone
        "discard", "score:1", "publish:1", "persist",  # batch 2 again, on the state batch 1 left
    ]
    assert [r["event_id"] for r in publisher.on("risk-scores")] == ["e0", "e1"], "in order, each once"
    assert [e.event_id for e in engine.seen] == ["e0", "e1", "e0", "e1"]


async def test_a_batch_whose_scoring_ahead_failed_is_settled_after_the_one_before(
    engine: FakeEngine, publisher: GatedPublisher, calls: list[str]
) -> None:
    pipeline = overlapped(engine, publisher)
    publisher.gate.set()
    first = await pipeline.begin([vitals(0)])
    engine.score_failures = [ConnectionError("redis gone while restoring state")]
    second = await pipeline.begin([vitals(1)])
    await first
    await second
    assert calls == ["score:1", "score:1", "publish:1", "persist:s1", "discard", "score:1", "publish:1", "persist"]


async def test_a_stop_while_the_first_batch_is_unsafe_leaves_the_second_unsafe_too(
    engine: FakeEngine, publisher: GatedPublisher, calls: list[str]
) -> None:
    pipeline = overlapped(engine, publisher, Backoff(sleep=no_sleep, should_stop=lambda: True))
    engine.persist_failures = [ConnectionError("redis gone")]
    publisher.gate.set()
    first = await pipeline.begin([vitals(0)])
    second = await pipeline.begin([vitals(1)])
    with pytest.raises(Stopping):
        await first
    with pytest.raises(Stopping):
        await second
    assert calls == ["score:1", "score:1", "publish:1", "persist:s1"], "batch 2 never published nor persisted"
