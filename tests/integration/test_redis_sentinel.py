"""Redis Sentinel: the primary dies mid-stream, the sentinels promote its replica, and with
VITALWATCH_REDIS_MIN_REPLICAS=1 nothing is lost; the same run with 0 shows what is.

Every server is a real redis-server on a loopback port (worker.tools.embedded.EmbeddedSentinels:
a primary, its replica, three sentinels). The run, the same for both settings:

1. The first part of a ward's vitals stream in and are scored.
2. The replica is cut off from the primary, as by a network partition (its link is killed on
   the primary and its reconnection refused), and ``cut_events`` more stream in. The primary
   keeps acknowledging writes that no replica receives. Why not SIGSTOP the replica: what the
   primary had already sent sits in the replica's socket buffer and is applied on SIGCONT, so
   nothing would be lost either way and the test would prove nothing.
3. The primary is killed (kill -9); the sentinels promote the replica, which never received
   step 2's writes. The test then reads every committed offset from Kafka and every patient's
   state from the new primary: an event below the committed offset whose patient's watermark
   is below it is lost for good (``committed_but_missing``: Kafka will not redeliver it).
4. The killed server is started again as the new primary's replica, as an orchestrator would
   (with 1, the worker needs a replica to commit again). The worker follows the failover by
   itself: it writes what it holds to the new primary (each patient's latest event sent is in
   Redis), and /health is 200 again.
5. A worker restart after a failover is where a loss bites: the worker is killed (kill -9) and
   a new one reads its patients from the new primary. The rest streams in.

With 1: during steps 2-3 every batch is held (WAIT counts no replica, then there is no
primary), so no offset of step 2 is committed; nothing is committed but missing; every event
is scored equal to the uninterrupted reference, with the same alerts, and every patient's
final state equals the reference's. /health said what it waited for: replicas, then a primary.
With 0: step 2's batches are committed on the primary's word alone, the promoted replica lacks
them, and the new worker scores the rest on histories with those events missing.

The cut lasts a few seconds: Sentinel will not promote a replica whose link has been down for
more than ten times ``down-after-milliseconds`` (plus the time the primary has been down), a
replica too stale to trust, and then the primary's death stops writes until it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
import redis

from tests.integration.fault_harness import (
    PacedStream,
    all_scored,
    committed_but_missing,
    committed_offsets,
    metric,
    reference_run,
    score_differences,
    stored_states,
    vitals_events,
    wait_for_states,
    wait_until,
)
from worker.operations.config import Settings, load_settings
from worker.tools.embedded import EmbeddedBroker, EmbeddedRedis, EmbeddedSentinels, wait_replicating

pytestmark = [pytest.mark.integration]

#: Longer than Faust's commit interval (2.8 s): with 0, step 2's batches are committed in it.
WINDOW_S = 4.0


@pytest.fixture
def sentinels() -> Iterator[EmbeddedSentinels]:
    """A primary, its replica and three sentinels of this test's own (it kills the primary)."""
    servers = EmbeddedSentinels().start()
    try:
        yield servers
    finally:
        servers.stop()


@dataclass
class FailoverOutcome:
    lost: list[str]  # committed to Kafka, missing from the promoted primary
    committed_in_window: bool  # step 2's offsets were committed before the primary died
    wrong_scores: list[tuple[str, float, float]]
    state_problems: list[str]
    alerts_equal: bool
    waits: list[str]  # what /health said the worker waited for


def cut_off_replica(servers: EmbeddedSentinels) -> None:
    """A partition between the primary and its replica: the replica's link is killed on the
    primary, and its reconnection refused (it now presents a password the primary rejects)."""
    primary, replica = servers.servers
    replica_client = redis.Redis(port=replica.port)
    primary_client = redis.Redis(port=primary.port)
    try:
        replica_client.config_set("masterauth", "cut-off-by-the-test")
        primary_client.client_kill_filter(_type="replica")
    finally:
        replica_client.close()
        primary_client.close()


def restart_as_replica(servers: EmbeddedSentinels, port: int) -> None:
    """Start the killed server again on its port as the current primary's replica."""
    old = servers.server(port)
    again = EmbeddedRedis(port=port, args=("--replicaof", "127.0.0.1", str(servers.primary_port())), workdir=old.workdir)
    servers.servers[servers.servers.index(old)] = again.start()
    wait_replicating(again, 30)


