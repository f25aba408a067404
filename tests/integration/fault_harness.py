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
own topic) ride along, and where one lands among its patient's observations matters: the
shipped model reads the admission's age, sex and time, and what is applied after a discharge
starts a new stay. So a stream with ``PacedStream.safe`` never lets a patient's events cross
from one topic to the other before the events sent before them are safe in Redis: each
patient's events are applied in list order, as the reference applies them.

The worker's state may live elsewhere than the reference's: a Sentinel set or a Redis Cluster
(``RedisTarget``: a URL, or the Settings of such a topology, read through worker.state.connect
as the worker reads it). ``committed_but_missing`` is the durability check of a Redis
failover: every event whose offset Kafka has committed must be in its patient's stored state,
or no restart will ever apply it again.
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

from kafka.admin import KafkaAdminClient

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.datasets.simulator import SimEvent, interleave, simulate_cohort
from schemas.decode import decode
from worker.operations.config import Settings
from worker.scoring.alert_policy import AlertPolicy
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.codec import PatientState, id_hashes, unpack
from worker.state.connect import connect
from worker.state.store import RedisStateStore

#: Scores of a resumed patient equal the uninterrupted ones to float32 rounding of a batched step.
TOLERANCE = 1e-5

Coordinates = tuple[str, int, int]  # topic, partition, offset
#: Where a worker keeps its state: a Redis URL, or the settings of a Sentinel set or a cluster.
RedisTarget = str | Settings


def vitals_events(count: int, *, seed: int, patients_per_100: int = 7) -> list[SimEvent]:
    """The first ``count`` vitals events, in time order, of a simulated ward big enough to
    supply them (about 19 vitals per patient, fewer for some)."""
    return _ward(count, seed, patients_per_100, with_encounters=False)


def ward_events(count: int, *, seed: int, patients_per_100: int = 7) -> list[SimEvent]:
    """The first ``count`` vitals and encounters, in time order, of a simulated ward: each
    stay's admission, its vitals, and the discharge (home, another facility, died) or ICU
    transfer that ends it. Send it with ``PacedStream(safe=persisted_in(...))`` (see the
    module notes on discharges)."""
    return _ward(count, seed, patients_per_100, with_encounters=True)


