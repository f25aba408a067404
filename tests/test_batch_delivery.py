"""Batch delivery's bookkeeping (worker.stream.batch_delivery): what Faust may commit depends on it.

The consumer's own methods run against a stand-in for Faust's consumer state (read offsets,
acked offsets, tracked messages), so each rule is checked without a broker; the integration
tests run the same code inside the real worker against Tansu and Redis."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import pytest
from faust.types import TP

from worker.stream.batch_delivery import BatchDeliveryConsumer, BatchWithheld


@dataclass(eq=False)
class Msg:
    topic: str
    partition: int
    offset: int
    acked: bool = False

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


@dataclass
class App:
    batch_handler: Any = None
    should_stop: bool = False
    topics: Topics = field(default_factory=Topics)


class StandIn:
    """Faust consumer state that batch delivery reads and writes, with BatchDeliveryConsumer's methods."""

    _drain_messages = BatchDeliveryConsumer._drain_messages
    _fetch_tracked = BatchDeliveryConsumer._fetch_tracked
    _ack_batch = BatchDeliveryConsumer._ack_batch
    _settle = BatchDeliveryConsumer._settle
    _fetch_beside = BatchDeliveryConsumer._fetch_beside
    _withhold = staticmethod(BatchDeliveryConsumer._withhold)
    consumer_stopped_errors: tuple[type[BaseException], ...] = ()
    _commit_every = None

    def __init__(self, fetches: Sequence[Sequence[Msg]], handler: Any, read_offset: dict[TP, int] | None = None) -> None:
        self.app = App(batch_handler=handler)
        self.fetches = list(fetches)
        self._fetches = list(fetches)
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None, read_offset or {})
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.gaps: list[tuple[TP, int, int]] = []
        self.should_stop = False
        self.log = _Log()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def getmany(self, timeout: float) -> Any:
        if not self._fetches:
            self.should_stop = True
            return
        for message in self._fetches.pop(0):
            yield message.tp, message

    def track_message(self, message: Msg) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: Msg) -> None:
        if not message.acked:
            message.acked = True
            self.acked.append(message.offset)

    async def _add_gap(self, tp: TP, first: int, last: int) -> None:
        self.gaps.append((tp, first, last))


class _Log:
    def warning(self, *args: Any) -> None:
        pass

    def exception(self, *args: Any) -> None:
        pass


class Fetcher:
    should_stop = False


def batch(*offsets: int, partition: int = 0) -> list[Msg]:
    return [Msg("vitals", partition, o) for o in offsets]


async def test_a_batch_is_acked_only_once_its_handler_returns() -> None:
    seen: list[tuple[list[int], list[int]]] = []

    async def handler(messages: Sequence[Msg]) -> None:
        seen.append(([m.offset for m in messages], list(consumer.acked)))

    consumer = StandIn([batch(0, 1, 2), batch(3, 4)], handler)
    await consumer._drain_messages(Fetcher())
    assert seen == [([0, 1, 2], []), ([3, 4], [0, 1, 2])], "nothing of a batch is acked while its handler runs"
    assert consumer.tracked == [0, 1, 2, 3, 4] and consumer.acked == [0, 1, 2, 3, 4]
    assert consumer._read_offset[TP("vitals", 0)] == 4


async def test_a_withheld_batch_is_never_acked_and_nothing_after_it_is_delivered() -> None:
    delivered: list[list[int]] = []

    async def handler(messages: Sequence[Msg]) -> None:
        delivered.append([m.offset for m in messages])
        if len(delivered) == 2:
            raise BatchWithheld()

    fetches = [batch(0, 1), batch(2, 3), batch(4, 5)]
    consumer = StandIn(fetches, handler)
    await consumer._drain_messages(Fetcher())
    assert delivered == [[0, 1], [2, 3]], "delivery stops at the withheld batch"
    assert consumer.acked == [0, 1], "Faust never sees the withheld offsets acked, so never commits them"
    assert all(m.acked for m in fetches[0]), "flagged done, so a stop or rebalance does not wait for it forever"