def failover_run(
    servers: EmbeddedSentinels, start_worker: Callable[..., Any], producer: Any, broker: EmbeddedBroker,
    topics: dict[str, str], read_output: Callable[[str], Any], redis_url: str, unique: str, *, min_replicas: int,
    events: int, cut_events: int, per_second: float, seed: int,
) -> FailoverOutcome:
    started = time.monotonic()
    env = {
        "VITALWATCH_REDIS_URL": "redis://127.0.0.1/0",  # the sentinels name the host
        "VITALWATCH_REDIS_SENTINELS": servers.addresses, "VITALWATCH_REDIS_SENTINEL_MASTER": servers.service,
        "VITALWATCH_REDIS_MIN_REPLICAS": str(min_replicas), "VITALWATCH_REDIS_REPLICA_TIMEOUT_MS": "250",
    }
    state: Settings = load_settings(redis_url="redis://127.0.0.1/0", redis_sentinels=servers.addresses,
                                    redis_sentinel_master=servers.service)
    group, prefix = f"vitalwatch-{unique}", f"test-{unique}:state:"
    stream_events = vitals_events(events, seed=seed)
    scores = read_output(topics["risk_scores"])
    worker = start_worker(**env)
    worker.wait_ready()
    first = (events - cut_events) // 2

    # 1. the first part streams in and is scored
    stream = PacedStream(producer, topics, stream_events, per_second, allowed=first).start()
    scores.until(lambda r: len(r) >= first, 60, [worker])
    # 2. the replica is cut off; cut_events more stream in
    cut_off_replica(servers)
    stream.allow(first + cut_events)
    waits = []
    deadline = time.monotonic() + cut_events / per_second + WINDOW_S
    while time.monotonic() < deadline and not (
        stream.sent >= first + cut_events and committed_all(broker, group, topics, stream)
    ):
        waits += health_waits(worker)
    committed_in_window = committed_all(broker, group, topics, stream)
    # 3. the primary dies; the sentinels promote the replica
    killed = servers.primary_port()
    servers.server(killed).kill()
    while servers.primary_port() == killed:
        assert time.monotonic() < deadline + 30, "the sentinels did not promote the replica"
        waits += health_waits(worker)
    wait_until(lambda: primary_discoverable(servers), 30, "a primary discoverable through the sentinels", [worker])
    lost = lost_events(broker, group, topics, stream, stream_events, state, prefix)
    # 4. the killed server comes back as a replica; the worker follows the failover by itself
    restart_as_replica(servers, killed)
    wait_until(lambda: committed_all(broker, group, topics, stream) and (worker.health() or (0,))[0] == 200, 60,
               "commit of every event sent (with 1: the held batch written to the new primary first)", [worker])
    # 5. a restart after the failover: the new worker reads its patients from the new primary
    worker.kill()
    worker = start_worker(**env)
    stream.allow(events)
    coordinates = stream.join(timeout_s=events / per_second + 60)

    expected = reference_run(stream_events, coordinates, redis_url, f"ref-{unique}:state:")
    records = scores.until(all_scored(expected.risks), 120, [worker])
    time.sleep(1.0)
    records = scores.poll()
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).until(
        lambda r: {a["alert_id"] for a in r} >= expected.alerts or min_replicas == 0, 30, [worker])}
    outcome = FailoverOutcome(
        lost=lost, committed_in_window=committed_in_window, wrong_scores=score_differences(records, expected.risks),
        state_problems=wait_for_states(state, prefix, expected, timeout_s=5.0 if min_replicas == 0 else 15.0),
        alerts_equal=alerts == expected.alerts, waits=sorted(set(waits)),
    )
    retries = metric(worker.metrics(), "vitalwatch_batch_retries_total", stage="persist")
    print(
        f"\nMIN_REPLICAS={min_replicas}: {events} events, {len(expected.states)} patients; step 2 committed before the "
        f"primary died: {committed_in_window}; committed but missing from the promoted primary: {len(lost)}; "
        f"scores differing from the reference: {len(outcome.wrong_scores)} of {len(records)}; patients whose final "
        f"state differs: {len({p.split(':')[0] for p in outcome.state_problems})}; alerts equal: {outcome.alerts_equal}; "
        f"/health waited for {outcome.waits}; new worker's persist retries {retries:.0f}; "
        f"{time.monotonic() - started:.1f} s"
    )
    return outcome


