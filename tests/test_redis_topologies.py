"""Choosing a Redis topology: the settings that name one, the client each builds, and what
/health says a worker waits for. Nothing here talks to a server (tests/test_state_store.py and
tests/integration/test_redis_*.py do)."""

from __future__ import annotations

import os

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

from worker.operations.config import ENV_PREFIX, ConfigError, load_settings
from worker.operations.health import HealthChecker
from worker.operations.metrics import Metrics
from worker.state.connect import connect
from worker.state.replication import NotReplicated, Replication, online_replicas


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_are_one_redis_without_replicas() -> None:
    s = load_settings()
    assert (s.redis_sentinels, s.redis_cluster, s.redis_min_replicas, s.redis_replica_timeout_ms) == ("", False, 0, 1000)
    assert s.sentinel_addresses == [] and s.redis_sentinel_master == "mymaster"
    conn = connect(s)
    assert conn.topology == "standalone" and isinstance(conn.client, aioredis.Redis)
    assert conn.replication == Replication(0, 1000) and not conn.replication.wanted


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1"}, "VITALWATCH_REDIS_SENTINELS: must be host:port[,host:port…], not '10.0.0.1'"),
        ({"REDIS_SENTINELS": "a:26379,b:port"}, "not 'b:port'"),
        ({"REDIS_SENTINELS": "a:70000"}, "not 'a:70000'"),
        ({"REDIS_SENTINELS": "a:26379", "REDIS_CLUSTER": "true"},
         "VITALWATCH_REDIS_SENTINELS and VITALWATCH_REDIS_CLUSTER: choose one topology"),
        ({"REDIS_MIN_REPLICAS": "-1"}, "VITALWATCH_REDIS_MIN_REPLICAS: must be >= 0, got -1"),
        ({"REDIS_REPLICA_TIMEOUT_MS": "5000"}, "VITALWATCH_REDIS_REPLICA_TIMEOUT_MS: must be <= 4000, got 5000"),
        ({"REDIS_REPLICA_TIMEOUT_MS": "0"}, "VITALWATCH_REDIS_REPLICA_TIMEOUT_MS: must be >= 1, got 0"),
        ({"REDIS_CLUSTER": "maybe"}, "VITALWATCH_REDIS_CLUSTER: must be true or false, got maybe"),
        ({"REDIS_URL": "localhost:6379"}, "VITALWATCH_REDIS_URL: must start with redis://, rediss:// or unix://"),
    ],
)
def test_a_wrong_topology_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_sentinel_password_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALWATCH_REDIS_SENTINEL_PASSWORD", "s3ntinel-secret")
    monkeypatch.setenv("VITALWATCH_REDIS_SENTINELS", "a:1,bad")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "s3ntinel-secret" not in str(info.value)
    monkeypatch.setenv("VITALWATCH_REDIS_SENTINELS", " a:1 , b:2 ")
    s = load_settings()
    assert s.sentinel_addresses == [("a", 1), ("b", 2)] and "s3ntinel-secret" not in repr(s)


def test_sentinel_client_follows_the_service_with_the_urls_credentials_and_tls() -> None:
    """The URL's scheme, credentials and database go to the primary; TLS also to the sentinels,
    which take their own credentials."""
    conn = connect(load_settings(
        redis_url="rediss://svc:pw@ignored.example:1/2?ssl_cert_reqs=none", redis_sentinels="s1:26379,s2:26380",
        redis_sentinel_master="ward-state", redis_sentinel_username="watcher", redis_sentinel_password="sentinel-pw",
        redis_min_replicas=1,
    ))
    pool = conn.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "ward-state"
    assert pool.connection_class is SentinelManagedSSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"], kwargs["ssl_cert_reqs"]) == ("svc", "pw", 2, "none")
    assert "host" not in kwargs  # the sentinels name it
    assert conn.sentinel is not None
    sentinels = [s.connection_pool for s in conn.sentinel.sentinels]
    assert [(p.connection_kwargs["host"], p.connection_kwargs["port"]) for p in sentinels] == [("s1", 26379), ("s2", 26380)]
    assert all(p.connection_class is aioredis.SSLConnection for p in sentinels)
    assert {(p.connection_kwargs["username"], p.connection_kwargs["password"]) for p in sentinels} == {("watcher", "sentinel-pw")}
    assert conn.waiting_for(ConnectionError()) == "a primary for 'ward-state' from the sentinels at s1:26379, s2:26380"
    assert conn.replication.replicas == 1


def test_plain_sentinel_connections_without_tls() -> None:
    conn = connect(load_settings(redis_url="redis://:pw@x/0", redis_sentinels="127.0.0.1:26379"))
    assert conn.client.connection_pool.connection_class is SentinelManagedConnection
    assert conn.topology == "sentinel"


def test_cluster_client_from_the_url_of_one_node() -> None:
    conn = connect(load_settings(redis_url="redis://:pw@10.1.2.3:7000/0", redis_cluster=True))
    assert isinstance(conn.client, RedisCluster) and conn.topology == "cluster"
    assert conn.waiting_for(ConnectionError()) == "every hash slot of the Redis Cluster served by a primary that answers"


def test_not_replicated_is_a_redis_error_with_its_counts() -> None:
    rule = Replication(2, 250)
    rule.check("p:1", 2)
    with pytest.raises(NotReplicated, match=r"^1 of 2 replicas of p:1 acknowledged the write within 250 ms$") as info:
        rule.check("p:1", 1)
    assert (info.value.acknowledged, info.value.wanted) == (1, 2)
    with pytest.raises(NotReplicated, match=r"^0 of 2 replicas of p:1 online$"):
        rule.check_online("p:1", {"role": "master", "connected_slaves": 0})
    with pytest.raises(ValueError):
        Replication(-1)


def test_online_replicas_counts_only_streaming_ones() -> None:
    info = {
        "role": "master", "connected_slaves": 3,
        "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 10, "lag": 0},
        "slave1": {"ip": "10.0.0.3", "port": 6379, "state": "wait_bgsave", "offset": 0, "lag": 0},
        "slave2": {"ip": "10.0.0.4", "port": 6379, "state": "online", "offset": 9, "lag": 1},
        "slave_expires_tracked_keys": 0,
    }
    assert online_replicas(info) == 2


async def test_health_says_what_a_failed_dependency_waits_for() -> None:
    async def redis_down() -> None:
        raise NotReplicated("127.0.0.1:6380", 0, 1)

    async def kafka_up() -> None:
        return None

    checker = HealthChecker(
        probes={"redis": redis_down, "kafka": kafka_up}, metrics=Metrics(), engine_ready=lambda: True,
        waiting_for={"redis": lambda exc: f"waiting because {type(exc).__name__}"},
    )
    status, body = await checker.report()
    assert status == 503 and body["not_ready"] == ["redis"]
    assert body["redis"] == {"ok": False, "error": "NotReplicated", "waiting_for": "waiting because NotReplicated"}
    assert body["kafka"] == {"ok": True}
