"""Faust's settings, derived from ours, in a module of their own: importing worker.stream.app builds
the worker (reads the environment, creates the app, its topics and Redis client), and the
bench's Faust contenders need the same settings without that."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any

import faust

from worker.operations.config import Settings
from worker.operations.logs import logging_config

#: A broker that does not acknowledge within this many seconds counts as failed and the batch
#: is retried (Faust's default is 20 minutes, which would hide an outage from the retry loop).
PRODUCER_REQUEST_TIMEOUT_S = 30.0
#: Bytes of one record batch per output partition. A full micro-batch's risk scores for one
#: partition (~250 B each) fit in one, so publishing it is one produce round trip per partition,
#: not one per 16 KiB (aiokafka's default: a partition's next batch waits for the previous).
#: Well under max_request_size (1 MB) and Kafka's default message.max.bytes.
PRODUCER_BATCH_BYTES = 256 * 1024


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS context for SSL and SASL_SSL: the configured CAs (or the system's) and, for mutual
    TLS, the client certificate."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def kafka_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The Kafka security settings as Faust credentials (None for PLAINTEXT)."""
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
    """Faust settings derived from ours, so Faust's own configuration is never read separately.

    ``broker_max_poll_records`` bounds each fetched batch, which batch delivery
    (worker.stream.batch_delivery) scores as one micro-batch, to ``max_batch``."""
    return {
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        "broker_credentials": kafka_credentials(settings),
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.session_timeout_s / 3,
        "broker_max_poll_records": settings.max_batch,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_request_timeout": PRODUCER_REQUEST_TIMEOUT_S,
        "producer_max_batch_size": PRODUCER_BATCH_BYTES,
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
