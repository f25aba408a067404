"""kafka-python clients for the command-line tools (simulate, alerts, dev), built from Settings.

The worker talks to Kafka through Faust (aiokafka); the tools use kafka-python, which is
synchronous and light to import. Both read the same VITALWATCH_KAFKA_* settings, so a tool
pointed at a site's TLS/SASL cluster connects exactly like the worker does.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from worker.operations.config import Settings, load_settings


def tool_settings(bootstrap: str | None) -> Settings:
    """Settings from the environment, a tool's ``--bootstrap`` taking precedence (ConfigError if bad)."""
    return load_settings(**({"kafka_bootstrap": bootstrap} if bootstrap else {}))


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options shared by every kafka-python client."""
    options: dict[str, Any] = {
        "bootstrap_servers": [host.strip() for host in settings.kafka_bootstrap.split(",")],
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options.update(
            ssl_cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            ssl_certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            ssl_keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options


def producer(settings: Settings, **overrides: Any) -> Any:
    """A batching producer that waits for every in-sync replica (acks=all); keys and values are bytes."""
    from kafka import KafkaProducer

    options = {
        **client_options(settings),
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "client_id": "vitalwatch-tools",
        **overrides,
    }
    return KafkaProducer(**options)


def follower(settings: Settings, topics: Iterable[str], *, from_beginning: bool, wait_s: float = 30.0) -> Any:
    """A consumer assigned every partition of ``topics``, outside any consumer group.

    Watching tools must not join the worker's group (that would steal its partitions) nor
    commit offsets, so partitions are assigned by hand. A topic that does not exist yet (the
    follower started before the stack) is waited for up to ``wait_s`` seconds.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None)
    wanted = list(topics)
    deadline = time.monotonic() + wait_s
    partitions: list[TopicPartition] = []
    for topic in wanted:
        found = consumer.partitions_for_topic(topic)
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            consumer.topics()  # refreshes metadata
            found = consumer.partitions_for_topic(topic)
        if not found:
            consumer.close()
            raise TimeoutError(f"topic {topic!r} not found on {settings.kafka_bootstrap} within {wait_s:.0f} s")
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    if from_beginning:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
    return consumer
