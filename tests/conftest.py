"""Shared fixtures: a real Tansu broker and a real Redis for the integration tests.

Integration tests never mock Kafka or Redis. The broker is started once per session on a
free loopback port; Redis is REDIS_URL when it answers (tests isolate themselves with a
unique key prefix, so a shared Redis is safe to use), else a redis-server on a free port. A
Redis Cluster (three primaries, a replica each) is started from the same redis-server binary
for the tests that ask for one; tests that kill its nodes start their own.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from worker.tools.embedded import EmbeddedBroker, EmbeddedCluster, EmbeddedRedis, create_topics, redis_answers


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker().start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("VITALWATCH_REDIS_URL") or os.environ.get("REDIS_URL")
    if url and redis_answers(url):
        yield url
        return
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """Three primaries with one replica each, on free loopback ports; stopped at the end."""
    cluster = EmbeddedCluster(primaries=3, replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and Redis key prefixes."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topics(broker: EmbeddedBroker, unique: str) -> dict[str, str]:
    """Fresh input and output topics for one test, created on the session broker."""
    names = {
        "vitals": f"vitals-{unique}",
        "labs": f"labs-{unique}",
        "fhir": f"fhir-observations-{unique}",
        "encounters": f"encounters-{unique}",
        "outcomes": f"outcomes-{unique}",
        "risk_scores": f"risk-scores-{unique}",
        "alerts": f"alerts-{unique}",
        "scored_outcomes": f"scored-outcomes-{unique}",
        "dead_letters": f"dead-letters-{unique}",
    }
    create_topics(broker.bootstrap, names.values(), partitions=2)
    return names
