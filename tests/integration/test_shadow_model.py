"""A shadow model beside the live one, on a real broker and Redis, across a SIGKILL.

The worker runs the shipped model live and the simulator-trained one (models/checkpoints/
simulated-ward) as its shadow. The proof is numerical, as in the fault tests: every live score,
alert id and stored state equals an uninterrupted pass of the live model alone (so the shadow
changes nothing of what the ward sees), and every shadow score and stored shadow state equals
an uninterrupted pass of the shadow model alone, under its own Redis prefix (so the shadow's
state is its own, and survives a crash exactly as the live state does). The shadow never alerts.
"""

from __future__ import annotations

from collections import Counter

import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, SIMULATED_WARD_CHECKPOINT, load_checkpoint
from tests.integration.fault_harness import (
    all_scored,
    metric,
    produce_now,
    reference_run,
    score_differences,
    vitals_events,
    wait_for_states,
)
from worker.tools.embedded import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_shadow_scores_every_event_apart_from_the_live_model_and_survives_a_kill(
    start_worker, producer, topics, read_output, broker, redis_url, unique
) -> None:
    shadow_topic = f"risk-scores-shadow-{unique}"
    create_topics(broker.bootstrap, [shadow_topic], partitions=2)
    shadow_env = {
        "VITALWATCH_SHADOW_CHECKPOINT": str(SIMULATED_WARD_CHECKPOINT),
        "VITALWATCH_TOPIC_RISK_SCORES_SHADOW": shadow_topic,
    }
    events = vitals_events(240, seed=23)
    half = len(events) // 2
    live, shadow = read_output(topics["risk_scores"]), read_output(shadow_topic)

    first = start_worker(**shadow_env)
    coordinates = produce_now(producer, topics, events[:half])
    first_half = [e.payload["event_id"] for e in events[:half]]
    live.until(all_scored(first_half), 60, [first])
    shadow.until(all_scored(first_half), 30, [first])
    first.kill()
    coordinates.update(produce_now(producer, topics, events[half:]))
    second = start_worker(**shadow_env)
    every = [e.payload["event_id"] for e in events]
    live.until(all_scored(every), 60, [second])
    shadow.until(all_scored(every), 30, [second])

    live_reference = reference_run(events, coordinates, redis_url, f"ref-live-{unique}:")
    shadow_reference = reference_run(events, coordinates, redis_url, f"ref-shadow-{unique}:", SIMULATED_WARD_CHECKPOINT)
    live_version, shadow_version = (
        str(load_checkpoint(checkpoint, "cpu").manifest["version"]) for checkpoint in (DEFAULT_CHECKPOINT, SIMULATED_WARD_CHECKPOINT)
    )
    assert live_version != shadow_version

    # The live model's outputs are those of a worker without a shadow; the shadow's, its own model's.
    assert score_differences(live.poll(), live_reference.risks) == []
    assert score_differences(shadow.poll(), shadow_reference.risks) == []
    assert {r["model_version"] for r in live.records} == {live_version}
    assert {r["model_version"] for r in shadow.records} == {shadow_version}
    # One shadow score per event (a redelivery after the kill is skipped by the shadow's own watermark).
    assert max(Counter(r["event_id"] for r in shadow.records).values()) == 1
    # The shadow alerts nobody: the alerts are exactly the live model's.
    alerts = read_output(topics["alerts"]).poll()
    assert {a["alert_id"] for a in alerts} == live_reference.alerts
    assert {a["model_version"] for a in alerts} <= {live_version}

    # Each model's state under its own prefix, equal to its uninterrupted pass.
    prefix = f"test-{unique}:"
    assert wait_for_states(redis_url, f"{prefix}state:", live_reference) == []
    assert wait_for_states(redis_url, f"{prefix}shadow:state:", shadow_reference, checkpoint=SIMULATED_WARD_CHECKPOINT) == []

    text = second.metrics()
    assert metric(text, "vitalwatch_model_info", role="shadow", version=shadow_version) == 1
    assert metric(text, "vitalwatch_model_info", role="live", version=live_version) == 1
    assert metric(text, "vitalwatch_shadow_inference_seconds_count") >= 1
