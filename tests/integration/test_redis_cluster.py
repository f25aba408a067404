"""The worker on a Redis Cluster of three primaries with a replica each, every node a real
redis-server on a loopback port (worker.tools.embedded.EmbeddedCluster), with
VITALWATCH_REDIS_MIN_REPLICAS=1: every batch's state is on a primary and its replica before the
batch's offsets are committed.

* The kill -9 and rebalance fault runs (test_faults_crash, test_faults_rebalance) pass against
  it unchanged: a batch's patients fall in hundreds of hash slots over the three primaries,
  and nothing is lost or applied twice.
* One primary fails (kill -9) mid-stream: the cluster promotes its replica within about two
  node timeouts; the worker's batch fails, is held (nothing committed) and retried until the
  new primary answers and, since it has no replica left, until the killed node is back as its
  replica. Every event is then scored exactly as the uninterrupted reference scores it, and
  every patient's state in the cluster equals the reference's. The same worker process does
  all of this: the failover is followed, not restarted through.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest

from tests.integration.fault_harness import (
    PacedStream,
    all_scored,
    metric,
    reference_run,
    score_differences,
    vitals_events,
    wait_for_states,
    wait_until,
)
from tests.integration.test_faults_crash import crash_run
from tests.integration.test_faults_rebalance import rebalance_run
from worker.operations.config import Settings, load_settings
from worker.tools.embedded import EmbeddedBroker, EmbeddedCluster

pytestmark = [pytest.mark.integration]


def on_cluster(cluster: EmbeddedCluster, min_replicas: int = 1) -> tuple[dict[str, str], Settings]:
    """The worker's environment for ``cluster``, and the same settings for the test to read it."""
    env = {
        "VITALWATCH_REDIS_URL": cluster.url, "VITALWATCH_REDIS_CLUSTER": "true",
        "VITALWATCH_REDIS_MIN_REPLICAS": str(min_replicas), "VITALWATCH_REDIS_REPLICA_TIMEOUT_MS": "250",
    }
    return env, load_settings(redis_url=cluster.url, redis_cluster=True)


@pytest.mark.timeout(150)
def test_repeated_sigkill_against_a_cluster(
    redis_cluster: EmbeddedCluster, start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    env, state = on_cluster(redis_cluster)
    crash_run(start_worker, producer, topics, read_output, redis_url, unique,
              events=1_000, kills=1, per_second=150, seed=41, worker_env=env, state_redis=state)


@pytest.mark.timeout(150)
def test_rebalance_against_a_cluster(
    redis_cluster: EmbeddedCluster, start_worker, producer, broker, read_output, redis_url, unique, topics
) -> None:
    env, state = on_cluster(redis_cluster)
    rebalance_run(start_worker, producer, broker, read_output, redis_url, unique, topics,
                  events=700, per_second=100, seed=42, worker_env=env, state_redis=state)


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster of this test's own: it kills a node."""
    cluster = EmbeddedCluster(primaries=3, replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def primary_failover_run(
    cluster: EmbeddedCluster, start_worker: Callable[..., Any], producer: Any, topics: dict[str, str],
    read_output: Callable[[str], Any], redis_url: str, unique: str, *, events: int, failovers: int, per_second: float,
    seed: int,
) -> None:
    """Stream ``events`` vitals; ``failovers`` times, once the worker has scored more, kill -9
    a primary, wait for its replica's promotion, then start the killed node again (it rejoins
    as the new primary's replica). Then hold the run to the uninterrupted reference."""
    started = time.monotonic()
    env, state = on_cluster(cluster)
    stream_events = vitals_events(events, seed=seed)
    scores = read_output(topics["risk_scores"])
    prefix = f"test-{unique}:state:"
    worker = start_worker(**env)
    worker.wait_ready()
    step = events // (failovers + 1)
    stream = PacedStream(producer, topics, stream_events, per_second, allowed=step).start()
    waits: list[str] = []
    failed: list[int] = []
    for round_ in range(1, failovers + 1):
        scores.until(lambda r: len(r) >= round_ * step * 0.8, 60, [worker])
        stream.allow((round_ + 1) * step)  # the stream goes on through the failover
        victim = cluster.primary_ports()[round_ % 3]
        cluster.node(victim).kill()
        failed.append(victim)
        wait_until(lambda: victim not in cluster.primary_ports() and len(cluster.primary_ports()) == 3, 30,
                   "the replica's promotion", [worker])
        waits += health_waits(worker, seconds=2.0)  # the new primary has no replica yet: batches are held
        cluster.node(victim).start()
        cluster.wait_healthy()
    stream.allow(events)
    coordinates = stream.join(timeout_s=events / per_second + 60)

    expected = reference_run(stream_events, coordinates, redis_url, f"ref-{unique}:state:")
    records = scores.until(all_scored(expected.risks), 120, [worker])
    time.sleep(1.0)
    records = scores.poll()
    wrong = score_differences(records, expected.risks)
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).until(
        lambda r: {a["alert_id"] for a in r} >= expected.alerts, 30, [worker])}
    assert alerts == expected.alerts
    problems = wait_for_states(state, prefix, expected)
    assert not problems, f"{len(problems)} state differences, e.g. {problems[:5]}"
    text = worker.metrics()
    held = metric(text, "vitalwatch_batch_retries_total", stage="persist")
    assert held > 0, "a batch must have been held while its primary was gone or had no replica"
    assert any("replica(s) of 127.0.0.1:" in w or "hash slot" in w for w in waits), waits
    worker.assert_alive()  # one worker process throughout: it followed every failover
    print(
        f"\n{events} events, {len(expected.states)} patients, {failovers} primary failover(s) (killed {failed}); "
        f"{len(records)} risk-score records, {len(alerts)} alerts; persist retried {held:.0f} times; "
        f"/health said it waited for {sorted(set(waits))}; {time.monotonic() - started:.1f} s"
    )


def health_waits(worker: Any, seconds: float) -> list[str]:
    """What /health says the worker waits for, polled for ``seconds``."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        report = worker.health()
        if report is not None and report[0] == 503 and "waiting_for" in report[1].get("redis", {}):
            seen.append(report[1]["redis"]["waiting_for"])
        time.sleep(0.2)
    return seen


@pytest.mark.timeout(150)
def test_a_primary_failing_over_mid_stream_loses_nothing(
    own_cluster: EmbeddedCluster, start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    primary_failover_run(own_cluster, start_worker, producer, topics, read_output, redis_url, unique,
                         events=700, failovers=1, per_second=120, seed=43)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_three_primary_failovers(own_cluster: EmbeddedCluster, start_worker, producer, topics, read_output, redis_url, unique) -> None:
    primary_failover_run(own_cluster, start_worker, producer, topics, read_output, redis_url, unique,
                         events=12_000, failovers=3, per_second=300, seed=44)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_sigkills_against_a_cluster(
    redis_cluster: EmbeddedCluster, start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    env, state = on_cluster(redis_cluster)
    crash_run(start_worker, producer, topics, read_output, redis_url, unique,
              events=20_000, kills=6, per_second=400, seed=45, worker_env=env, state_redis=state)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_rebalance_against_a_cluster(
    redis_cluster: EmbeddedCluster, start_worker, producer, broker: EmbeddedBroker, read_output, redis_url, unique, topics
) -> None:
    env, state = on_cluster(redis_cluster)
    rebalance_run(start_worker, producer, broker, read_output, redis_url, unique, topics,
                  events=20_000, per_second=400, seed=46, worker_env=env, state_redis=state)
