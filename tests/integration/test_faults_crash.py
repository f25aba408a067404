"""kill -9 the worker again and again while a ward's vitals and encounters (admissions,
discharges, ICU transfers) stream in: nothing is lost, nothing is applied twice, and every
discharged patient's key is its tombstone.

Each kill lands at a random moment after the worker has published something since its last
start — mid-batch, between publish and persist, between persist and commit, or during the next
start-up — and a new worker is started at once, as an orchestrator would. After the stream ends
the last worker catches up, and the run is held to the uninterrupted pass (fault_harness):
every event_id scored, every score equal, the same alert ids, the same final state in Redis.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Mapping

import pytest

from tests.integration.fault_harness import (
    PacedStream,
    RedisTarget,
    all_scored,
    metric,
    persisted_in,
    reference_run,
    score_differences,
    wait_for_states,
    ward_events,
)

pytestmark = [pytest.mark.integration]


def crash_run(
    start_worker: Callable[..., Any], producer: Any, topics: dict[str, str], read_output: Callable[[str], Any],
    redis_url: str, unique: str, *, events: int, kills: int, per_second: float, seed: int,
    worker_env: Mapping[str, str] | None = None, state_redis: RedisTarget | None = None,
) -> None:
    """``worker_env`` points the workers at another Redis (a cluster: test_redis_cluster), which
    ``state_redis`` reads; the reference runs on ``redis_url``."""
    started = time.monotonic()
    rng = random.Random(seed)
    stream_events = ward_events(events, seed=seed)
    scores = read_output(topics["risk_scores"])
    prefix = f"test-{unique}:state:"
    state_redis = state_redis or redis_url
    worker_env = worker_env or {}

    worker = start_worker(**worker_env)
    worker.wait_ready()
    stream = PacedStream(producer, topics, stream_events, per_second, safe=persisted_in(state_redis, prefix)).start()
    killed_at: list[int] = []
    for _ in range(kills):
        seen = len(scores.poll())
        scores.until(lambda r: len(r) > seen, 60, [worker])
        time.sleep(rng.uniform(0.0, 1.5))
        worker.kill()
        killed_at.append(len(scores.poll()))
        worker = start_worker(**worker_env)
    coordinates = stream.join(timeout_s=events / per_second + 60)
    assert killed_at[-1] < sum(e.topic == "vitals" for e in stream_events), "every kill must land before the stream is fully scored"

    expected = reference_run(stream_events, coordinates, redis_url, f"ref-{unique}:state:")
    discharged = sum(s.discharged for s in expected.states.values())
    assert discharged and any(e.payload.get("kind") == "transfer" for e in stream_events), "the stream ends stays"
    records = scores.until(all_scored(expected.risks), 120, [worker])
    time.sleep(1.0)  # any re-published duplicate of the last batches arrives too
    records = scores.poll()

    wrong = score_differences(records, expected.risks)
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).until(
        lambda r: {a["alert_id"] for a in r} >= expected.alerts, 30, [worker])}
    assert alerts == expected.alerts, f"missing {expected.alerts - alerts}, unexpected {alerts - expected.alerts}"
    problems = wait_for_states(state_redis, prefix, expected)
    assert not problems, f"{len(problems)} state differences, e.g. {problems[:5]}"
    worker.assert_alive()
    skipped = metric(worker.metrics(), "vitalwatch_events_total", outcome="duplicate")
    print(
        f"\n{len(stream_events)} events, {len(expected.states)} patients ({discharged} discharged), {kills} kills after "
        f"{killed_at} scores; {len(records)} risk-score records ({len(records) - len(expected.risks)} re-published "
        f"at-least-once duplicates), {len(alerts)} alerts, last worker skipped {skipped:.0f} redelivered events; "
        f"{time.monotonic() - started:.1f} s"
    )


@pytest.mark.timeout(150)
def test_repeated_sigkill_loses_nothing_and_applies_nothing_twice(
    start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    crash_run(start_worker, producer, topics, read_output, redis_url, unique,
              events=1_500, kills=2, per_second=150, seed=21)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_20000_events_through_six_sigkills(start_worker, producer, topics, read_output, redis_url, unique) -> None:
    crash_run(start_worker, producer, topics, read_output, redis_url, unique,
              events=20_000, kills=6, per_second=400, seed=22)
