"""Redis or the broker goes away for 10 s while vitals stream in: the worker waits, says so, and
resumes with nothing lost.

What an operator must be able to rely on during an outage of a dependency:

* the worker stays up (no crash loop that would turn a 10 s blip into minutes of rebalancing);
* it does not commit input offsets it has not made safe (Redis down: the batch's state is not
  persisted, so its offsets must not be committed);
* it retries with a growing, capped back-off rather than hammering the dependency;
* /health answers 503 and names the dependency that is down, and Prometheus sees it;
* afterwards every event is scored exactly as an uninterrupted run scores it, and the final
  state in Redis is the same (fault_harness).

Each test runs its own redis-server or Tansu, so pausing it (SIGSTOP) harms nothing else.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from tests.integration.conftest import OutputReader, WorkerProcess
from tests.integration.fault_harness import (
    PacedStream,
    all_scored,
    metric,
    reference_run,
    score_differences,
    vitals_events,
    wait_for_states,
)
from worker.tools.embedded import EmbeddedBroker, EmbeddedRedis, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

OUTAGE_S = 10.0


def committed(admin: KafkaAdminClient, group: str) -> dict[int, int]:
    """The group's committed offset per partition of its input topics."""
    offsets = admin.list_group_offsets(group)[group]
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_for_health(worker: WorkerProcess, status: int, timeout_s: float) -> dict[str, Any]:
    """Poll /health until it answers ``status``; return its body."""
    deadline = time.monotonic() + timeout_s
    report = None
    while time.monotonic() < deadline:
        worker.assert_alive()
        report = worker.health()
        if report is not None and report[0] == status:
            return report[1]
        time.sleep(0.25)
    raise AssertionError(f"/health did not answer {status} within {timeout_s} s; last {report}\n{worker.log_tail()}")


def retry_log_delays(worker: WorkerProcess) -> list[float]:
    """The back-off delays the worker announced, in order (its JSON log lines)."""
    import orjson

    delays = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if '"batch step failed; retrying"' in line:
            delays.append(float(orjson.loads(line)["retry_in_s"]))
    return delays


def check_against_reference(events: list, coordinates: dict, scores: OutputReader, worker: WorkerProcess,
                            redis_url: str, unique: str) -> tuple[int, int]:
    """Every event scored as the uninterrupted run scores it, and the same final state."""
    expected = reference_run(events, coordinates, redis_url, f"ref-{unique}:state:")
    scores.until(all_scored(expected.risks), 90, [worker])
    time.sleep(1.0)
    records = scores.poll()
    wrong = score_differences(records, expected.risks)
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    problems = wait_for_states(redis_url, f"test-{unique}:state:", expected)
    assert not problems, f"{len(problems)} state differences, e.g. {problems[:5]}"
    return len(records), len(expected.states)


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.resume()
        server.stop()


def test_redis_outage_stops_commits_retries_with_backoff_reports_and_resumes(
    own_redis: EmbeddedRedis, start_worker: Callable[..., WorkerProcess], producer: KafkaProducer,
    topics: dict[str, str], read_output: Callable[[str], OutputReader], broker: EmbeddedBroker, unique: str,
) -> None:
    """(own_redis comes first so it outlives the worker: a worker stopping without its Redis
    would wait out its persist retries.)"""
    started = time.monotonic()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    group = f"vitalwatch-{unique}"
    worker = start_worker(VITALWATCH_REDIS_URL=own_redis.url)
    worker.wait_ready()
    events = vitals_events(600, seed=41)
    scores = read_output(topics["risk_scores"])
    stream = PacedStream(producer, topics, events, per_second=40).start()
    scores.until(lambda r: len(r) >= 100, 60, [worker])

    own_redis.pause()
    paused = time.monotonic()
    try:
        body = wait_for_health(worker, 503, timeout_s=8)
        assert body["redis"]["ok"] is False and body["kafka"]["ok"] is True, body
        time.sleep(max(0.0, paused + 4.0 - time.monotonic()))
        early = committed(admin, group)
        scored_early = len(scores.poll())
        time.sleep(max(0.0, paused + OUTAGE_S - 0.5 - time.monotonic()))
        late = committed(admin, group)
        scored_late = len(scores.poll())
        worker.assert_alive()
        during = worker.metrics()
    finally:
        own_redis.resume()
    outage_s = time.monotonic() - paused

    assert early == late, f"offsets committed while Redis was down: {early} -> {late}"
    assert scored_late == scored_early, "nothing new may be published while no state can be saved"
    assert metric(during, "vitalwatch_redis_errors_total") > 0
    assert metric(during, "vitalwatch_dependency_up", dependency="redis") == 0
    # Each attempt on a silent Redis waits out the client's 5 s socket timeout, then sleeps the
    # back-off: a handful of attempts per outage, never a tight loop.
    delays = retry_log_delays(worker)
    assert 1 <= len(delays) <= 30, f"{len(delays)} retries in {outage_s:.0f} s: back-off missing or stuck"
    assert max(delays) <= 5.0, delays

    coordinates = stream.join(timeout_s=60)
    records, patients = check_against_reference(events, coordinates, scores, worker, own_redis.url, unique)
    assert wait_for_health(worker, 200, timeout_s=15)["redis"]["ok"] is True
    final = committed(admin, group)
    assert sum(final.values()) > sum(late.values()), "commits resume after the outage"
    admin.close()
    print(
        f"\nRedis paused {outage_s:.1f} s: /health 503 naming redis, committed offsets frozen at {late}, "
        f"{len(delays)} retries with delays {delays[:8]}..., worker pid {worker.proc.pid} alive; afterwards "
        f"{len(events)} events / {patients} patients scored equal to the uninterrupted run ({records} records); "
        f"{time.monotonic() - started:.1f} s"
    )


