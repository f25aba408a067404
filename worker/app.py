"""The Faust app: one agent over the three input topics, micro-batched into the RiskEngine.

``faust -A worker.app worker`` and ``vitalwatch worker`` run this module's ``app``. Settings
are read once, at import (worker.config); a bad one stops the process with a message that
names it.

Batching uses ``stream.take_events``: Faust acks the events of a batch only after the loop body
returns, so the body (BatchPipeline.process) returns only once outputs are acknowledged and
state is in Redis, and never raises. Cancellation (shutdown) mid-batch is the one way out of
the body before the batch is safe; take_events would still ack the batch in its ``finally`` and
the consumer would then commit it, so the agent marks those messages acked *without* telling
the consumer: their offsets are never committed and the batch is redelivered after restart.
Faust's stop also waits for in-flight batches, so the pipeline's retry sleeps give up (Stopping)
once the app is stopping, instead of holding shutdown hostage to an outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import faust
import redis.asyncio as aioredis
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer

from worker.config import ConfigError, Settings, load_settings
from worker.health import HealthChecker
from worker.logs import Pseudonymiser, logging_config
from worker.metrics import Metrics
from worker.pipeline import Backoff, BatchPipeline, OutputTopics, OutRecord, RawMessage, Stopping

log = logging.getLogger(__name__)

#: A broker that does not acknowledge within this many seconds counts as failed and the batch
#: is retried (Faust's default is 20 minutes, which would hide an outage from the retry loop).
PRODUCER_REQUEST_TIMEOUT_S = 30.0
#: Redis calls that take longer than this are treated as a Redis outage and retried.
REDIS_TIMEOUT_S = 5.0


class _IdempotentProducer(AIOKafkaProducer):
    """Faust enables aiokafka's idempotent producer only inside transactions; this enables it
    alone, for real Kafka (KAFKA_IDEMPOTENCE). Tansu refuses InitProducerId, hence opt-in."""

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class VitalwatchApp(faust.App):
    """faust.App whose producer can be idempotent without Faust's exactly-once transactions."""

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


def ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def kafka_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def faust_options(settings: Settings) -> dict[str, Any]:
    """Faust settings derived from ours, so Faust's own configuration is never read separately."""
    return {
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        "broker_credentials": kafka_credentials(settings),
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.session_timeout_s / 3,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_request_timeout": PRODUCER_REQUEST_TIMEOUT_S,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "store": "memory://",
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "stream_buffer_maxsize": max(4096, 2 * settings.max_batch),
        "web_enabled": True,
        "web_port": settings.metrics_port,
        "web_bind": "0.0.0.0",
        "datadir": Path(tempfile.gettempdir()) / f"vitalwatch-faust-{settings.group_id}",
        "logging_config": logging_config(settings.log_level),
        "autodiscover": False,
    }


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Runtime:
    """The worker's long-lived objects, built once the event loop runs (the agent's first step)."""

    def __init__(self, app: VitalwatchApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        key = settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key else None
        self.pseudonym = Pseudonymiser(key, enabled=settings.log_pseudonymise)
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        self.engine: Any = None
        self.pipeline: BatchPipeline | None = None
        self._lock = asyncio.Lock()

    async def ensure_pipeline(self) -> BatchPipeline:
        async with self._lock:
            if self.pipeline is None:
                self.pipeline = await self._build_pipeline()
            return self.pipeline

    async def _build_pipeline(self) -> BatchPipeline:
        import torch

        from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        from worker.alert_policy import AlertPolicy
        from worker.engine import RiskEngine
        from worker.state_store import RedisStateStore

        s = self.settings
        # Intra-op threads beyond one fight the event loop for cores (VITALWATCH_TORCH_THREADS).
        torch.set_num_threads(s.torch_threads)
        # Loading weights is blocking file I/O; keep the event loop (heartbeats, /health) free.
        model = await asyncio.to_thread(load_checkpoint, s.checkpoint or DEFAULT_CHECKPOINT, self.device)
        store = RedisStateStore(self.redis, prefix=f"{s.redis_prefix}state:", ttl_s=s.state_ttl_s)
        self.engine = RiskEngine(
            model, store, capacity=s.slab_capacity,
            policy=AlertPolicy.from_manifest(model.manifest), device=torch.device(self.device),
        )
        self.metrics.set_model(self.engine.model_version, self.device)
        log.info("model loaded", extra={"model_version": self.engine.model_version, "device": self.device})
        return BatchPipeline(
            self.engine,
            FaustPublisher(self.app),
            input_kinds=s.input_topics,
            topics=OutputTopics(s.topic_risk_scores, s.topic_alerts, s.topic_dead_letters),
            metrics=self.metrics,
            worker_name=f"{socket.gethostname()}:{os.getpid()}",
            max_message_bytes=s.max_message_bytes,
            pseudonym=self.pseudonym,
            backoff=Backoff(should_stop=lambda: self.app.should_stop),
        )

    def record_lag(self, batch: Sequence[RawMessage]) -> None:
        """Lag per input partition after the batch: high watermark minus the next offset to read."""
        last: dict[tuple[str, int], int] = {}
        for message in batch:
            last[(message.topic, message.partition)] = max(message.offset, last.get((message.topic, message.partition), -1))
        for (topic, partition), offset in last.items():
            highwater = self.app.consumer.highwater(faust.types.TP(topic, partition))
            if highwater is not None:
                self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, highwater - offset - 1))

    async def kafka_probe(self) -> None:
        # Faust exposes no public handle on aiokafka's client; a metadata request is the
        # cheapest round trip that proves a broker answers.
        await self.app.producer._ensure_producer().client.fetch_all_metadata()

    async def redis_probe(self) -> None:
        await self.redis.ping()

    def describe(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "engine": {
                "ready": engine is not None,
                "model_version": engine.model_version if engine is not None else None,
                "device": self.device,
                "resident_patients": engine.resident if engine is not None else 0,
            }
        }


