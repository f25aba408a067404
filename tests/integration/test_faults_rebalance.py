"""Two workers in one consumer group on 4-partition topics, one added and one removed while a
ward's vitals and encounters stream in: patients move between workers with their state (from
Redis) and no event is lost or applied twice.

The vitals and encounters topics have the same partition count, so Faust's assignor gives the
same partition numbers of both to one worker: a patient's observations and encounters are
owned by one worker at a time (docs/operations.md asks the same of a site's topics).

Worker A starts alone and owns all four partitions. Worker B joins mid-stream: A gives up two
partitions (persisting and dropping those patients, worker.stream.app.release_revoked) and B reads
them from Redis on first sight. Then A is stopped mid-stream and B takes everything, reading
A's patients from Redis again. The run is held to the uninterrupted pass (fault_harness).
With a shadow model beside the live one, its scores and states are held to its own
uninterrupted pass as well: its patients move between workers with the live ones.

"Mid-stream" is made certain, not timed: the stream holds back its last third until A has
been stopped, and while B joins it trickles (a few events every half second) until B has
scored, so neither a slow start nor a slow rebalance lets the stream run out first.
"""

from __future__ import annotations

import time
from pathlib import Path
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
from models.checkpoint import SIMULATED_WARD_CHECKPOINT
from worker.tools.embedded import EmbeddedBroker, create_topics

pytestmark = [pytest.mark.integration]


def feed_until_scoring(
    stream: PacedStream, worker: Any, *, up_to: int, alive: list[Any], timeout_s: float = 60.0
) -> None:
    """Let ``stream`` send a few more events every half second (never past ``up_to``) until
    ``worker`` has scored one.

    A joining worker gets partitions only after the group rebalances (seconds on Tansu, more on
    a loaded machine); events must keep arriving until then, or it has nothing to score, but a
    full-rate stream could run out first and the removal would no longer land mid-stream."""
    deadline = time.monotonic() + timeout_s
    while metric(worker.metrics(), "vitalwatch_events_total", outcome="scored") == 0:
        assert time.monotonic() < deadline, f"the joining worker scored nothing in {timeout_s} s\n{worker.log_tail()}"
        for w in alive:
            w.assert_alive()
        stream.allow(min(up_to, stream.sent + 10))
        time.sleep(0.5)


