"""Batch delivery: Faust's consumer hands every fetched batch to one coroutine, skipping
Faust's per-message stream path, while Faust keeps the group, the offsets and the commits.

Why: profiled here (docs/performance.md), a Faust agent that does nothing costs ~145 µs of CPU
per message, and ~135 µs of that is the per-message path between the fetch and the agent
body: a ``wait_first`` that creates two tasks per message, the conductor's delivery into a
channel queue, the stream iterator, an Event object, sensors, and an ack per event.
``getmany`` itself plus Faust's bookkeeping (track and ack) costs ~10 µs. No setting turns
the per-message path off (stream buffer, fetch sizes, poll records and a silent monitor
were all measured: within noise), so this replaces it, in a consumer subclass.

Semantics kept: every message of a batch is tracked (Faust counts it as in flight) before
the handler runs, and acked only once the handler returns, so Faust's commit task commits
only offsets whose batch is done; a handler that raises leaves its batch unacked, never
committed, redelivered after a restart or rebalance. A rebalance waits for the batch in
flight (Faust's ``wait_empty``), as it does for a ``take_events`` batch. Messages at or
below the partition's read offset (seen again after a seek) are dropped, as Faust's own
drain loop drops them. Batches are at most ``broker_max_poll_records`` messages (aiokafka's
``max_records``): set it to the worker's max_batch.

The consumer also fetches with a short ``fetch_max_wait_ms``. Faust hard-codes 1500 ms, and
Tansu answers a waiting fetch only when that wait runs out, not when data arrives (measured:
a lone record is consumed 133 ms after it was produced at aiokafka's 500 ms default, 3 ms at
10 ms), so under light load every event sat up to 1.5 s in the broker. Apache Kafka answers
as soon as data is there, so there a short wait only costs an idle consumer a few more empty
fetches per second.

Use: ``app = BatchDeliveryApp(id, **options)``, ``app.batch_handler = coroutine``,
``app.subscribe(topic)`` instead of an agent on the topic.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import Message

BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
#: Longest a fetch waits for records before the loop checks whether it should stop, seconds.
FETCH_TIMEOUT_S = 1.0
#: Longest the broker may hold a fetch that finds no data, ms (see the module docstring).
FETCH_MAX_WAIT_MS = 10


class ShortFetchWaitThread(AIOKafkaConsumerThread):
    """Faust's consumer thread with FETCH_MAX_WAIT_MS instead of its hard-coded 1500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        return consumer


class BatchDeliveryConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with the drain loop replaced by one handler call per batch."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        handler: BatchHandler = self.app.batch_handler
        read_offset = self._read_offset
        while not (self.should_stop or fetcher.should_stop):
            batch: list[Message] = []
            async for tp, message in self.getmany(timeout=FETCH_TIMEOUT_S):
                last = read_offset[tp]
                if last is None or message.offset >= last:
                    batch.append(message)
            await self.sleep(0)  # getmany may return at once, batch after batch: let others run
            if not batch:
                continue
            for message in batch:
                self.track_message(message)
            await handler(batch)
            for message in batch:
                self.ack(message)
                read_offset[message.tp] = message.offset


class BatchDeliveryApp(faust.App):
    """A Faust app whose subscribed topics are delivered to ``batch_handler`` in batches."""

    batch_handler: BatchHandler | None = None

    def subscribe(self, topic: faust.types.TopicT) -> None:
        """Consume ``topic`` (its offsets acked and committed) without an agent on it."""
        self.topics.add(topic)

    def _new_consumer(self) -> Any:
        if self.batch_handler is None:
            raise RuntimeError("set batch_handler before the app starts")
        return BatchDeliveryConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
