"""The Faust app: the input topics, delivered in fetched batches into the RiskEngine.

``faust -A worker.stream.app worker`` and ``vitalwatch worker`` run this module's ``app``. Settings
are read once, at import (worker.operations.config); a bad one stops the process with a message that
names it.

Batching uses batch delivery (worker.stream.batch_delivery), not the ``stream.take(max_batch,
within=max_wait)`` agent that DESIGN.md describes. Why: Faust's per-message stream path costs
~135 of the ~145 µs of CPU a do-nothing agent spends per message here, capping the worker near
7 k events/s before it scores anything; handing each aiokafka ``getmany`` batch (at most
``max_batch`` records) to one coroutine while Faust still tracks, acks and commits the offsets
runs the same bare consumer ~15x faster (docs/performance.md). A batch is therefore what one
fetch returns, not what a window collects: ``max_wait_ms`` becomes the longest the broker may
hold a fetch that finds nothing new (Faust hard-codes 1500 ms, and Tansu holds a fetch for the
whole wait even when records arrive, which put the worker's latency near a second at light
load).

The guarantees are those of the take_events agent it replaces. score_batch scores the batch
and hands back what completes once the batch is safe (outputs published and acknowledged, then
state in Redis), and the consumer acks the batch's offsets only then, so Faust commits nothing
unsafe; meanwhile the next batch is scored (worker.stream.overlap: pipelined batches). A Redis or
broker failure is retried with backoff while the batch stays unacked. Shutdown mid-batch
(Stopping) raises BatchWithheld: the batch (and the one after it) is never committed and is
redelivered after restart. A rebalance waits for the batches in flight, then release_revoked
flushes the revoked patients. The pipeline (model, slab, Redis client) is built when the app
starts, and a failure there stops the worker.

SIGHUP reloads the live checkpoint from VITALWATCH_CHECKPOINT (point it at a symlink and move
the link to switch): loaded and verified off the event loop, swapped in between two batches
(``OverlappedPipeline.quiet``: no batch scored ahead or unsafe), refused with the old model serving on when it does not verify.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Awaitable, Sequence

import faust
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.types import Message

from worker.stream.batch_delivery import BatchDeliveryApp, BatchWithheld
from worker.operations.config import ConfigError, Settings, load_settings, resolve_device
# kafka_credentials is re-exported: tests/test_security.py imports it from here.
from worker.stream.faust_options import faust_options, kafka_credentials  # noqa: F401
from worker.operations.health import HealthChecker
from worker.operations.logs import Pseudonymiser
from worker.operations.metrics import Metrics
from worker.stream.messages import RawMessage
from worker.stream.overlap import OverlappedPipeline
from worker.stream.pipeline import Backoff, BatchPipeline, OutputTopics, ShadowModel, Stopping
from worker.stream.publisher import BatchPublisher
from worker.state.connect import connect

log = logging.getLogger(__name__)


class _IdempotentProducer(AIOKafkaProducer):
    """Faust enables aiokafka's idempotent producer only inside transactions; this enables it
    alone, for real Kafka (KAFKA_IDEMPOTENCE). Tansu refuses InitProducerId, hence opt-in."""

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class VitalwatchApp(BatchDeliveryApp):
    """A batch-delivery Faust app whose producer can be idempotent without Faust's exactly-once
    transactions."""

    idempotent_producer: bool = False

    def _new_producer(self) -> Any:
        if self.idempotent_producer:
            return _IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)
        return super()._new_producer()


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"vitalwatch: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class Runtime:
    """The worker's long-lived objects; the pipeline is built by ``start`` once the app runs."""

    def __init__(self, app: VitalwatchApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        key = settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key else None
        self.pseudonym = Pseudonymiser(key, enabled=settings.log_pseudonymise)
        # Standalone, Sentinel or Cluster, as the settings say (worker.state.connect).
        self.redis_connection = connect(settings)
        self.redis = self.redis_connection.client
        self.engine: Any = None
        self.shadow_engine: Any = None
        self.pipeline: BatchPipeline | None = None
        self.overlapped: OverlappedPipeline | None = None
        self._started = asyncio.Event()
        self._reload: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Build the pipeline once; batches wait for it (``ready_pipeline``). SIGHUP then
        reloads the checkpoint (``reload``)."""
        try:
            self.pipeline = await self._build_pipeline()
            self.overlapped = OverlappedPipeline(self.pipeline)
            freeze_startup_heap()
            self._listen_for_reload()
        finally:
            self._started.set()

    def _listen_for_reload(self) -> None:
        """SIGHUP -> ``request_reload``; where signals cannot be caught (not the main thread,
        a platform without SIGHUP) the worker runs on and says reloading needs a restart there."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError) as exc:
            log.warning("SIGHUP cannot be caught here: a new checkpoint needs a restart", extra={"error": str(exc)})

    def request_reload(self) -> None:
        """SIGHUP: reload the live checkpoint unless a reload is already under way."""
        if self._reload is not None and not self._reload.done():
            log.warning("SIGHUP while a checkpoint reload is under way: ignored")
            return
        self._reload = asyncio.ensure_future(self.reload())

    async def reload(self) -> None:
        """Load and verify VITALWATCH_CHECKPOINT again (off the event loop), then swap it in
        between two batches. Same weights: every patient keeps its state, calibration and
        thresholds change. Other weights: resident state is dropped after a persist and each
        patient's LSTM state starts fresh when next seen (worker.scoring.engine). A checkpoint
        that does not verify or load is refused, logged and counted; the old model serves on."""
        from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        from worker.scoring.alert_policy import AlertPolicy

        path = self.settings.checkpoint or DEFAULT_CHECKPOINT
        serving = self.engine.model_version
        try:
            model = await asyncio.to_thread(load_checkpoint, path, self.device)
            policy = AlertPolicy.from_manifest(model.manifest)
            assert self.overlapped is not None  # SIGHUP is listened to once the pipeline is built
            async with self.overlapped.quiet():  # no batch in flight, neither scored ahead nor unsafe
                kept = await self.engine.reload(model, policy)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the old model serving
            self.metrics.model_reloads.labels(outcome="refused").inc()
            log.error(
                "checkpoint reload refused: the old model serves on",
                extra={"checkpoint": str(path), "model_version": serving, "error": type(exc).__name__, "detail": str(exc)},
            )
            return
        self.metrics.model_reloads.labels(outcome="kept_state" if kept else "reset_state").inc()
        self.metrics.set_model(self.engine.model_version, self.device, role="live")
        self.metrics.resident_patients.set(self.engine.resident)
        log.warning(
            "checkpoint reloaded" if kept else "checkpoint reloaded with other weights: patients' model state starts fresh",
            extra={"checkpoint": str(path), "previous_version": serving, "model_version": self.engine.model_version, "state_kept": kept},
        )

    async def ready_pipeline(self) -> OverlappedPipeline:
        """The pipeline once ``start`` has built it; raises if building it failed (the app is
        then crashing, and the batch must not be acked)."""
        await self._started.wait()
        if self.overlapped is None:
            raise RuntimeError("the risk engine did not start")
        return self.overlapped

    async def _build_pipeline(self) -> BatchPipeline:
        import torch

        from models.checkpoint import DEFAULT_CHECKPOINT

        s = self.settings
        # Intra-op threads beyond one fight the event loop for cores (VITALWATCH_TORCH_THREADS).
        torch.set_num_threads(s.torch_threads)
        self.engine = await self._engine(s.checkpoint or DEFAULT_CHECKPOINT, "live")
        shadow = None
        if s.shadow_checkpoint is not None:
            self.shadow_engine = await self._engine(s.shadow_checkpoint, "shadow")
            shadow = ShadowModel(self.shadow_engine, s.topic_risk_scores_shadow)
        return BatchPipeline(
            self.engine,
            BatchPublisher(self.app.producer._ensure_producer),
            input_kinds=s.input_topics,
            topics=OutputTopics(s.topic_risk_scores, s.topic_alerts, s.topic_dead_letters, s.topic_scored_outcomes),
            metrics=self.metrics,
            worker_name=f"{socket.gethostname()}:{os.getpid()}",
            max_message_bytes=s.max_message_bytes,
            pseudonym=self.pseudonym,
            backoff=Backoff(should_stop=lambda: self.app.should_stop),
            shadow=shadow,
        )

    async def _engine(self, checkpoint: Path, role: str) -> Any:
        """A RiskEngine on ``checkpoint`` with a slab of its own. The shadow's Redis keys have a
        prefix of their own (``<prefix>shadow:state:``): its state never touches the live one's,
        and either model can be replaced without the other's patients starting fresh. Each
        engine may read the other role's keys (``warm_from``), so that switching to the model
        that ran as the shadow, by SIGHUP or a restart, keeps every patient's LSTM state warm."""
        import torch

        from models.checkpoint import load_checkpoint
        from worker.scoring.alert_policy import AlertPolicy
        from worker.scoring.engine import RiskEngine
        from worker.state.store import RedisStateStore

        s = self.settings
        # Loading weights is blocking file I/O; keep the event loop (heartbeats, /health) free.
        model = await asyncio.to_thread(load_checkpoint, checkpoint, self.device)
        store, other = (
            RedisStateStore(
                self.redis, prefix=state_prefix(s.redis_prefix, of), ttl_s=s.state_ttl_s,
                tombstone_ttl_s=s.discharged_ttl_s, replication=self.redis_connection.replication,
            )
            for of in (role, "shadow" if role == "live" else "live")
        )
        engine = RiskEngine(
            model, store, policy=AlertPolicy.from_manifest(model.manifest), device=torch.device(self.device),
            role=role, warm_from=other, **s.engine_options,
        )
        self.metrics.set_model(engine.model_version, self.device, role=role)
        log.info("model loaded", extra={"model_version": engine.model_version, "device": self.device, "role": role})
        return engine

    def record_lag(self, batch: Sequence[RawMessage]) -> None:
        """Lag per input partition after the batch: high watermark minus the next offset to read."""
        last: dict[tuple[str, int], int] = {}
        for message in batch:
            last[(message.topic, message.partition)] = max(message.offset, last.get((message.topic, message.partition), -1))
        for (topic, partition), offset in last.items():
            highwater = self.app.consumer.highwater(faust.types.TP(topic, partition))
            if highwater is not None:
                self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, highwater - offset - 1))

    def ready(self) -> bool:
        """The model is loaded and the pipeline built: batches can be scored."""
        return self.pipeline is not None

    async def kafka_probe(self) -> None:
        # Faust exposes no public handle on aiokafka's client; a metadata request is the
        # cheapest round trip that proves a broker answers.
        await self.app.producer._ensure_producer().client.fetch_all_metadata()

    async def redis_probe(self) -> None:
        await self.redis_connection.probe()

    def describe(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "engine": {
                "ready": self.ready(),
                "model_version": engine.model_version if engine is not None else None,
                "device": self.device,
                "resident_patients": engine.resident if engine is not None else 0,
            }
        }


