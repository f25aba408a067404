"""The bench's workload: simulator events, encoded once, produced to the input topics.

The same simulator feeds the demo, training and the bench, so the bench measures the mix a
ward really sends, the one `vitalwatch simulate` publishes: mostly vitals, a few lab panels,
some partial sets, and each stay's admission and the discharge or ICU transfer that ends it.
Events are taken in time order across the cohort, as an interface engine would publish them,
and keyed by patient id so each patient stays on one partition.

An observation gets one risk score; an encounter gets no output (nothing was measured). A
contender measured on its outputs therefore waits for ``scored_count`` records, and its rate
is stated in input events per second (``input_eps``), like the consumers measured on their
inputs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import orjson

#: Cohort seed: every bench run sends the same events.
SEED = 7
#: Admissions spread over this many simulated hours; with the default cohort every patient is
#: admitted early enough to contribute a run of events to the first N.
ADMISSION_WINDOW_H = 24.0


@dataclass(frozen=True, slots=True)
class Record:
    """One input record as it goes on the wire."""

    kind: str  # "vitals" | "labs" | "encounters"
    key: bytes
    value: bytes
    event_id: str


def build_workload(n_events: int, n_patients: int) -> list[Record]:
    """The first ``n_events`` events of an ``n_patients`` cohort, in time order.

    Raises ValueError when the cohort has fewer events (each stay yields a few dozen)."""
    from models.datasets.simulator import interleave, simulate_cohort

    cohort = simulate_cohort(n_patients, seed=SEED, admission_window_hours=ADMISSION_WINDOW_H)
    records: list[Record] = []
    for _, event in interleave(cohort, with_encounters=True):
        if len(records) == n_events:
            break
        records.append(Record(
            event.topic, event.payload["patient_id"].encode(), orjson.dumps(event.payload), event.payload["event_id"],
        ))
    if len(records) < n_events:
        raise ValueError(f"{n_patients} simulated patients yield only {len(records)} events; raise --patients")
    return records


def scored_count(records: Sequence[Record]) -> int:
    """How many output records ``records`` yield: one risk score per observation (the
    simulator's events are all valid, so none is a dead letter), none per encounter."""
    return sum(record.kind != "encounters" for record in records)


def input_eps(output_eps: float, records: Sequence[Record]) -> float:
    """Input events per second of a contender that published ``output_eps`` outputs per
    second on ``records``: the encounters among them went through it too, unpublished."""
    scored = scored_count(records)
    return output_eps * len(records) / scored if scored else 0.0


def relabelled(records: Sequence[Record], count: int) -> list[Record]:
    """``count`` records cycling through ``records``, each pass with fresh event ids, so a
    longer run than the workload still has one distinct id per event."""
    out: list[Record] = []
    for i in range(count):
        base = records[i % len(records)]
        round_ = i // len(records)
        if round_ == 0:
            out.append(base)
            continue
        payload = orjson.loads(base.value)
        payload["event_id"] = f"{base.event_id}-r{round_}"
        out.append(Record(base.kind, base.key, orjson.dumps(payload), payload["event_id"]))
    return out


def new_producer(bootstrap: str) -> object:
    """An acks=all aiokafka producer that batches generously (the bench, not the worker, sends)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)


async def produce_all(bootstrap: str, topics: Mapping[str, str], records: Iterable[Record]) -> int:
    """Send every record and wait for all acknowledgements; returns how many were sent."""
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        batch = []
        sent = 0
        for record in records:
            batch.append(await producer.send(topics[record.kind], record.value, key=record.key))
            sent += 1
        for future in batch:
            await future
        return sent
    finally:
        await producer.stop()


async def produce_paced(
    bootstrap: str, topics: Mapping[str, str], records: Sequence[Record], rate_eps: float, tick_s: float = 0.005,
) -> dict[str, float]:
    """Send ``records`` at ``rate_eps`` (small bursts every ``tick_s``), each stamped with its
    send time; returns event_id -> that Kafka timestamp, POSIX seconds."""
    producer = new_producer(bootstrap)
    await producer.start()
    sent_at: dict[str, float] = {}
    pending = []
    try:
        start = time.monotonic()
        for i, record in enumerate(records):
            due = start + i / rate_eps
            delay = due - time.monotonic()
            if delay > tick_s:
                await asyncio.sleep(delay)
            stamp_ms = int(time.time() * 1000)
            pending.append(await producer.send(topics[record.kind], record.value, key=record.key, timestamp_ms=stamp_ms))
            sent_at[record.event_id] = stamp_ms / 1000
        for future in pending:
            await future
        return sent_at
    finally:
        await producer.stop()