class FaustPublisher:
    """Publishes through the app's producer and waits for every acknowledgement (acks=all)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def publish(self, records: Sequence[OutRecord]) -> None:
        producer = self.app.producer
        pending: list[Any] = []
        try:
            for r in records:
                pending.append(await producer.send(r.topic, r.key, r.value, None, None, None))
        finally:
            results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def to_raw(event: faust.types.EventT) -> RawMessage:
    m = event.message
    return RawMessage(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


def withhold(events: Sequence[faust.types.EventT]) -> None:
    """Keep a batch that is not safe out of the next commit (see the module docstring)."""
    for event in events:
        event.message.acked = True


settings = settings_or_exit()
metrics = Metrics()
app = VitalwatchApp(settings.group_id, **faust_options(settings))
app.idempotent_producer = settings.kafka_idempotence
runtime = Runtime(app, settings, metrics)
health = HealthChecker(
    probes={"redis": runtime.redis_probe, "kafka": runtime.kafka_probe}, metrics=metrics, describe=runtime.describe
)
input_topic = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")


@app.agent(input_topic)
async def score_observations(stream: faust.StreamT) -> None:
    """Score every input observation; see BatchPipeline for the per-batch guarantees."""
    try:
        pipeline = await runtime.ensure_pipeline()
    except Exception as exc:  # noqa: BLE001 - without a model the worker must stop, not idle
        log.critical("cannot start the risk engine", extra={"error": type(exc).__name__, "detail": str(exc)})
        await app.crash(exc)
        return
    async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000):
        batch = [to_raw(e) for e in events]
        try:
            await pipeline.process(batch)
        except Stopping:
            withhold(events)
            log.warning("stopping with an unfinished batch; it is redelivered on restart", extra={"messages": len(batch)})
            break
        except BaseException:
            withhold(events)
            raise
        runtime.record_lag(batch)


@app.on_partitions_revoked.connect
async def release_revoked(sender: faust.App, revoked: set[faust.types.TP], **kwargs: Any) -> None:
    """Forget the state of patients on revoked partitions: another worker may own them next,
    and its updates would make ours stale. Faust calls this after in-flight batches are acked."""
    if runtime.engine is not None and revoked:
        await runtime.engine.release_partitions({tp.partition for tp in revoked})
        metrics.resident_patients.set(runtime.engine.resident)


@app.page("/metrics")
async def metrics_view(web: Any, request: Any) -> Any:
    body, content_type = metrics.exposition()
    return web.bytes(body, headers={"Content-Type": content_type})


@app.page("/health")
async def health_view(web: Any, request: Any) -> Any:
    status, body = await health.report()
    return web.json(body, status=status)