async def test_a_handler_that_fails_leaves_its_batch_unacked() -> None:
    async def handler(messages: Sequence[Msg]) -> None:
        raise ConnectionError("broker gone")

    consumer = StandIn([batch(0, 1)], handler)
    with pytest.raises(ConnectionError):
        await consumer._drain_messages(Fetcher())
    assert consumer.tracked == [0, 1] and consumer.acked == []


async def test_messages_already_read_are_dropped_and_offset_gaps_registered() -> None:
    delivered: list[int] = []

    async def handler(messages: Sequence[Msg]) -> None:
        delivered.extend(m.offset for m in messages)

    tp = TP("vitals", 0)
    consumer = StandIn([batch(7, 8, 9, 10, 14)], handler, read_offset={tp: 9})
    await consumer._drain_messages(Fetcher())
    assert delivered == [9, 10, 14], "offsets below the read offset (seen again after a seek) are dropped"
    assert consumer.gaps == [(tp, 11, 14)], "the gap lets Faust's commit pass offsets that never come"


def gated_handler(seen: list[tuple[list[int], list[int]]], consumer: Any, unsafe: int | None = None) -> Any:
    """A handler whose n-th batch is safe only once batch n+1 was handed over (the last one at
    once): each is in flight while the next is fetched. Batch ``unsafe`` (1-based) is withheld."""
    gates: list[asyncio.Event] = []

    async def completion(n: int) -> None:
        await gates[n - 1].wait()
        if n == unsafe:
            raise BatchWithheld()

    async def handler(messages: Sequence[Msg]) -> Any:
        seen.append(([m.offset for m in messages], list(consumer.acked)))
        if gates:
            gates[-1].set()
        gates.append(asyncio.Event())
        if len(gates) == len(consumer.fetches):
            gates[-1].set()
        return completion(len(gates))

    return handler


async def test_the_next_batch_is_handed_over_before_the_one_in_flight_is_acked_and_acks_stay_in_order() -> None:
    seen: list[tuple[list[int], list[int]]] = []
    consumer = StandIn([batch(0, 1), batch(2, 3), batch(5, 6)], None)
    consumer.app.batch_handler = gated_handler(seen, consumer)
    await consumer._drain_messages(Fetcher())
    assert seen == [([0, 1], []), ([2, 3], []), ([5, 6], [0, 1])], "batch 2 handed over with batch 1 in flight"
    assert consumer.acked == [0, 1, 2, 3, 5, 6], "in fetch order, the last one when the stream ends"
    assert consumer.gaps == [(TP("vitals", 0), 4, 5)], "the batch in flight is no gap; offset 4 is"


async def test_a_batch_in_flight_that_is_withheld_withholds_the_next_one_and_delivery_stops() -> None:
    seen: list[tuple[list[int], list[int]]] = []
    fetches = [batch(0, 1), batch(2, 3), batch(4, 5), batch(6, 7)]
    consumer = StandIn(fetches, None)
    consumer.app.batch_handler = gated_handler(seen, consumer, unsafe=2)
    await consumer._drain_messages(Fetcher())
    assert [offsets for offsets, _ in seen] == [[0, 1], [2, 3], [4, 5]], "nothing after the one behind the withheld batch"
    assert consumer.acked == [0, 1], "neither the withheld batch nor the one after it is acked"
    assert all(m.acked for f in fetches[1:3] for m in f), "both flagged done, so a stop or rebalance does not wait"


async def test_a_batch_in_flight_is_acked_while_the_next_fetch_waits_for_a_rebalance() -> None:
    """Faust's getmany waits for a rebalance to end, and the rebalance waits for every tracked
    batch to be acked: the batch in flight must be acked while the fetch waits."""

    async def safe() -> None:
        return None

    async def handler(messages: Sequence[Msg]) -> Any:
        return safe()

    consumer = StandIn([batch(0, 1), batch(2, 3)], handler)
    getmany = consumer.getmany

    async def rebalancing_getmany(timeout: float) -> Any:
        while not set(consumer.tracked) <= set(consumer.acked):  # held until nothing is in flight
            await asyncio.sleep(0.001)
        async for item in getmany(timeout):
            yield item

    consumer.getmany = rebalancing_getmany  # type: ignore[method-assign]
    await asyncio.wait_for(consumer._drain_messages(Fetcher()), timeout=5)
    assert consumer.acked == [0, 1, 2, 3]
