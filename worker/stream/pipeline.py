"""One micro-batch, start to finish: decode -> score -> publish and await acks -> persist.

Batch delivery (worker.stream.batch_delivery) hands every fetched batch to BatchPipeline.process
and acks the batch (lets Faust commit its offsets) only when process returns, so process must
return only once the batch is safe: its outputs acknowledged by the broker and its state
written to Redis. It therefore never raises. A broken dependency is retried here with a
bounded, growing sleep (the consumer simply stops advancing, which Prometheus shows as lag),
and a failed publish discards the engine's unpersisted state first, so the retry re-scores
from Redis instead of skipping events the engine had already folded in.

A shadow model (ShadowModel: a second engine, its own slab and Redis prefix) scores the same
events beside the live one: its risk scores go out in the same publish as the batch, both
engines persist before the batch is acked, and a failure discards both engines' unpersisted
state, so the shadow follows the live model's guarantees exactly. It never alerts.

Bad input never blocks good input: a message that fails its contract goes to dead-letters in
the same publish as the batch's scores. A message the engine itself cannot score (a bug, not
an outage) is isolated by re-running the batch one message at a time and dead-lettered alone.

A batch can also be scored ahead (``score_ahead``: decoded, scored and its state sealed while
the batch before it still awaits the broker and Redis) and then published and persisted
(``publish_ahead``); worker.stream.overlap orders the two phases across batches and falls back
to ``settle`` whenever a batch scored ahead is no longer valid.

This module knows nothing of Faust: it sees RawMessages and a Publisher, so it can be tested
with fakes and reused by a different consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence, cast

import redis.exceptions
from prometheus_client import Histogram

from schemas.decode import Decoded, decode
from schemas.encounter import Encounter
from schemas.errors import ContractError, FieldError
from schemas.observation import Observation
from worker.stream import outputs
from worker.stream.messages import OutRecord, RawMessage
from worker.scoring.engine import BatchOutcome, InputEvent, Sealed
from worker.operations import live_accuracy
from worker.operations.logs import Pseudonymiser
from worker.operations.metrics import Metrics, observe_many

log = logging.getLogger(__name__)

#: Consecutive failures of the engine on one batch, not explained by an outage, before the
#: batch is split to find the message that causes them.
ENGINE_ATTEMPTS = 3


class Publisher(Protocol):
    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Send every record; return only when the broker acknowledged all of them (acks=all)."""


