"""What the fault tests share: a paced stream of simulator events, the uninterrupted reference
run, and the comparisons that prove nothing was lost or applied twice.

The proof is numerical, as in test_stream_restart: an LSTM's state after a patient's events
depends on every one of them, in order. So a run that survived crashes, rebalances or outages
is correct when (a) every input event_id has a risk score, (b) every risk score equals the one
an uninterrupted pass gives (a skipped or doubled event shifts every later score), (c) the set
of alert ids equals the uninterrupted pass's (ids are deterministic, so a missing transition
or a spurious one shows), and (d) each patient's final state in Redis — LSTM state, latest
values, level, watermark, recent event ids — equals the uninterrupted pass's.

The reference pass runs the same RiskEngine in this process on the same events with the same
(topic, partition, offset) coordinates the broker assigned, so even the watermarks must match.
Observations come from the vitals topic only (see test_stream_restart: cross-topic order is
not a Kafka guarantee, so it is not a property a replay can be held to). Encounters (their
own topic) may ride along: an admission or a transfer changes no score and no model state
wherever it lands among the observations, so only the order of the recent event-id ring can
differ, and the ring is compared as the set it is used as. A discharge is different — what
is applied after it starts a new stay — so a stream sends a discharge only once its patient's
observations are safe in Redis (tests/integration/test_encounters.py).
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import orjson
from kafka import KafkaProducer

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.datasets.simulator import SimEvent, interleave, simulate_cohort
from schemas.decode import decode
from worker.scoring.alert_policy import AlertPolicy
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.codec import PatientState, unpack
from worker.state.store import RedisStateStore

#: Scores of a resumed patient equal the uninterrupted ones to float32 rounding of a batched step.
TOLERANCE = 1e-5

Coordinates = tuple[str, int, int]  # topic, partition, offset


def vitals_events(count: int, *, seed: int, patients_per_100: int = 7) -> list[SimEvent]:
    """The first ``count`` vitals events, in time order, of a simulated ward big enough to
    supply them (about 19 vitals per patient, fewer for some)."""
    patients = max(2, count * patients_per_100 // 100)
    cohort = simulate_cohort(patients, seed=seed, deteriorating_fraction=0.3)
    events = [event for _, event in interleave(cohort) if event.topic == "vitals"]
    assert len(events) >= count, f"{patients} patients gave only {len(events)} vitals events"
    return events[:count]


@dataclass
class PacedStream:
    """Produces events at a steady rate from a thread, like a ward's monitors, and records the
    coordinates the broker gave each one.

    ``allowed`` caps how many events it may have sent so far (all by default). A test that must
    inject its fault mid-stream holds the rest back and ``allow``s it after the fault: the fault
    then lands mid-stream however slowly this machine starts a worker or joins a group, instead
    of racing a fixed-rate stream to its end."""

    producer: KafkaProducer
    topics: Mapping[str, str]  # SimEvent.topic (vitals, labs, encounters) -> the Kafka topic it goes to
    events: Sequence[SimEvent]
    per_second: float
    allowed: int = sys.maxsize
    sent: int = 0
    coordinates: dict[str, Coordinates] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _futures: list[tuple[str, Any]] = field(default_factory=list)

    def start(self) -> "PacedStream":
        self._thread = threading.Thread(target=self._run, name="paced-stream", daemon=True)
        self._thread.start()
        return self

    def allow(self, count: int) -> None:
        """Let the stream send up to ``count`` events in all; it goes on at its pace."""
        self.allowed = max(self.allowed, count)

    def _run(self) -> None:
        chunk = max(1, int(self.per_second / 20))
        paced_from, paced_count = time.monotonic(), 0  # the schedule restarts after a hold
        while self.sent < len(self.events):
            end = min(self.sent + chunk, self.allowed, len(self.events))
            if end <= self.sent:
                time.sleep(0.02)
                paced_from, paced_count = time.monotonic(), self.sent
                continue
            for event in self.events[self.sent : end]:
                payload = event.payload
                future = self.producer.send(
                    self.topics[event.topic], key=payload["patient_id"].encode(), value=orjson.dumps(payload)
                )
                self._futures.append((payload["event_id"], future))
            self.producer.flush()
            self.sent = end
            lag = paced_from + (self.sent - paced_count) / self.per_second - time.monotonic()
            if lag > 0:
                time.sleep(lag)

    def join(self, timeout_s: float) -> dict[str, Coordinates]:
        """Wait for the last event to be acknowledged; return event_id -> coordinates (of its
        first copy, should an event be sent twice)."""
        assert self._thread is not None
        self._thread.join(timeout=timeout_s)
        assert not self._thread.is_alive(), f"producer still running after {timeout_s} s ({self.sent} sent)"
        for event_id, future in self._futures:
            meta = future.get(timeout=30)
            self.coordinates.setdefault(event_id, (meta.topic, meta.partition, meta.offset))
        return self.coordinates


def produce_now(producer: KafkaProducer, topics: Mapping[str, str], events: Sequence[SimEvent]) -> dict[str, Coordinates]:
    """Produce every event as fast as the client can; return event_id -> coordinates."""
    stream = PacedStream(producer, topics, events, per_second=1e9).start()
    return stream.join(120)


@dataclass
class Reference:
    """The uninterrupted run: score per event_id, alert ids, and final state per patient."""

    risks: dict[str, float]
    alerts: set[str]
    states: dict[str, PatientState]


def reference_run(events: Sequence[SimEvent], coordinates: dict[str, Coordinates], redis_url: str, prefix: str) -> Reference:
    """Score ``events`` (observations and encounters) in one engine, in production order, with
    the broker's coordinates."""
    return asyncio.run(_reference(events, coordinates, redis_url, prefix))