def primary_discoverable(servers: EmbeddedSentinels) -> bool:
    """Whether a Sentinel client finds the promoted primary, as the worker's does. A sentinel
    names the new primary (what ``primary_port`` reads) a moment before every sentinel reports it
    up; a client that asks in between finds none (MasterNotFoundError: seen once with two test
    processes on the machine)."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    sentinel = Sentinel([("127.0.0.1", s.port) for s in servers.sentinels if s.proc is not None], socket_timeout=2)
    try:
        sentinel.discover_master(servers.service)
    except MasterNotFoundError:
        return False
    return True


def committed_all(broker: EmbeddedBroker, group: str, topics: dict[str, str], stream: PacedStream) -> bool:
    """Whether the group's committed offsets cover every event sent so far."""
    committed = committed_offsets(broker.bootstrap, group, topics["vitals"])
    return all(offset < committed.get(partition, 0) for _, partition, offset in stream.acknowledged().values())


def lost_events(
    broker: EmbeddedBroker, group: str, topics: dict[str, str], stream: PacedStream, events: list[Any],
    state: Settings, prefix: str,
) -> list[str]:
    committed = committed_offsets(broker.bootstrap, group, topics["vitals"])
    patients = sorted({e.payload["patient_id"] for e in events})
    return committed_but_missing(events, stream.acknowledged(), committed, stored_states(state, prefix, patients))


def health_waits(worker: Any, seconds: float = 0.25) -> list[str]:
    """What /health says the worker waits for (nothing while it is 200), over ``seconds``."""
    report = worker.health()
    time.sleep(seconds)
    if report is None or report[0] == 200:
        return []
    return [report[1].get("redis", {}).get("waiting_for", "")]


@pytest.mark.timeout(150)
def test_min_replicas_1_loses_nothing_when_the_primary_dies(
    sentinels: EmbeddedSentinels, start_worker, producer, broker, topics, read_output, redis_url, unique
) -> None:
    outcome = failover_run(sentinels, start_worker, producer, broker, topics, read_output, redis_url, unique,
                           min_replicas=1, events=600, cut_events=200, per_second=200, seed=51)
    assert not outcome.committed_in_window, "with no replica acknowledging, step 2 must not be committed"
    assert outcome.lost == []
    assert not outcome.wrong_scores, f"{len(outcome.wrong_scores)} scores differ: {outcome.wrong_scores[:5]}"
    assert outcome.alerts_equal
    assert not outcome.state_problems, f"{len(outcome.state_problems)} state differences: {outcome.state_problems[:5]}"
    assert any(w.startswith("1 replica(s) of the primary of 'vitalwatch' at 127.0.0.1:") for w in outcome.waits), outcome.waits
    assert any(w.startswith("a primary for 'vitalwatch' from the sentinels at ") for w in outcome.waits), outcome.waits


@pytest.mark.timeout(150)
def test_min_replicas_0_commits_what_the_promoted_replica_never_had(
    sentinels: EmbeddedSentinels, start_worker, producer, broker, topics, read_output, redis_url, unique
) -> None:
    """The loss the setting prevents, shown: same run, MIN_REPLICAS=0."""
    outcome = failover_run(sentinels, start_worker, producer, broker, topics, read_output, redis_url, unique,
                           min_replicas=0, events=600, cut_events=200, per_second=200, seed=51)
    assert outcome.committed_in_window
    assert outcome.lost, "events committed on the primary's word alone are missing from the promoted replica"
    assert outcome.wrong_scores or outcome.state_problems, "the new worker scored on histories with events missing"


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_min_replicas_1_failover(
    sentinels: EmbeddedSentinels, start_worker, producer, broker, topics, read_output, redis_url, unique
) -> None:
    outcome = failover_run(sentinels, start_worker, producer, broker, topics, read_output, redis_url, unique,
                           min_replicas=1, events=12_000, cut_events=1_200, per_second=400, seed=52)
    assert not outcome.committed_in_window and outcome.lost == []
    assert not outcome.wrong_scores and outcome.alerts_equal and not outcome.state_problems
