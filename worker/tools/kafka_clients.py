"""kafka-python clients for the command-line tools (simulate, alerts, dev), built from Settings.

The worker talks to Kafka through Faust (aiokafka); the tools use kafka-python, which is
synchronous and light to import. Both read the same VITALWATCH_KAFKA_* settings, so a tool
pointed at a site's TLS/SASL cluster connects exactly like the worker does.

Every client here is bounded by worker.tools.reach.REACH_TIMEOUT_S where kafka-python would
otherwise block for long (bootstrap 30 s, a producer's metadata wait and full buffer 60 s), and
``check_reachable`` lets a tool find out up front, before its own work, that the broker answers.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterable

from worker.operations.config import ENV_PREFIX, Settings, load_settings
from worker.tools.reach import REACH_TIMEOUT_S, cannot_reach, chosen_by

#: kafka-python's wait for a first bootstrap and a producer's longest block, in its unit.
BOUND_MS = int(REACH_TIMEOUT_S * 1000)


def tool_settings(bootstrap: str | None) -> Settings:
    """Settings from the environment, a tool's ``--bootstrap`` taking precedence (ConfigError if bad)."""
    return load_settings(**({"kafka_bootstrap": bootstrap} if bootstrap else {}))


def reachable_settings(bootstrap: str | None) -> Settings:
    """A Kafka tool's settings once its broker answers: ConfigError for a bad setting,
    worker.tools.reach.Unavailable when nothing answers (worker.cli turns both into one line)."""
    settings = tool_settings(bootstrap)
    check_reachable(settings, bootstrap)
    return settings


def check_reachable(settings: Settings, bootstrap_flag: str | None) -> None:
    """Raise worker.tools.reach.Unavailable unless Kafka answers at ``settings.kafka_bootstrap``
    within REACH_TIMEOUT_S; the message names ``--bootstrap`` when ``bootstrap_flag`` chose the
    address, else VITALWATCH_KAFKA_BOOTSTRAP (set, or its default).

    The check speaks Kafka, not just TCP: a KafkaAdminClient bootstraps in its constructor —
    it connects to a bootstrap server (TLS and SASL as configured), asks for its API versions
    and fetches the cluster's metadata, the same exchange every later client starts with — and
    raises KafkaTimeoutError once ``bootstrap_timeout_ms`` has passed without success.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    setting = chosen_by(f"{ENV_PREFIX}KAFKA_BOOTSTRAP", "--bootstrap" if bootstrap_flag else None)
    if not _any_listening(settings.kafka_bootstrap, REACH_TIMEOUT_S):
        raise cannot_reach("Kafka", settings.kafka_bootstrap, setting)
    try:
        admin = KafkaAdminClient(**client_options(settings), client_id="vitalwatch-tools")
    except KafkaError as exc:
        raise cannot_reach("Kafka", settings.kafka_bootstrap, setting) from exc
    admin.close()


def _any_listening(bootstrap: str, timeout_s: float) -> bool:
    """Whether some bootstrap address accepts a TCP connection within ``timeout_s`` (all of
    them together). kafka-python retries a refused or unresolvable address until its deadline;
    no such address can turn into a broker in the meantime, so the tool says so at once instead
    of waiting the bound out. One that listens still has to speak Kafka (the check above)."""
    deadline = time.monotonic() + timeout_s
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=remaining):
                return True
        except (OSError, ValueError):
            continue
    return False


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options shared by every kafka-python client."""
    options: dict[str, Any] = {
        "bootstrap_servers": [host.strip() for host in settings.kafka_bootstrap.split(",")],
        "security_protocol": settings.kafka_security_protocol,
        "bootstrap_timeout_ms": BOUND_MS,
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
    """A batching producer that waits for every in-sync replica (acks=all); keys and values are
    bytes. A send blocks (waiting for a topic's metadata or for buffer space) for at most the
    reach bound, then raises KafkaTimeoutError, instead of kafka-python's 60 s."""
    from kafka import KafkaProducer

    options = {
        **client_options(settings),
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "client_id": "vitalwatch-tools",
        "max_block_ms": BOUND_MS,
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
