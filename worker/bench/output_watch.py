"""Reading what a contender published: how many records, and when the broker stamped them.

A contender's throughput is measured on its outputs, not on its own say-so: the worker's
``worker_eps`` counts risk-score (and dead-letter) records the broker acknowledged. The
records are consumed as they arrive (no JSON decode, so it costs the harness little CPU next
to the contender's): Tansu's ListOffsets answer trails what a fetch already returns, so end
offsets cannot be trusted to say when everything is there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson

#: Longest a single fetch waits for new records.
FETCH_TIMEOUT_MS = 250


@dataclass(frozen=True)
class OutputSpan:
    """Records counted on some topics and the first and last broker timestamps among them."""

    count: int
    first_ts: float
    last_ts: float

    @property
    def eps(self) -> float:
        """Records per second from the first to the last record (0 when there is no span)."""
        span = self.last_ts - self.first_ts
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


class OutputWatch:
    """A group-less aiokafka consumer over every partition of ``topics``, from the beginning.

    With ``keep_values`` the record values are kept (for ``acknowledged_at``)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], *, keep_values: bool = False) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.keep_values = keep_values
        self.count = 0
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._kept: list[tuple[bytes, int]] = []
        self._consumer: Any = None

    async def __aenter__(self) -> "OutputWatch":
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        await self._consumer.topics()  # metadata of every topic, including ones created just now
        partitions = [
            TopicPartition(topic, p) for topic in self.topics for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> int:
        """Take in whatever arrived (waiting up to FETCH_TIMEOUT_MS); returns the count so far."""
        for batch in (await self._consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)).values():
            self.count += len(batch)
            stamps = [r.timestamp for r in batch]
            self._first_ms = min(stamps) if self._first_ms is None else min(self._first_ms, *stamps)
            self._last_ms = max(stamps) if self._last_ms is None else max(self._last_ms, *stamps)
            if self.keep_values:
                self._kept.extend((r.value, r.timestamp) for r in batch)
        return self.count

    async def wait_for(self, count: int, timeout_s: float, check: Callable[[], None] = lambda: None) -> int:
        """Until ``count`` records arrived or ``timeout_s`` passed; ``check`` raises to abort
        (a contender that died). Returns the count reached."""
        deadline = time.monotonic() + timeout_s
        while await self.poll() < count and time.monotonic() < deadline:
            check()
        return self.count

    async def wait_first(self, timeout_s: float, check: Callable[[], None] = lambda: None) -> None:
        """Until the first record arrives (TimeoutError if none does within ``timeout_s``)."""
        if await self.wait_for(1, timeout_s, check) < 1:
            raise TimeoutError(f"nothing published on {self.topics} within {timeout_s:.0f} s")

    def span(self) -> OutputSpan:
        if self._first_ms is None or self._last_ms is None:
            return OutputSpan(0, 0.0, 0.0)
        return OutputSpan(self.count, self._first_ms / 1000, self._last_ms / 1000)

    def acknowledged_at(self) -> dict[str, float]:
        """event_id -> broker timestamp (POSIX s) of its record, for kept records with an event_id."""
        acked: dict[str, float] = {}
        for value, stamp_ms in self._kept:
            event_id = orjson.loads(value).get("event_id")
            if event_id is not None:
                acked[event_id] = stamp_ms / 1000
        return acked