def test_broker_outage_keeps_the_worker_up_reports_it_and_resumes(
    start_worker: Callable[..., WorkerProcess], redis_url: str, unique: str,
) -> None:
    started = time.monotonic()
    own = EmbeddedBroker().start()
    readers: list[OutputReader] = []
    producer = None
    try:
        names = {key: f"{key}-{unique}" for key in ("vitals", "labs", "fhir", "encounters", "risk_scores", "alerts", "dead_letters")}
        create_topics(own.bootstrap, names.values(), partitions=2)
        worker = start_worker(
            VITALWATCH_KAFKA_BOOTSTRAP=own.bootstrap, VITALWATCH_TOPIC_VITALS=names["vitals"],
            VITALWATCH_TOPIC_LABS=names["labs"], VITALWATCH_TOPIC_FHIR=names["fhir"],
            VITALWATCH_TOPIC_ENCOUNTERS=names["encounters"],
            VITALWATCH_TOPIC_RISK_SCORES=names["risk_scores"], VITALWATCH_TOPIC_ALERTS=names["alerts"],
            VITALWATCH_TOPIC_DEAD_LETTERS=names["dead_letters"],
        )
        worker.wait_ready()
        pid = worker.proc.pid
        producer = KafkaProducer(bootstrap_servers=own.bootstrap, acks="all", linger_ms=5)
        events = vitals_events(600, seed=42)
        half = len(events) // 2
        coordinates = PacedStream(producer, names, events[:half], per_second=1e9).start().join(60)
        scores = OutputReader(own.bootstrap, names["risk_scores"])
        readers.append(scores)
        scores.until(lambda r: len(r) >= half // 2, 60, [worker])

        own.pause()
        paused = time.monotonic()
        try:
            body = wait_for_health(worker, 503, timeout_s=8)
            assert body["kafka"]["ok"] is False and body["redis"]["ok"] is True, body
            time.sleep(max(0.0, paused + OUTAGE_S - time.monotonic()))
            worker.assert_alive()
            during = worker.metrics()
        finally:
            own.resume()
        outage_s = time.monotonic() - paused
        assert metric(during, "vitalwatch_dependency_up", dependency="kafka") == 0

        coordinates |= PacedStream(producer, names, events[half:], per_second=1e9).start().join(60)
        records, patients = check_against_reference(events, coordinates, scores, worker, redis_url, unique)
        assert wait_for_health(worker, 200, timeout_s=30)["kafka"]["ok"] is True
        assert worker.proc.pid == pid and worker.proc.poll() is None, "the same process rode out the outage"
        assert worker.stop() == 0, worker.log_tail()  # while its broker is still there to leave the group
        print(
            f"\nbroker paused {outage_s:.1f} s: /health 503 naming kafka, worker pid {pid} stayed up; afterwards "
            f"{len(events)} events / {patients} patients scored equal to the uninterrupted run ({records} records); "
            f"{time.monotonic() - started:.1f} s"
        )
    finally:
        if producer is not None:
            producer.close(timeout=5)
        for reader in readers:
            reader.close()
        own.resume()
        own.stop()