def _ward(count: int, seed: int, patients_per_100: int, *, with_encounters: bool) -> list[SimEvent]:
    patients = max(2, count * patients_per_100 // 100)
    cohort = simulate_cohort(patients, seed=seed, deteriorating_fraction=0.3)
    feed = interleave(cohort, with_encounters=with_encounters)
    events = [event for _, event in feed if event.topic in ("vitals", "encounters")]
    assert len(events) >= count, f"{patients} patients gave only {len(events)} events"
    return events[:count]


#: Which patients' state in Redis covers their latest event sent (patient -> its coordinates).
SafeCheck = Callable[[Mapping[str, "Coordinates"]], set[str]]


def persisted_in(redis_url: RedisTarget, prefix: str) -> SafeCheck:
    """A ``SafeCheck`` reading the worker's state under ``prefix``: a patient is safe once its
    watermark reaches the coordinates given for it."""

    def safe(latest: Mapping[str, Coordinates]) -> set[str]:
        states = stored_states(redis_url, prefix, sorted(latest))
        return {
            patient for patient, (topic, partition, offset) in latest.items()
            if patient in states and states[patient].watermark.get((topic, partition), -1) >= offset
        }

    return safe


@dataclass
class PacedStream:
    """Produces events at a steady rate from a thread, like a ward's monitors, and records the
    coordinates the broker gave each one.

    ``allowed`` caps how many events it may have sent so far (all by default). A test that must
    inject its fault mid-stream holds the rest back and ``allow``s it after the fault: the fault
    then lands mid-stream however slowly this machine starts a worker or joins a group, instead
    of racing a fixed-rate stream to its end.

    With ``safe``, an event on another topic than its patient's previous one (an admission's
    first observation, a late admission, a transfer, a discharge) is held back with whatever of
    that patient follows it (the rest of the stream goes on) until ``safe`` says the patient's
    events sent so far are in Redis: Kafka keeps no order between topics, so only then is the
    worker certain to apply the patient's events in list order, as the reference does (see the
    module notes)."""

    producer: KafkaProducer
    topics: Mapping[str, str]  # SimEvent.topic (vitals, labs, encounters) -> the Kafka topic it goes to
    events: Sequence[SimEvent]
    per_second: float
    allowed: int = sys.maxsize
    safe: SafeCheck | None = None
    sent: int = 0  # events of ``events`` sent or held
    coordinates: dict[str, Coordinates] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _futures: list[tuple[str, Any]] = field(default_factory=list)
    _held: dict[str, list[SimEvent]] = field(default_factory=dict)  # patient -> its events waiting for ``safe``, in order
    _topic: dict[str, str] = field(default_factory=dict)  # patient -> the topic of its last event sent
    _latest: dict[str, Coordinates] = field(default_factory=dict)  # patient -> its last event sent
    _unacked: list[tuple[str, Any]] = field(default_factory=list)  # events sent since the last flush

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
        while self.sent < len(self.events) or self._held:
            self._send_safe()
            end = min(self.sent + chunk, self.allowed, len(self.events))
            if end <= self.sent:
                time.sleep(0.02)
                paced_from, paced_count = time.monotonic(), self.sent
                continue
            for event in self.events[self.sent : end]:
                patient = event.payload["patient_id"]
                if patient in self._held or (self.safe is not None and self._topic.get(patient, event.topic) != event.topic):
                    self._held.setdefault(patient, []).append(event)
                else:
                    self._send(event)
            self._flush()
            self.sent = end
            lag = paced_from + (self.sent - paced_count) / self.per_second - time.monotonic()
            if lag > 0:
                time.sleep(lag)

    def _send(self, event: SimEvent) -> None:
        payload = event.payload
        future = self.producer.send(self.topics[event.topic], key=payload["patient_id"].encode(), value=orjson.dumps(payload))
        self._futures.append((payload["event_id"], future))
        self._unacked.append((payload["patient_id"], future))
        self._topic[payload["patient_id"]] = event.topic

    def _flush(self) -> None:
        """Wait for the broker's acks; note each patient's latest event."""
        self.producer.flush()
        for patient, future in self._unacked:
            meta = future.get(timeout=30)
            self._latest[patient] = (meta.topic, meta.partition, meta.offset)
        self._unacked.clear()

    def _send_safe(self) -> None:
        """For each held patient whose events sent so far are in Redis: send its held events up
        to the next change of topic (what follows waits for those in turn)."""
        if not self._held or self.safe is None:
            return
        safe = self.safe({p: self._latest[p] for p in self._held if p in self._latest})
        released = False
        for patient in [p for p in self._held if p in safe]:
            queue = self._held[patient]
            run = next((i for i, e in enumerate(queue) if e.topic != queue[0].topic), len(queue))
            for event in queue[:run]:
                self._send(event)
            released = True
            if run < len(queue):
                self._held[patient] = queue[run:]
            else:
                del self._held[patient]
        if released:
            self._flush()

    def latest_sent(self) -> dict[str, Coordinates]:
        """Each patient's latest event sent and acknowledged so far."""
        return dict(self._latest)

    def acknowledged(self) -> dict[str, Coordinates]:
        """event_id -> coordinates of every event sent so far (waiting for the broker's acks)."""
        return {event_id: _coordinates(future) for event_id, future in list(self._futures)}

    def join(self, timeout_s: float) -> dict[str, Coordinates]:
        """Wait for the last event to be acknowledged; return event_id -> coordinates (of its
        first copy, should an event be sent twice)."""
        assert self._thread is not None
        self._thread.join(timeout=timeout_s)
        assert not self._thread.is_alive(), f"producer still running after {timeout_s} s ({self.sent} sent)"
        for event_id, future in self._futures:
            self.coordinates.setdefault(event_id, _coordinates(future))
        return self.coordinates


def _coordinates(future: Any) -> Coordinates:
    meta = future.get(timeout=30)
    return meta.topic, meta.partition, meta.offset


def produce_now(producer: KafkaProducer, topics: Mapping[str, str], events: Sequence[SimEvent]) -> dict[str, Coordinates]:
    """Produce every event as fast as the client can; return event_id -> coordinates."""
    stream = PacedStream(producer, topics, events, per_second=1e9).start()
    return stream.join(120)


@dataclass
class Reference:
    """The uninterrupted run: score per event_id, alert ids, and final state per patient, the
    recent-ids hashes of its encounters (to tell them from observations in a ring), and the
    label and resolution of every score it labelled, by event_id."""

    risks: dict[str, float]
    alerts: set[str]
    states: dict[str, PatientState]
    encounter_ids: frozenset[int] = frozenset()
    labels: dict[str, tuple[bool, str]] = field(default_factory=dict)


def reference_run(
    events: Sequence[SimEvent], coordinates: dict[str, Coordinates], redis_url: str, prefix: str,
    checkpoint: Path = DEFAULT_CHECKPOINT,
) -> Reference:
    """Score ``events`` (observations and encounters) in one engine on ``checkpoint``, in
    production order, with the broker's coordinates."""
    return asyncio.run(_reference(events, coordinates, redis_url, prefix, checkpoint))


async def _reference(
    events: Sequence[SimEvent], coordinates: dict[str, Coordinates], redis_url: str, prefix: str, checkpoint: Path
) -> Reference:
    model = _model(checkpoint)
    store = RedisStateStore(redis_url, prefix=prefix, ttl_s=3600)
    engine = RiskEngine(model, store, capacity=100_000, policy=AlertPolicy.from_manifest(model.manifest), device="cpu")
    risks: dict[str, float] = {}
    alerts: set[str] = set()
    labels: dict[str, tuple[bool, str]] = {}
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
            labels.update((s.score.event_id, (s.label, s.resolution)) for s in outcome.labelling.scores)
        patients = sorted({e.payload["patient_id"] for e in events})
        states = await _load_states(store, patients, engine.model_version, model)
    finally:
        await store.close()
    encounters = [e.payload["event_id"] for e in events if e.topic == "encounters"]
    return Reference(risks, alerts, states, frozenset(id_hashes(encounters).tolist()), labels)


async def _load_states(store: RedisStateStore, patients: list[str], version: str, model: Any) -> dict[str, PatientState]:
    stored = await store.load_many(patients)
    shape = dict(num_layers=model.model.num_layers, hidden_size=model.model.hidden_size)
    return {p: unpack(raw, model_version=version, **shape) for p, raw in stored.items()}


@functools.cache
def _model(checkpoint: Path = DEFAULT_CHECKPOINT) -> Any:
    return load_checkpoint(checkpoint, "cpu")


def stored_states(
    redis: RedisTarget, prefix: str, patients: list[str], checkpoint: Path = DEFAULT_CHECKPOINT
) -> dict[str, PatientState]:
    """The worker's persisted state of each patient, unpacked for ``checkpoint``'s model, read
    from ``redis`` as the worker reads it (through its Sentinel set or cluster, when that is
    what it uses)."""

    async def load() -> dict[str, PatientState]:
        connection = None if isinstance(redis, str) else connect(redis)
        store = RedisStateStore(redis if connection is None else connection.client, prefix=prefix, ttl_s=3600)
        try:
            model = _model(checkpoint)
            return await _load_states(store, patients, str(model.manifest["version"]), model)
        finally:
            await store.close()
            if connection is not None:
                await connection.close()

    return asyncio.run(load())


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset (the next to read) of each partition of ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def committed_but_missing(
    events: Sequence[SimEvent], coordinates: Mapping[str, Coordinates], committed: Mapping[int, int],
    states: Mapping[str, PatientState],
) -> list[str]:
    """The events Kafka will never redeliver (below the committed offset) that their
    patient's stored state does not include (its watermark is below them): lost for good."""
    missing = []
    for event in events:
        event_id = event.payload["event_id"]
        if event_id not in coordinates:
            continue
        topic, partition, offset = coordinates[event_id]
        if offset >= committed.get(partition, 0):
            continue
        state = states.get(event.payload["patient_id"])
        if state is None or state.watermark.get((topic, partition), -1) < offset:
            missing.append(event_id)
    return missing


def rings_agree(got: np.ndarray, want: np.ndarray, encounter_ids: frozenset[int]) -> bool:
    """Whether two recent-id rings (oldest first, 0 empty) hold the newest ids of the same
    observations and the same encounters, each kind in its own order, as any interleaving of
    the two topics gives: per kind, one ring's ids are the newest of the other's."""
    if np.count_nonzero(got) != np.count_nonzero(want):
        return False
    kinds = []
    for ring in (got, want):
        ids = [i for i in ring.tolist() if i != 0]
        kinds.append(([i for i in ids if i not in encounter_ids], [i for i in ids if i in encounter_ids]))
    return all(_newest_of(a, b) for a, b in zip(*kinds))


def _newest_of(a: list[int], b: list[int]) -> bool:
    shorter, longer = sorted((a, b), key=len)
    return not shorter or longer[-len(shorter):] == shorter


def state_differences(actual: dict[str, PatientState], reference: Reference) -> list[str]:
    """Every way the worker's final states differ from the reference's (empty when equal)."""
    expected = reference.states
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
        if not rings_agree(got.recent_ids, want.recent_ids, reference.encounter_ids):
            problems.append(f"{patient}: recent event ids differ")
        for name in ("prev_time", "cleared_ts", "age", "admitted_ts"):
            a, b = getattr(got, name), getattr(want, name)
            if not (a == b or (np.isnan(a) and np.isnan(b))):
                problems.append(f"{patient}: {name} {a} != {b}")
        for name in ("sex", "unit", "discharged"):
            if getattr(got, name) != getattr(want, name):
                problems.append(f"{patient}: {name} {getattr(got, name)} != {getattr(want, name)}")
    return problems


def wait_for_states(
    redis_url: RedisTarget, prefix: str, expected: Reference, timeout_s: float = 15.0,
    checkpoint: Path = DEFAULT_CHECKPOINT,
) -> list[str]:
    """Poll until the stored states equal the reference (the last batch's write-behind lands
    after its outputs), returning the remaining differences at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = state_differences(stored_states(redis_url, prefix, sorted(expected.states), checkpoint), expected)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, alive: Sequence[Any]) -> None:
    """Poll ``condition`` until it holds; fail naming ``what``, with the workers' log tails, at
    ``timeout_s`` or as soon as one of ``alive`` has died (a dead worker never makes it true)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s\n" + "\n".join(w.log_tail() for w in alive)
        for worker in alive:
            worker.assert_alive()
        time.sleep(0.2)


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