class Engine(Protocol):
    """The part of worker.scoring.engine.RiskEngine the pipeline drives."""

    model_version: str
    role: str  # "live", or "shadow" for a model scored beside it
    horizon_h: float

    @property
    def resident(self) -> int: ...

    async def score(self, events: Sequence[InputEvent]) -> BatchOutcome: ...

    async def persist(self, sealed: Sealed | None = None) -> int: ...

    def seal(self) -> Sealed: ...

    def discard_unpersisted(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    risk_scores: str
    alerts: str
    dead_letters: str
    scored_outcomes: str = "scored-outcomes"


@dataclass(frozen=True, slots=True)
class ShadowModel:
    """A second engine driven by the same pipeline: it scores every event the live engine
    scores, with state of its own, and publishes its risks to ``risk_scores`` — never alerts,
    which stay the live model's alone."""

    engine: Engine
    risk_scores: str


class Stopping(Exception):
    """The worker is shutting down while a batch is not yet safe: the caller must not ack it."""


class Backoff:
    """Sleeps 0.1 s, 0.2 s, 0.4 s ... capped at a few seconds: quick recovery from a blip,
    without hammering a dependency that is down for minutes.

    A shutdown must not wait for an outage to end (Faust's stop waits for in-flight batches),
    so the sleep checks ``should_stop`` in short slices and raises Stopping."""

    def __init__(
        self,
        first_s: float = 0.1,
        cap_s: float = 5.0,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.should_stop = should_stop
        self._sleep = sleep

    def delay(self, attempt: int) -> float:
        return min(self.cap_s, self.first_s * (2 ** min(attempt, 16)))

    async def wait(self, attempt: int) -> None:
        remaining = self.delay(attempt)
        while True:
            if self.should_stop():
                raise Stopping()
            if remaining <= 0:
                return
            step = min(0.25, remaining)
            await self._sleep(step)
            remaining -= step


class _EngineFault(Exception):
    """The engine failed ENGINE_ATTEMPTS times on a batch with every dependency reachable."""


def is_outage(exc: BaseException) -> bool:
    """True for failures of a dependency (worth waiting out), False for errors in the data or code."""
    return isinstance(exc, (redis.exceptions.RedisError, OSError, TimeoutError, asyncio.TimeoutError))


@dataclass(slots=True)
class _Decoded:
    message: RawMessage
    events: list[InputEvent]


@dataclass(slots=True)
class _Scored:
    outcome: BatchOutcome
    shadowed: BatchOutcome | None
    records: list[OutRecord]
    sealed: list[Sealed]  # one per engine, live first


@dataclass(slots=True)
class ScoredAhead:
    """A batch decoded and, unless scoring failed (``scored`` None), scored with its state
    sealed: nothing of it is published or persisted yet."""

    decoded: list[_Decoded]
    rejected: list[OutRecord]
    scored: _Scored | None


class BatchPipeline:
    """Turns a batch of raw Kafka records into published outputs and persisted state."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        *,
        input_kinds: Mapping[str, str],
        topics: OutputTopics,
        metrics: Metrics,
        worker_name: str,
        max_message_bytes: int,
        pseudonym: Pseudonymiser,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        shadow: ShadowModel | None = None,
    ) -> None:
        self.engine = engine
        self.shadow = shadow
        self.publisher = publisher
        self.input_kinds = dict(input_kinds)
        self.topics = topics
        self.metrics = metrics
        self.worker_name = worker_name
        self.max_message_bytes = max_message_bytes
        self.pseudonym = pseudonym
        self.backoff = backoff or Backoff()
        self.clock = clock

    async def process(self, batch: Sequence[RawMessage]) -> None:
        """Make the batch safe to commit. Returns only when it is; raises only Stopping (or
        cancellation), which the caller must treat as "not safe": do not ack the batch."""
        if not batch:
            return
        self.metrics.batch_size.observe(len(batch))
        decoded, rejected = self._decode(batch)
        await self._settle(decoded, rejected)

    async def score_ahead(self, batch: Sequence[RawMessage]) -> ScoredAhead:
        """Decode and score ``batch`` on the engine's state as it is (the batches before it
        scored, maybe not yet safe) and seal its state; publish nothing. A failure leaves
        ``scored`` None: ``settle`` then handles the batch, retries and isolation included,
        once every batch before it is safe and the engine's unpersisted state discarded."""
        self.metrics.batch_size.observe(len(batch))
        decoded, rejected = self._decode(batch)
        try:
            outcome, shadowed, records = await self._score_all([e for item in decoded for e in item.events], rejected)
        except Exception as exc:  # noqa: BLE001 - settled again, with its retries, once the batches before it are safe
            log.warning("scoring ahead failed; the batch is settled on its own", extra={"error": type(exc).__name__})
            return ScoredAhead(decoded, rejected, None)
        return ScoredAhead(decoded, rejected, _Scored(outcome, shadowed, records, [e.seal() for e in self.engines]))

    async def publish_ahead(self, ahead: ScoredAhead) -> bool:
        """Publish a batch scored ahead (one attempt), then persist its sealed state (retried
        until written) and account for it. False when it has no score or the publish failed:
        nothing of it is persisted, and the caller must discard and ``settle`` it. Raises only
        Stopping (or cancellation)."""
        scored = ahead.scored
        if scored is None:
            return False
        started = time.perf_counter()
        try:
            await self.publisher.publish(scored.records)
        except Exception as exc:  # noqa: BLE001 - the caller settles the batch again
            self._retrying("publish", 0, exc)
            return False
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        await self._persisted(scored.outcome, scored.shadowed, scored.sealed)
        return True

    async def settle(self, ahead: ScoredAhead) -> None:
        """Make a batch whose scoring ahead failed or went stale safe, from the engine's state
        as persisted (the caller discards the rest first); as ``process`` after its decode."""
        await self._settle(ahead.decoded, ahead.rejected)

    def discard_unpersisted(self) -> None:
        """Forget every change of the engines not yet persisted, sealed or not."""
        for engine in self.engines:
            engine.discard_unpersisted()

    # -- decode ---------------------------------------------------------------------------

    def _decode(self, batch: Sequence[RawMessage]) -> tuple[list[_Decoded], list[OutRecord]]:
        now = self.clock()
        decoded: list[_Decoded] = []
        rejected: list[OutRecord] = []
        for message in batch:
            kind = self.input_kinds[message.topic]
            try:
                items = decode(kind, message.value or b"", max_bytes=self.max_message_bytes, now=now)
                self._check_key(message, items)
            except ContractError as exc:
                rejected.append(self._dead_letter(message, exc.to_list(), "decode"))
                continue
            events = [InputEvent(i, message.topic, message.partition, message.offset, message.timestamp) for i in items]
            decoded.append(_Decoded(message, events))
        return decoded, rejected

    @staticmethod
    def _check_key(message: RawMessage, items: Sequence[Decoded]) -> None:
        """The Kafka key must be the patient id: it decides the partition, and one partition
        (so one worker) must own all of a patient's events — observations, encounters and
        outcomes alike — or their states would diverge."""
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        for item in items:
            if item.patient_id != key:
                raise ContractError([FieldError("key", "must equal patient_id (it decides the partition)", key)])

    def _dead_letter(self, message: RawMessage, errors: list[dict[str, Any]], stage: str) -> OutRecord:
        self.metrics.events.labels(topic=message.topic, outcome="invalid").inc()
        # Only the count: a problem's wording and even a field path can quote the payload (an
        # unknown lab code or unit, a misspelt field name, conflicting values). The reasons
        # are on the dead-letter record, found by topic, partition and offset.
        log.info(
            "dead-lettered",
            extra={
                "topic": message.topic, "partition": message.partition, "offset": message.offset, "stage": stage,
                "problems": len(errors),
            },
        )
        record = outputs.dead_letter(
            message, errors, stage=stage, received_at=self._now(), worker=self.worker_name
        )
        return OutRecord(self.topics.dead_letters, message.key, outputs.encode(record))

    # -- score, publish, persist ------------------------------------------------------------

    async def _settle(self, decoded: list[_Decoded], rejected: list[OutRecord]) -> None:
        try:
            outcome, shadowed = await self._score_and_publish(decoded, rejected)
        except _EngineFault as fault:
            await self._isolate(decoded, rejected, fault)
            return
        await self._persisted(outcome, shadowed)

    async def _persisted(
        self, outcome: BatchOutcome, shadowed: BatchOutcome | None, sealed: Sequence[Sealed] | None = None
    ) -> None:
        """Persist a published batch's state (``sealed``, or every change so far), then account for it."""
        await self._persist(sealed)
        self._account(outcome)
        if shadowed is not None and self.shadow is not None:
            live_accuracy.account(
                self.metrics, shadowed.labelling, model_version=self.shadow.engine.model_version, role=self.shadow.engine.role,
            )

    async def _isolate(self, decoded: list[_Decoded], rejected: list[OutRecord], fault: _EngineFault) -> None:
        """Settle the batch one message at a time, dead-lettering the ones the engine fails on."""
        if len(decoded) == 1:
            cause = fault.__cause__
            problem = f"scoring failed: {type(cause).__name__}"
            log.error("engine failed on one message", extra={
                "topic": decoded[0].message.topic, "partition": decoded[0].message.partition,
                "offset": decoded[0].message.offset, "error": type(cause).__name__,
            })
            rejected = [*rejected, self._dead_letter(decoded[0].message, [{"field": "$", "problem": problem, "value": None}], "score")]
            await self._score_and_publish([], rejected)
            return
        log.warning("engine failed on a batch; settling it message by message", extra={"messages": len(decoded)})
        if rejected:
            await self._score_and_publish([], rejected)
        for item in decoded:
            await self._settle([item], [])

    @property
    def engines(self) -> list[Engine]:
        """The live engine, then the shadow's if there is one: what is persisted and discarded together."""
        return [self.engine] if self.shadow is None else [self.engine, self.shadow.engine]

    async def _score_and_publish(
        self, decoded: list[_Decoded], rejected: list[OutRecord]
    ) -> tuple[BatchOutcome, BatchOutcome | None]:
        """Score with the live engine (and the shadow's) and publish; the two outcomes once
        the broker acknowledged every record."""
        events = [e for item in decoded for e in item.events]
        attempt = 0
        faults = 0
        while True:
            stage = "score"
            try:
                outcome, shadowed, records = await self._score_all(events, rejected)
                stage = "publish"
                started = time.perf_counter()
                await self.publisher.publish(records)
                self.metrics.publish_seconds.observe(time.perf_counter() - started)
                return outcome, shadowed
            except Exception as exc:  # noqa: BLE001 - every failure is retried or isolated, never raised
                self.discard_unpersisted()
                if stage == "score" and not is_outage(exc):
                    faults += 1
                    if faults >= ENGINE_ATTEMPTS:
                        raise _EngineFault() from exc
                self._retrying(stage, attempt, exc)
                await self.backoff.wait(attempt)
                attempt += 1

    async def _score_all(
        self, events: list[InputEvent], rejected: list[OutRecord]
    ) -> tuple[BatchOutcome, BatchOutcome | None, list[OutRecord]]:
        """``events`` scored by the live engine and the shadow's, and every record to publish."""
        outcome = await self._score(events)
        records = rejected + self._records(outcome, self.engine, self.topics.risk_scores, self.topics.alerts)
        shadowed = None
        if self.shadow is not None:
            shadowed = await self._score(events, self.shadow.engine, self.metrics.shadow_inference_seconds)
            # Its level changes alert nobody: no alerts topic.
            records += self._records(shadowed, self.shadow.engine, self.shadow.risk_scores, None)
        return outcome, shadowed, records

    async def _score(
        self, events: list[InputEvent], engine: Engine | None = None, timer: Histogram | None = None
    ) -> BatchOutcome:
        """``events`` scored by ``engine`` (the live one unless given), timed into ``timer``."""
        if not events:
            return BatchOutcome(scored=[], duplicates=[])
        started = time.perf_counter()
        outcome = await (engine or self.engine).score(events)
        (timer or self.metrics.inference_seconds).observe(time.perf_counter() - started)
        return outcome

    async def _persist(self, sealed: Sequence[Sealed] | None = None) -> None:
        """Write each engine's state: ``sealed`` (one per engine, of a batch scored ahead), or
        every change so far."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                # One round trip per engine; on a retry the engine already written has nothing left to write.
                for engine, upto in zip(self.engines, sealed or [None] * len(self.engines)):
                    await engine.persist(upto)
                self.metrics.redis_seconds.labels(operation="persist").observe(time.perf_counter() - started)
                return
            except Exception as exc:  # noqa: BLE001 - the batch is not safe until its state is in Redis
                self.metrics.redis_errors.labels(operation="persist").inc()
                self._retrying("persist", attempt, exc)
                await self.backoff.wait(attempt)
                attempt += 1

    def _retrying(self, stage: str, attempt: int, exc: Exception) -> None:
        self.metrics.batch_retries.labels(stage=stage).inc()
        if stage == "score" and isinstance(exc, redis.exceptions.RedisError):
            self.metrics.redis_errors.labels(operation="load").inc()
        log.warning(
            "batch step failed; retrying",
            extra={"stage": stage, "attempt": attempt + 1, "retry_in_s": self.backoff.delay(attempt),
                   "error": type(exc).__name__, "detail": str(exc)[:200]},
        )

    # -- outputs and accounting ---------------------------------------------------------------

    def _records(self, outcome: BatchOutcome, engine: Engine, risk_scores: str, alerts: str | None) -> list[OutRecord]:
        """``engine``'s risk scores on ``risk_scores`` under its model version, and its level
        changes on ``alerts`` (None: never alerts, the shadow); the scores it labelled on
        scored-outcomes under its role."""
        now = self._now()
        version = engine.model_version
        records: list[OutRecord] = []
        for scored in outcome.scored:
            key = scored.event.patient_id.encode("utf-8")
            records.append(OutRecord(
                risk_scores, key,
                outputs.encode(outputs.risk_score(scored, model_version=version, scored_at=now)),
            ))
            if alerts is not None and scored.alert is not None:
                records.append(OutRecord(
                    alerts, key,
                    outputs.encode(outputs.alert(scored, model_version=version, raised_at=now)),
                ))
        role, horizon_h = engine.role, engine.horizon_h
        for labelled in outcome.labelling.scores:
            records.append(OutRecord(
                self.topics.scored_outcomes, labelled.patient_id.encode("utf-8"),
                outputs.encode(outputs.scored_outcome(labelled, role=role, horizon_h=horizon_h, labelled_at=now)),
            ))
        return records

    def _account(self, outcome: BatchOutcome) -> None:
        """Metrics and alert logs, once the batch is safe (a retried batch counts once).

        Counters are incremented once per (topic, outcome) per batch, not per event: a labelled
        child lookup per event cost more than the histogram observation beside it."""
        m = self.metrics
        acked = self.clock()
        for topic, count in Counter(s.event.topic for s in outcome.scored).items():
            m.events.labels(topic=topic, outcome="scored").inc(count)
        for topic, count in Counter(e.topic for e in outcome.duplicates).items():
            m.events.labels(topic=topic, outcome="duplicate").inc(count)
        self._account_encounters(outcome.encounters)
        for topic, count in Counter(e.topic for e in outcome.outcomes).items():
            m.events.labels(topic=topic, outcome="applied").inc(count)
        live_accuracy.account(m, outcome.labelling, model_version=self.engine.model_version, role=self.engine.role)
        observe_many(m.end_to_end_seconds, [
            max(0.0, acked - s.event.kafka_ts) for s in outcome.scored if s.event.kafka_ts is not None
        ])
        for scored in outcome.scored:
            if scored.alert is not None:
                m.alerts.labels(level=scored.alert.level).inc()
                log.info("alert", extra={
                    "patient": self.pseudonym(scored.event.patient_id),
                    "alert_id": scored.alert.alert_id, "alert_level": scored.alert.level,
                    "previous_level": scored.alert.previous_level,
                })
        m.resident_patients.set(self.engine.resident)

    def _account_encounters(self, applied: Sequence[InputEvent]) -> None:
        """Applied encounters by topic, and admissions, transfers and discharges by unit kind
        or disposition (never by patient)."""
        m = self.metrics
        for topic, count in Counter(e.topic for e in applied).items():
            m.events.labels(topic=topic, outcome="applied").inc(count)
        encounters = [cast(Encounter, e.item) for e in applied]
        for (kind, label), count in Counter(_encounter_label(e) for e in encounters).items():
            if kind == "admission":
                m.admissions.labels(unit=label).inc(count)
            elif kind == "transfer":
                m.transfers.labels(unit=label).inc(count)
            else:
                m.discharges.labels(disposition=label).inc(count)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)


def _encounter_label(encounter: Encounter) -> tuple[str, str]:
    """(kind, its metric label): the unit kind of an admission or transfer, the disposition of
    a discharge; "unknown" where the feed did not say."""
    label = encounter.disposition if encounter.kind == "discharge" else encounter.unit
    return encounter.kind, label or "unknown"
