"""The ceiling of a Python Kafka consumer: aiokafka ``getmany`` plus a JSON decode per record.

Nothing a Python worker does can read the topic faster than this, so it is the yardstick for
how much Faust itself and then the worker's own work cost per message.
"""

from __future__ import annotations

import time
from typing import Sequence

import orjson


async def raw_consumer_eps(bootstrap: str, topics: Sequence[str], n_events: int, timeout_s: float = 300.0) -> float:
    """Records/s from the first fetched batch to the ``n_events``-th record, decoding each."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        first: float | None = None
        deadline = time.monotonic() + timeout_s
        while count < n_events and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                if first is None:
                    first = time.perf_counter()
                for record in batch:
                    orjson.loads(record.value)
                count += len(batch)
        if first is None or count < n_events:
            raise TimeoutError(f"raw consumer read {count} of {n_events} records within {timeout_s:.0f} s")
        return count / (time.perf_counter() - first)
    finally:
        await consumer.stop()
