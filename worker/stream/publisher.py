"""Publishing a micro-batch's outputs: one Kafka record batch per topic partition, all awaited.

Why not the producer's per-record ``send``: profiled in the worker (docs/performance.md), one
``send`` per output cost ~15 µs of the event loop (a future, a metadata wait and an accumulator
append per record, plus a pure-Python murmur2 hash of the key): a tenth of the worker's CPU.
Here the records of a micro-batch are grouped by the partition Kafka's default partitioner
gives their key (murmur2, as the Java client: a consumer keyed by patient finds them where it
expects), each group is appended to aiokafka ``BatchBuilder``s, and one future per builder is
awaited. Order within a partition is the order of ``records``.

The micro-batch is not safe until every builder is acknowledged (acks=all, set on the
producer): ``publish`` waits for all of them, then raises the first failure, so the pipeline
retries the whole batch (outputs are at least once, with deterministic ids).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import defaultdict
from typing import Any, Callable, Sequence

from aiokafka.partitioner import murmur2

from worker.stream.messages import OutRecord

#: Keys (patient ids) whose partition is remembered: a ward's worth many times over.
PARTITION_CACHE = 1 << 16


@functools.lru_cache(maxsize=PARTITION_CACHE)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` as Kafka's default partitioner picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchPublisher:
    """Publishes through an aiokafka producer (``producer()`` returns the started one)."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Send every record; return only when the broker acknowledged all of them."""
        producer = self._producer()
        pending: list[asyncio.Future] = []
        try:
            for (topic, partition), group in (await self._by_partition(producer, records)).items():
                for builder in _builders(producer, group):
                    pending.append(await producer.send_batch(builder, topic, partition=partition))
        finally:
            results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @staticmethod
    async def _by_partition(producer: Any, records: Sequence[OutRecord]) -> dict[tuple[str, int], list[OutRecord]]:
        partitions: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for record in records:
            known = partitions.get(record.topic)
            if known is None:
                known = partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            if record.key is None:
                partition = random.choice(known)
            else:
                partition = known[key_partition(record.key, len(known))]
            groups[(record.topic, partition)].append(record)
        return groups


def _builders(producer: Any, records: list[OutRecord]) -> list[Any]:
    """``records`` in order, in as many builders as their size needs (a full builder refuses
    the next record; an empty one takes any record)."""
    builders = [producer.create_batch()]
    for record in records:
        if builders[-1].append(key=record.key, value=record.value, timestamp=None) is None:
            builders.append(producer.create_batch())
            builders[-1].append(key=record.key, value=record.value, timestamp=None)
    return builders