def state_prefix(redis_prefix: str, role: str) -> str:
    """Where a role's patient states live: ``<prefix>state:`` live, ``<prefix>shadow:state:`` the shadow."""
    return f"{redis_prefix}state:" if role == "live" else f"{redis_prefix}{role}:state:"


def freeze_startup_heap() -> None:
    """Put every object alive once the worker is built (torch, Faust, aiokafka, pydantic, the
    model: a few hundred thousand) out of the cyclic collector's reach for good.

    Measured at 4,500 events/s: without this, a full collection walked them all every 5-10 s
    and stopped the event loop for 115-130 ms each time, which alone put p99 latency above
    100 ms; with it, no collection during the run took over 5 ms. Objects made later (batches,
    patients) are collected as before."""
    gc.collect()
    gc.freeze()
    log.debug("startup heap frozen", extra={"objects": gc.get_freeze_count()})


def to_raw(message: Message) -> RawMessage:
    return RawMessage(message.topic, message.partition, message.offset, message.key, message.value, message.timestamp)


settings = settings_or_exit()
metrics = Metrics()
app = VitalwatchApp(settings.group_id, **faust_options(settings))
app.idempotent_producer = settings.kafka_idempotence
app.fetch_max_wait_ms = settings.max_wait_ms
runtime = Runtime(app, settings, metrics)
health = HealthChecker(
    probes={"redis": runtime.redis_probe, "kafka": runtime.kafka_probe}, metrics=metrics,
    engine_ready=runtime.ready, describe=runtime.describe, waiting_for={"redis": runtime.redis_connection.waiting_for},
)
app.subscribe(app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw"))


@app.task
async def start_engine() -> None:
    """Load the model and build the pipeline as the worker starts; without them it must stop, not idle."""
    try:
        await runtime.start()
    except Exception as exc:  # noqa: BLE001 - reported, then the app crashes on it
        log.critical("cannot start the risk engine", extra={"error": type(exc).__name__, "detail": str(exc)})
        await app.crash(exc)


async def score_batch(messages: Sequence[Message]) -> Awaitable[None]:
    """Score one fetched batch; returns what completes once it is safe to commit (see the module docstring)."""
    pipeline = await runtime.ready_pipeline()
    batch = [to_raw(m) for m in messages]
    return _safe(batch, await pipeline.begin(batch))


async def _safe(batch: Sequence[RawMessage], done: Awaitable[None]) -> None:
    """Wait for the batch to be safe; a stop before it is withholds it (BatchWithheld)."""
    try:
        await done
    except Stopping:
        log.warning("stopping with an unfinished batch; it is redelivered on restart", extra={"messages": len(batch)})
        raise BatchWithheld() from None
    runtime.record_lag(batch)


app.batch_handler = score_batch


@app.on_partitions_revoked.connect
async def release_revoked(sender: faust.App, revoked: set[faust.types.TP], **kwargs: Any) -> None:
    """Forget the state of patients on revoked partitions: another worker may own them next,
    and its updates would make ours stale. Faust calls this after in-flight batches are acked."""
    if runtime.engine is not None and revoked:
        partitions = {tp.partition for tp in revoked}
        await runtime.engine.release_partitions(partitions)
        if runtime.shadow_engine is not None:  # the shadow's patients move with the live ones
            await runtime.shadow_engine.release_partitions(partitions)
        metrics.resident_patients.set(runtime.engine.resident)


@app.page("/metrics")
async def metrics_view(web: Any, request: Any) -> Any:
    body, content_type = metrics.exposition()
    return web.bytes(body, headers={"Content-Type": content_type})


@app.page("/health")
async def health_view(web: Any, request: Any) -> Any:
    status, body = await health.report()
    return web.json(body, status=status)