def rebalance_run(
    start_worker: Callable[..., Any], producer: Any, broker: EmbeddedBroker, read_output: Callable[[str], Any],
    redis_url: str, unique: str, topics: dict[str, str], *, events: int, per_second: float, seed: int,
    worker_env: Mapping[str, str] | None = None, state_redis: RedisTarget | None = None, shadow: Path | None = None,
) -> None:
    """``worker_env`` points the workers at another Redis (a cluster: test_redis_cluster), which
    ``state_redis`` reads; the reference runs on ``redis_url``. ``shadow``: the workers run that
    checkpoint as their shadow model."""
    started = time.monotonic()
    inputs = {"vitals": f"vitals4-{unique}", "encounters": f"encounters4-{unique}"}
    create_topics(broker.bootstrap, inputs.values(), partitions=4)
    env = {**(worker_env or {}), "VITALWATCH_TOPIC_VITALS": inputs["vitals"], "VITALWATCH_TOPIC_ENCOUNTERS": inputs["encounters"]}
    if shadow is not None:
        create_topics(broker.bootstrap, [f"shadow-{unique}"], partitions=4)
        env.update(VITALWATCH_SHADOW_CHECKPOINT=str(shadow), VITALWATCH_TOPIC_RISK_SCORES_SHADOW=f"shadow-{unique}")
    state_redis = state_redis or redis_url
    stream_events = ward_events(events, seed=seed)
    observations = sum(e.topic == "vitals" for e in stream_events)
    scores = read_output(topics["risk_scores"])
    prefix = f"test-{unique}:state:"

    first = start_worker(**env)
    first.wait_ready()
    stream = PacedStream(producer, {**topics, **inputs}, stream_events, per_second, allowed=events // 3,
                         safe=persisted_in(state_redis, prefix)).start()
    scores.until(lambda r: len(r) >= events // 10, 60, [first])
    second = start_worker(**env)
    second.wait_ready()
    feed_until_scoring(stream, second, up_to=2 * events // 3, alive=[first, second])
    stream.allow(2 * events // 3)
    scores.until(lambda r: len(r) >= events // 2, 60, [first, second])
    by_first = metric(first.metrics(), "vitalwatch_events_total", outcome="scored")
    by_second_before = metric(second.metrics(), "vitalwatch_events_total", outcome="scored")
    assert first.stop() == 0, first.log_tail()
    removed_at = len({r["event_id"] for r in scores.poll()})
    assert removed_at < observations, "the last third is held back until the worker is removed"
    stream.allow(events)
    coordinates = stream.join(timeout_s=events / per_second + 60)

    expected = reference_run(stream_events, coordinates, redis_url, f"ref-{unique}:state:")
    discharged = sum(s.discharged for s in expected.states.values())
    assert discharged, "the stream ends stays"
    records = scores.until(all_scored(expected.risks), 90, [second])
    time.sleep(1.0)
    records = scores.poll()
    wrong = score_differences(records, expected.risks)
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).until(
        lambda r: {a["alert_id"] for a in r} >= expected.alerts, 30, [second])}
    assert alerts == expected.alerts
    problems = wait_for_states(state_redis, prefix, expected)
    assert not problems, f"{len(problems)} state differences, e.g. {problems[:5]}"
    if shadow is not None:
        shadowed = reference_run(stream_events, coordinates, redis_url, f"ref-{unique}:shadow:state:", shadow)
        shadow_records = read_output(f"shadow-{unique}").until(all_scored(shadowed.risks), 30, [second])
        wrong = score_differences(shadow_records, shadowed.risks)
        assert not wrong, f"{len(wrong)} shadow scores differ from its uninterrupted run: {wrong[:5]}"
        problems = wait_for_states(state_redis, f"test-{unique}:shadow:state:", shadowed, checkpoint=shadow)
        assert not problems, f"{len(problems)} shadow state differences, e.g. {problems[:5]}"
    by_second = metric(second.metrics(), "vitalwatch_events_total", outcome="scored")
    print(
        f"\n{events} events, {len(expected.states)} patients ({discharged} discharged) on 4 partitions: A scored "
        f"{by_first:.0f} before B had {by_second_before:.0f}; A removed at {removed_at} scores; B scored "
        f"{by_second:.0f} in all; {len(records)} records ({len(records) - observations} re-published), {len(alerts)} alerts; "
        f"{time.monotonic() - started:.1f} s"
    )


@pytest.mark.timeout(150)
def test_worker_added_and_removed_mid_stream_moves_patients_with_their_state(
    start_worker, producer, broker, read_output, redis_url, unique, topics
) -> None:
    rebalance_run(start_worker, producer, broker, read_output, redis_url, unique, topics,
                  events=1_500, per_second=100, seed=31)


@pytest.mark.faults
@pytest.mark.timeout(150)
def test_a_shadow_models_patients_move_with_the_live_ones(
    start_worker, producer, broker, read_output, redis_url, unique, topics
) -> None:
    """The same run with a shadow model: with the soaks, since make test runs the shadow across a
    SIGKILL already (test_shadow_model) and the rebalance without it."""
    rebalance_run(start_worker, producer, broker, read_output, redis_url, unique, topics,
                  events=1_500, per_second=100, seed=33, shadow=SIMULATED_WARD_CHECKPOINT)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_rebalance_20000_events(start_worker, producer, broker, read_output, redis_url, unique, topics) -> None:
    rebalance_run(start_worker, producer, broker, read_output, redis_url, unique, topics,
                  events=20_000, per_second=400, seed=32)
