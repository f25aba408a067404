"""SIGKILL the worker mid-stream, start it again: every patient resumes from Redis.

The proof is numerical. An LSTM's score depends on the patient's whole history, so a worker
that lost state, skipped an event or applied one twice scores the following events
differently. Every record on risk-scores — before the kill, re-published after it, and after
the restart — must equal the score of an uninterrupted pass over the same events (the same
engine, in this process, no Kafka), per event_id within 1e-5.

Only the vitals topic is used: Kafka orders a patient's events within one partition, not
across topics, so a lab's place among a patient's vitals may legitimately differ between two
runs (the engine applies events in arrival order), and exact replay equality is a per-topic
property.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.datasets.simulator import SimEvent, interleave, simulate_cohort
from schemas.decode import decode
from tests.integration.fault_harness import PacedStream
from worker.scoring.alert_policy import AlertPolicy
from worker.scoring.engine import InputEvent, RiskEngine
from worker.state.store import RedisStateStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOLERANCE = 1e-5


async def _reference(events: list[SimEvent], redis_url: str, prefix: str) -> tuple[dict[str, float], set[str]]:
    """Risk per event_id and the alert ids of one uninterrupted pass, one event per batch."""
    import orjson

    model = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    store = RedisStateStore(redis_url, prefix=prefix, ttl_s=600)
    engine = RiskEngine(model, store, capacity=1000, policy=AlertPolicy.from_manifest(model.manifest), device="cpu")
    risks: dict[str, float] = {}
    alerts: set[str] = set()
    try:
        for offset, event in enumerate(events):
            (observation,) = decode("vitals", orjson.dumps(event.payload))
            outcome = await engine.score([InputEvent(observation, "vitals", 0, offset, None)])
            await engine.persist()
            for scored in outcome.scored:
                risks[scored.event.event_id] = scored.risk
                if scored.alert is not None:
                    alerts.add(scored.alert.alert_id)
    finally:
        await store.close()
    return risks, alerts


def test_sigkill_mid_stream_then_restart_resumes_every_patient_from_redis(
    start_worker, producer, topics, read_output, redis_url, unique
) -> None:
    started = time.monotonic()
    cohort = simulate_cohort(8, seed=11, deteriorating_fraction=0.5)
    events = [event for _, event in interleave(cohort) if event.topic == "vitals"]
    expected, expected_alerts = asyncio.run(_reference(events, redis_url, f"ref-{unique}:"))
    assert len(expected) == len(events)

    first = start_worker()
    first.wait_ready()
    # The last 40 % is held back until after the kill, so the kill lands mid-stream however
    # long the worker takes to join its group (a fixed-rate stream can be over by then).
    feeding = PacedStream(producer, topics, events, per_second=200, allowed=len(events) * 6 // 10).start()
    reader = read_output(topics["risk_scores"])
    reader.until(lambda r: len(r) >= len(events) * 0.4, 60, [first])
    first.kill()
    scored_before_kill = {r["event_id"] for r in reader.poll()}
    feeding.allow(len(events))
    feeding.join(timeout_s=60)
    assert 0 < len(scored_before_kill) < len(events), "the kill must land mid-stream"

    second = start_worker()
    reader.until(lambda r: {x["event_id"] for x in r} >= set(expected), 60, [second])
    time.sleep(1.0)  # let any re-published duplicates arrive too
    records = reader.poll()

    wrong = [
        (r["event_id"], r["risk"], expected[r["event_id"]])
        for r in records
        if abs(r["risk"] - expected[r["event_id"]]) > TOLERANCE
    ]
    assert not wrong, f"{len(wrong)} of {len(records)} scores differ from the uninterrupted run: {wrong[:5]}"
    alerts = {a["alert_id"] for a in read_output(topics["alerts"]).poll()}
    assert alerts == expected_alerts
    duplicates = [line for line in second.metrics().splitlines() if 'outcome="duplicate"' in line]
    print(
        f"{len(events)} events, {len(scored_before_kill)} scored before SIGKILL, {len(records)} records, "
        f"redelivered-and-skipped: {duplicates}, {time.monotonic() - started:.1f} s"
    )
