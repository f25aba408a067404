"""A shadow model beside the live one, on a real broker and Redis, across a SIGKILL.

The worker runs the shipped model live and the simulator-trained one (models/checkpoints/
simulated-ward, another version and a 12 h horizon against the live 6 h) as its shadow. The
proof is numerical, as in the fault tests: every live score, alert id, label and stored state
equals an uninterrupted pass of the live model alone (so the shadow changes nothing of what the
ward sees), and every shadow score, label and stored state equals an uninterrupted pass of the
shadow model alone, under its own Redis prefix (so the shadow's state is its own, and survives
a crash exactly as the live state does). The shadow never alerts; its labelled scores go to
scored-outcomes under role "shadow", its own version and horizon. Then the site switches: a
worker with the shadow's checkpoint live scores the rest of the stream exactly as the shadow
would have, every patient's LSTM state taken warm from the shadow's keys.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, SIMULATED_WARD_CHECKPOINT, load_checkpoint
from models.datasets.events import SimEvent
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


def outcomes_after(events: list[SimEvent], patients: int) -> list[SimEvent]:
    """A rapid-response call an hour after the last vitals of each of the first ``patients``
    patients of ``events``: the scores within each model's horizon before it become positives."""
    last: dict[str, float] = {}
    for event in events:
        last[event.payload["patient_id"]] = event.observed_ts
    chosen = list(last)[:patients]
    return [
        SimEvent("outcomes", {
            "event_id": f"rrt-{pid}", "patient_id": pid, "kind": "rapid_response", "source": "clinical_record",
            "occurred_at": datetime.fromtimestamp(last[pid] + 3600, timezone.utc).isoformat(),
        }, last[pid] + 3600)
        for pid in chosen
    ]


def labels_of(records: list[dict[str, Any]], role: str) -> dict[str, tuple[bool, str]]:
    """event_id -> (label, resolution) of one role's labelled scores (duplicates by label_id agree)."""
    mine = [r for r in records if r["role"] == role]
    assert len({r["label_id"] for r in mine}) == len({r["event_id"] for r in mine})
    return {r["event_id"]: (r["label"], r["resolution"]) for r in mine}


def test_a_shadow_scores_and_labels_every_event_apart_from_the_live_model_survives_a_kill_and_switches_warm(
    start_worker, producer, topics, read_output, broker, redis_url, unique
) -> None:
    names = {
        "shadow": f"risk-scores-shadow-{unique}", "outcomes": f"outcomes-{unique}", "labelled": f"scored-outcomes-{unique}",
    }
    create_topics(broker.bootstrap, names.values(), partitions=2)
    env = {
        "VITALWATCH_SHADOW_CHECKPOINT": str(SIMULATED_WARD_CHECKPOINT),
        "VITALWATCH_TOPIC_RISK_SCORES_SHADOW": names["shadow"],
        "VITALWATCH_TOPIC_OUTCOMES": names["outcomes"],
        "VITALWATCH_TOPIC_SCORED_OUTCOMES": names["labelled"],
        "VITALWATCH_OUTCOME_DELAY_H": "0",  # the reference engine's: negatives labelled as soon as the horizon passed
    }
    inputs = {**topics, "outcomes": names["outcomes"]}
    stream = vitals_events(240, seed=23)
    vitals, after_switch = stream[:200], stream[200:]
    outcomes = outcomes_after(vitals, patients=4)
    half = len(vitals) // 2
    live, shadow = read_output(topics["risk_scores"]), read_output(names["shadow"])

    first = start_worker(**env)
    coordinates = produce_now(producer, inputs, vitals[:half])
    first_half = [e.payload["event_id"] for e in vitals[:half]]
    live.until(all_scored(first_half), 60, [first])
    shadow.until(all_scored(first_half), 30, [first])
    first.kill()
    coordinates.update(produce_now(producer, inputs, vitals[half:]))
    second = start_worker(**env)
    every = [e.payload["event_id"] for e in vitals]
    live.until(all_scored(every), 60, [second])
    shadow.until(all_scored(every), 30, [second])
    # The outcomes follow every score (another topic: sent once the vitals are applied, as the reference applies them).
    coordinates.update(produce_now(producer, inputs, outcomes))

    events = vitals + outcomes
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

    # Each model's scores labelled as its own uninterrupted pass labels them, under its role.
    expected = {"live": live_reference.labels, "shadow": shadow_reference.labels}
    assert sum(positive for positive, _ in expected["shadow"].values()) > sum(positive for positive, _ in expected["live"].values()) > 0
    labelled = read_output(names["labelled"]).until(
        lambda r: all(labels_of(r, role).keys() >= want.keys() for role, want in expected.items()), 30, [second],
    )
    assert {role: labels_of(labelled, role) for role in expected} == expected
    assert {(r["role"], r["model_version"], r["horizon_h"]) for r in labelled} == {
        ("live", live_version, 6.0), ("shadow", shadow_version, 12.0),
    }

    # Each model's state under its own prefix, equal to its uninterrupted pass.
    prefix = f"test-{unique}:"
    assert wait_for_states(redis_url, f"{prefix}state:", live_reference) == []
    assert wait_for_states(redis_url, f"{prefix}shadow:state:", shadow_reference, checkpoint=SIMULATED_WARD_CHECKPOINT) == []

    text = second.metrics()
    assert metric(text, "vitalwatch_model_info", role="shadow", version=shadow_version) == 1
    assert metric(text, "vitalwatch_model_info", role="live", version=live_version) == 1
    assert metric(text, "vitalwatch_shadow_inference_seconds_count") >= 1
    # Live accuracy counts the shadow's labels under its own version and role (the outcomes came after the restart).
    for role, version in (("live", live_version), ("shadow", shadow_version)):
        assert metric(text, "vitalwatch_labelled_scores_total", role=role, model_version=version, label="positive") > 0

    # The switch, by a restart with the shadow's checkpoint live: the rest of the stream is scored
    # as the shadow would have scored it, each patient's LSTM state warm from the shadow's keys.
    second.stop()
    switched = start_worker(VITALWATCH_CHECKPOINT=str(SIMULATED_WARD_CHECKPOINT), **{
        k: v for k, v in env.items() if k != "VITALWATCH_SHADOW_CHECKPOINT"
    })
    coordinates.update(produce_now(producer, inputs, after_switch))
    live.until(all_scored([e.payload["event_id"] for e in after_switch]), 60, [switched])
    warm_reference = reference_run(
        events + after_switch, coordinates, redis_url, f"ref-warm-{unique}:", SIMULATED_WARD_CHECKPOINT,
    )
    now_live = [r for r in live.poll() if r["model_version"] == shadow_version]
    assert {r["event_id"] for r in now_live} == {e.payload["event_id"] for e in after_switch}
    assert score_differences(now_live, warm_reference.risks) == []