async def _reference(events: Sequence[SimEvent], coordinates: dict[str, Coordinates], redis_url: str, prefix: str) -> Reference:
    model = _model()
    store = RedisStateStore(redis_url, prefix=prefix, ttl_s=3600)
    engine = RiskEngine(model, store, capacity=100_000, policy=AlertPolicy.from_manifest(model.manifest), device="cpu")
    risks: dict[str, float] = {}
    alerts: set[str] = set()
    try:
        inputs = []
        for event in events:
            (item,) = decode(event.topic, orjson.dumps(event.payload))
            topic, partition, offset = coordinates[item.event_id]
            inputs.append(InputEvent(item, topic, partition, offset, None))
        for begin in range(0, len(inputs), 256):
            outcome = await engine.score(inputs[begin : begin + 256])
            await engine.persist()
            assert not outcome.duplicates
            for scored in outcome.scored:
                risks[scored.event.event_id] = scored.risk
                if scored.alert is not None:
                    alerts.add(scored.alert.alert_id)
        patients = sorted({e.payload["patient_id"] for e in events})
        states = await _load_states(store, patients, engine.model_version, model)
    finally:
        await store.close()
    return Reference(risks, alerts, states)


async def _load_states(store: RedisStateStore, patients: list[str], version: str, model: Any) -> dict[str, PatientState]:
    stored = await store.load_many(patients)
    shape = dict(num_layers=model.model.num_layers, hidden_size=model.model.hidden_size)
    return {p: unpack(raw, model_version=version, **shape) for p, raw in stored.items()}


@functools.cache
def _model() -> Any:
    return load_checkpoint(DEFAULT_CHECKPOINT, "cpu")


def stored_states(redis_url: str, prefix: str, patients: list[str]) -> dict[str, PatientState]:
    """The worker's persisted state of each patient, unpacked."""

    async def load() -> dict[str, PatientState]:
        store = RedisStateStore(redis_url, prefix=prefix, ttl_s=3600)
        try:
            return await _load_states(store, patients, str(_model().manifest["version"]), _model())
        finally:
            await store.close()

    return asyncio.run(load())


def state_differences(actual: dict[str, PatientState], expected: dict[str, PatientState]) -> list[str]:
    """Every way the worker's final states differ from the reference's (empty when equal)."""
    problems = [f"{p}: no state in Redis" for p in expected if p not in actual]
    for patient, want in expected.items():
        got = actual.get(patient)
        if got is None:
            continue
        if got.watermark != want.watermark:
            problems.append(f"{patient}: watermark {got.watermark} != {want.watermark}")
        if (got.level, got.cleared_level) != (want.level, want.cleared_level):
            problems.append(f"{patient}: level {got.level}/{got.cleared_level} != {want.level}/{want.cleared_level}")
        for name in ("h", "c", "last_value", "last_time"):
            a, b = getattr(got, name), getattr(want, name)
            if not np.allclose(a, b, atol=TOLERANCE, rtol=0, equal_nan=True):
                problems.append(f"{patient}: {name} differs by up to {np.nanmax(np.abs(a - b)):.2e}")
        if set(got.recent_ids.tolist()) != set(want.recent_ids.tolist()):  # order: see the module notes
            problems.append(f"{patient}: recent event ids differ")
        for name in ("prev_time", "cleared_ts", "age", "admitted_ts"):
            a, b = getattr(got, name), getattr(want, name)
            if not (a == b or (np.isnan(a) and np.isnan(b))):
                problems.append(f"{patient}: {name} {a} != {b}")
        for name in ("sex", "unit", "discharged"):
            if getattr(got, name) != getattr(want, name):
                problems.append(f"{patient}: {name} {getattr(got, name)} != {getattr(want, name)}")
    return problems


def wait_for_states(redis_url: str, prefix: str, expected: dict[str, PatientState], timeout_s: float = 15.0) -> list[str]:
    """Poll until the stored states equal the reference (the last batch's write-behind lands
    after its outputs), returning the remaining differences at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = state_differences(stored_states(redis_url, prefix, sorted(expected)), expected)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def score_differences(records: list[dict[str, Any]], expected: dict[str, float]) -> list[tuple[str, float, float]]:
    """Records whose risk differs from the reference's (a lost or doubled event shows here)."""
    return [
        (r["event_id"], r["risk"], expected[r["event_id"]])
        for r in records
        if r["event_id"] not in expected or abs(r["risk"] - expected[r["event_id"]]) > TOLERANCE
    ]


def all_scored(expected: Sequence[str] | set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    wanted = set(expected)
    return lambda records: wanted <= {r["event_id"] for r in records}


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample family's values whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB, from /proc (what the kernel charges it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
