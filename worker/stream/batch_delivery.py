"""Batch delivery: Faust's consumer hands every fetched batch to one coroutine, skipping
Faust's per-message stream path, while Faust keeps the group, the offsets and the commits.

Why: profiled here (docs/performance.md), a Faust agent that does nothing costs ~145 µs of CPU
per message, and ~135 µs of that is the per-message path between the fetch and the agent
body: a ``wait_first`` that creates two tasks per message, the conductor's delivery into a
channel queue, the stream iterator, an Event object, sensors, and an ack per event.
``getmany`` itself plus Faust's bookkeeping (track and ack) costs ~10 µs. No setting turns
the per-message path off (stream buffer, fetch sizes, poll records and a silent monitor
were all measured: within noise), so this replaces it, in a consumer subclass.

Semantics kept from Faust's own drain loop: every message of a batch is tracked (Faust counts
it as in flight) before the handler runs, and acked only once the handler returns, so Faust's
commit task commits only offsets whose batch is done. A rebalance or a stop waits for the
batch in flight (Faust's ``wait_empty``), as it does for a ``take_events`` batch. Messages at
or below the partition's read offset (seen again after a seek) are dropped, offset gaps
(compaction, transaction markers) are registered so commits can pass them, and
``broker_commit_every`` still forces a commit. Batches are at most
``broker_max_poll_records`` messages (aiokafka's ``max_records``).

A batch that is not safe is never committed: a handler that raises BatchWithheld (or anything
else) leaves the batch's offsets out of Faust's acked set, and delivery stops, since a later
batch of the same partition acked after an uncommitted one could let Faust's commit step past
it. The messages are flagged acked on the message only, so a stop or a rebalance waiting for
the batch is not held forever; the batch is redelivered from the last commit after a restart
or by the partition's next owner.

Two batches may be in flight (issue 16): a handler that returns an awaitable hands the batch
over unfinished, and the batch is safe once that awaitable completes. The loop then fetches
the next batch and hands it over too (the handler scores it while the first one's outputs await
the broker and its state Redis) before it waits for the first; batches are acked strictly in
the order they were fetched, and when one is not safe (BatchWithheld, or anything else) the one
fetched after it is withheld with it. A handler that returns None has finished its batch (one
batch at a time, as before). Both batches are tracked, so a rebalance or a stop waits for both. The
fetch with a batch in flight races that batch's completion, and the batch is acked as soon as
it is safe, even while the fetch waits: a rebalance that begins then holds Faust's getmany
(its call waits in the consumer thread's queue behind the rebalance, which waits for every
tracked batch to be acked), so a loop that waited for the fetch first would never ack it.

The consumer also fetches with a short ``fetch_max_wait_ms`` (BatchDeliveryApp's
``fetch_max_wait_ms``). Faust hard-codes 1500 ms, and Tansu answers a waiting fetch only when
that wait runs out, not when data arrives (measured: a lone record is consumed 133 ms after it
was produced at aiokafka's 500 ms default, 3 ms at 10 ms), so under light load every event sat
up to 1.5 s in the broker. Apache Kafka answers as soon as data is there, so there a short wait
only costs an idle consumer a few more empty fetches per second.

Use: ``app = BatchDeliveryApp(id, **options)``, ``app.batch_handler = coroutine``,
``app.subscribe(topic)`` instead of an agent on the topic.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, Message

#: A handler returns None once its batch is safe, or an awaitable that completes when it is.
BatchHandler = Callable[[Sequence[Message]], Awaitable[Awaitable[None] | None]]
#: Longest a fetch waits for records before the loop checks whether it should stop, seconds.
FETCH_TIMEOUT_S = 1.0
#: Default longest time the broker may hold a fetch that finds no data, ms (see the docstring).
FETCH_MAX_WAIT_MS = 10


class _InFlight:
    """A batch handed over unfinished, and what completes when it is safe."""

    __slots__ = ("batch", "done")

    def __init__(self, batch: list[Message], done: Awaitable[None]) -> None:
        self.batch = batch
        self.done = asyncio.ensure_future(done)


class BatchWithheld(Exception):
    """Raised by a batch handler whose batch is not safe (e.g. the worker is stopping mid-batch):
    its offsets must not be committed and nothing more is delivered."""


class ShortFetchWaitThread(AIOKafkaConsumerThread):
    """Faust's consumer thread with the app's ``fetch_max_wait_ms`` instead of its hard-coded 1500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # read by AIOKafkaConsumer.start()
        return consumer


class BatchDeliveryConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with the drain loop replaced by one handler call per batch."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        handler: BatchHandler = self.app.batch_handler
        in_flight: _InFlight | None = None
        try:
            while not (self.should_stop or fetcher.should_stop):
                if in_flight is None:
                    batch = await self._fetch_tracked()
                else:
                    batch, in_flight = await self._fetch_beside(in_flight)
                if not batch:
                    if in_flight is not None:
                        earlier, in_flight = in_flight, None
                        await self._settle(earlier)
                    continue
                try:
                    done = await handler(batch)
                except BaseException:
                    self._withhold(batch)
                    if in_flight is not None:  # the batch before it may still be safe
                        earlier, in_flight = in_flight, None
                        await self._settle(earlier)
                    raise
                if in_flight is not None:
                    earlier, in_flight = in_flight, None
                    try:
                        await self._settle(earlier)
                    except BaseException:
                        self._withhold(batch)
                        _abandon(done)
                        raise
                if done is None:
                    await self._ack_batch(batch)
                else:
                    in_flight = _InFlight(batch, done)
            if in_flight is not None:  # stopping: the batch in flight ends first, safe or withheld
                earlier, in_flight = in_flight, None
                await self._settle(earlier)
        except BatchWithheld:
            self.log.warning("batch withheld; delivery stops")
            return
        except self.consumer_stopped_errors:
            if self.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            if in_flight is not None:  # left mid-flight (cancelled, consumer stopped): never committed
                self._withhold(in_flight.batch)
                _abandon(in_flight.done)

    async def _fetch_beside(self, in_flight: _InFlight) -> tuple[list[Message], _InFlight | None]:
        """Fetch while ``in_flight`` completes; settle it (ack, or withhold and raise) as soon
        as it does. Returns the batch fetched and what is still in flight."""
        fetch = asyncio.ensure_future(self._fetch_tracked(in_flight.batch))
        try:
            await asyncio.wait((fetch, in_flight.done), return_when=asyncio.FIRST_COMPLETED)
            if not in_flight.done.done():
                return fetch.result(), in_flight
            await self._settle(in_flight)
            return await fetch, None
        except BaseException:
            _abandon_fetch(fetch, self._withhold)
            raise

    async def _settle(self, in_flight: _InFlight) -> None:
        """Wait for a batch handed over unfinished: ack it once safe, else withhold it and raise."""
        try:
            await in_flight.done
        except BaseException:
            self._withhold(in_flight.batch)
            raise
        await self._ack_batch(in_flight.batch)

    async def _fetch_tracked(self, in_flight: Sequence[Message] = ()) -> list[Message]:
        """One fetch, tracked, without the messages already read, with offset gaps registered.
        Messages of ``in_flight`` (a batch handed over, not yet acked, so not yet in the read
        offsets) count as read: their offsets are no gap.

        Faust's getmany stops yielding when a rebalance begins (flow stopped or a new
        generation), and nothing here awaits between its last record and the tracking: a
        rebalance that starts later waits for this batch (``wait_empty``), one that started
        earlier never sees it, so a batch never straddles a change of partition owner."""
        await self.sleep(0)  # getmany may return at once, batch after batch: let others run
        read_offset = self._read_offset
        last_seen: dict[TP, int | None] = {m.tp: m.offset for m in in_flight}
        gaps: list[tuple[TP, int, int]] = []
        batch: list[Message] = []
        async for tp, message in self.getmany(timeout=FETCH_TIMEOUT_S):
            last = last_seen[tp] if tp in last_seen else read_offset[tp]
            if last is not None and message.offset < last:
                continue
            if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                gaps.append((tp, last + 1, message.offset))
            last_seen[tp] = message.offset
            batch.append(message)
        for message in batch:
            self.track_message(message)
        for tp, first, last in gaps:
            await self._add_gap(tp, first, last)
        return batch

    async def _ack_batch(self, batch: Sequence[Message]) -> None:
        """Ack a finished batch so Faust's commit task may commit it."""
        read_offset = self._read_offset
        for message in batch:
            self.ack(message)
            read_offset[message.tp] = message.offset
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    @staticmethod
    def _withhold(batch: Sequence[Message]) -> None:
        """Flag the batch done on the messages alone: Faust's acked offsets (what it commits)
        never see it, and ``wait_empty`` stops waiting for it."""
        for message in batch:
            message.acked = True


def _abandon(done: Awaitable[None] | None) -> None:
    """Cancel a batch's completion that nobody will wait for (its batch is withheld), and
    retrieve its outcome so that it is not reported as never retrieved."""
    if done is None:
        return
    task = asyncio.ensure_future(done)
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _abandon_fetch(fetch: asyncio.Future[list[Message]], withhold: Callable[[Sequence[Message]], None]) -> None:
    """Give up a fetch nobody will deliver (its loop is stopping): cancel it, and withhold
    whatever it tracked all the same, so that a stop does not wait for it."""
    if not fetch.done():
        fetch.cancel()
    fetch.add_done_callback(lambda f: None if f.cancelled() or f.exception() else withhold(f.result()))


class BatchDeliveryApp(faust.App):
    """A Faust app whose subscribed topics are delivered to ``batch_handler`` in batches."""

    batch_handler: BatchHandler | None = None
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS

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
