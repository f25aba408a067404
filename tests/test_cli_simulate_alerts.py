"""`vitalwatch simulate` and `vitalwatch alerts` against the real Tansu broker.

The simulator must deliver every event of its cohort (observations and encounters), keyed by
patient, stamped so that the worker's own validation (future-timestamp check included) accepts
every one of them; the alerts follower must print valid alerts readably and step over records
that are not alerts.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from models.datasets.encounters import time_field
from models.datasets.events import SimEvent
from models.datasets.profiles import PROFILES
from models.datasets.simulator import simulate_cohort
from schemas.decode import decode
from tests.topic_records import read_all
from worker.cli import main
from worker.tools.commands.simulate import DEFAULT_PROFILE, register
from worker.tools.feed import STAMP_MARGIN_S, Timeline, events_to_send, first_observation_ts, shift_stamp, shifted_payload
from worker.tools.alert_text import format_alert, read_alert
from worker.tools.embedded import EmbeddedBroker

INPUTS = ("vitals", "labs", "encounters", "outcomes")


@pytest.fixture
def topic_env(monkeypatch: pytest.MonkeyPatch, topics: dict[str, str]) -> dict[str, str]:
    for role, name in topics.items():
        monkeypatch.setenv(f"VITALWATCH_TOPIC_{role.upper()}", name)
    return topics


@pytest.mark.integration
@pytest.mark.parametrize("profile", PROFILES)
def test_simulate_publishes_every_event_keyed_and_acceptable_to_the_worker(
    broker: EmbeddedBroker, topic_env: dict[str, str], profile: str
) -> None:
    cohort = simulate_cohort(6, seed=11, admission_window_hours=24, profile=profile)
    assert main(["simulate", "--patients", "6", "--seed", "11", "--admission-window-hours", "24", "--profile", profile,
                 "--as-fast-as-possible", "--bootstrap", broker.bootstrap]) == 0
    now = time.time()

    records = read_all(broker.bootstrap, [topic_env[kind] for kind in INPUTS])
    expected = {e.payload["event_id"]: p.patient_id for p in cohort for e in p.feed(outcomes=True)}
    assert len(records) == len(expected)
    kinds = {topic_env[kind]: kind for kind in INPUTS}
    assert {kinds[r.topic] for r in records} == set(INPUTS)
    stamps = []
    for record in records:
        [item] = decode(kinds[record.topic], record.value, now=now)  # raises on a future stamp
        assert record.key.decode() == item.patient_id == expected[item.event_id]
        stamps.append(item.occurred_ts if kinds[record.topic] in ("encounters", "outcomes") else item.observed_ts)
    # As fast as possible: the whole stay lies in the past, the newest a few seconds ago.
    assert now - 120 < max(stamps) <= now - STAMP_MARGIN_S + 1


def test_simulate_feeds_the_default_profile_unless_told_and_refuses_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["simulate"]).profile == DEFAULT_PROFILE in PROFILES
    assert parser.parse_args(["simulate", "--profile", "icu"]).deteriorating_fraction is None  # the profile's share
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--profile", "nicu"])
    assert "invalid choice: 'nicu'" in capsys.readouterr().err


@pytest.mark.integration
def test_simulate_paced_never_stamps_ahead_of_the_send_time(broker: EmbeddedBroker, topic_env: dict[str, str]) -> None:
    started = time.monotonic()
    assert main(["simulate", "--patients", "8", "--seed", "3", "--admission-window-hours", "0",
                 "--speed", "36000", "--duration", "2", "--bootstrap", broker.bootstrap]) == 0
    assert time.monotonic() - started >= 1.5  # paced, not dumped

    records = read_all(broker.bootstrap, [topic_env[kind] for kind in INPUTS])
    assert len(records) > 10 and any(r.topic == topic_env["encounters"] for r in records)
    for record in records:
        payload = orjson.loads(record.value)
        stamped = datetime.fromisoformat(payload[time_field(payload)]).timestamp()
        assert stamped <= record.timestamp / 1000 - STAMP_MARGIN_S + 1


def test_timeline_keeps_simulated_spacing_and_pins_the_right_end() -> None:
    fast = Timeline.plan(sim_start=1000.0, sim_end=1000.0 + 36_000, speed=3600, wall_start=0.0, now=50_000.0)
    # 10 simulated hours in 10 wall seconds: the last event is stamped at its send time minus the margin.
    assert 1000 + 36_000 + fast.shift_s == pytest.approx(50_000 + 10 - STAMP_MARGIN_S, abs=1)
    assert fast.due(1000.0 + 3600) == pytest.approx(1.0)
    slow = Timeline.plan(sim_start=1000.0, sim_end=2000.0, speed=0.5, wall_start=0.0, now=50_000.0)
    assert 1000 + slow.shift_s == pytest.approx(50_000 - STAMP_MARGIN_S, abs=1)


def test_shift_stamp_keeps_the_offset_of_the_source() -> None:
    assert shift_stamp("2026-01-05T00:42:01Z", 3600) == "2026-01-05T01:42:01Z"
    assert shift_stamp("2026-01-05T01:42:01+01:00", -60) == "2026-01-05T01:41:01+01:00"


T = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
ADMITTED = SimEvent("encounters", {"kind": "admission", "patient_id": "b", "admitted_at": "2026-01-04T14:00:00Z"}, T - 10 * 3600)
SEEN = SimEvent("vitals", {"patient_id": "b", "observed_at": "2026-01-05T00:00:00Z", "heart_rate": 80}, T)
LATER = SimEvent("vitals", {"patient_id": "b", "observed_at": "2026-01-05T02:00:00Z", "heart_rate": 82}, T + 2 * 3600)
LEFT = SimEvent("encounters", {"kind": "discharge", "patient_id": "b", "discharged_at": "2026-01-05T03:00:00Z"}, T + 3 * 3600)


def test_each_kind_of_payload_is_moved_by_its_own_time_field() -> None:
    assert orjson.loads(shifted_payload(ADMITTED, 60))["admitted_at"] == "2026-01-04T14:01:00Z"
    assert orjson.loads(shifted_payload(LEFT, -60))["discharged_at"] == "2026-01-05T02:59:00Z"
    moved = orjson.loads(shifted_payload(SEEN, 3600))
    assert moved == {"patient_id": "b", "observed_at": "2026-01-05T01:00:00Z", "heart_rate": 80}


def test_pacing_starts_at_the_first_observation_not_at_an_earlier_admission() -> None:
    events = [ADMITTED, SEEN, LATER, LEFT]
    assert first_observation_ts(events) == T and first_observation_ts([ADMITTED]) == ADMITTED.observed_ts
    assert events_to_send(events, speed=3600, duration_s=2) == [ADMITTED, SEEN, LATER]  # 2 h after the first observation
    timeline = Timeline.plan(first_observation_ts(events), LEFT.observed_ts, speed=3600, wall_start=0.0, now=T)
    assert timeline.due(ADMITTED.observed_ts) < 0 == timeline.due(SEEN.observed_ts)  # the admission goes at once


def _alert(patient_id: str, level: str, previous: str) -> dict[str, Any]:
    return {
        "alert_id": f"a-{patient_id}-{level}", "patient_id": patient_id, "level": level, "previous_level": previous,
        "risk": 0.834,
        "news2": {"total": 7, "components": {"resp_rate": 3, "spo2": 2, "on_oxygen": 0, "sbp": 0, "heart_rate": 2,
                                               "consciousness": 0, "temperature": 0}},
        "reasons": [{"variable": "lactate", "value": 4.1, "unit": "mmol/L", "contribution": 0.21},
                    {"variable": "resp_rate", "value": 27, "unit": "/min", "contribution": 0.12}],
        "triggered_by": f"{patient_id}-00042", "observed_at": "2026-11-22T10:15:00+01:00",
        "raised_at": "2026-11-22T09:15:02Z", "model_version": "test-1",
    }


def test_an_alert_news2_raised_shows_the_parameters_that_scored_and_their_points() -> None:
    record = _alert("bed-3", "high", "none") | {
        "risk": 0.02, "raised_by": "news2",
        "reasons": [{"variable": "resp_rate", "value": 27, "unit": "/min", "contribution": 3},
                    {"variable": "spo2", "value": 92, "unit": "%", "contribution": 2}],
    }
    line = format_alert(read_alert(orjson.dumps(record)))
    assert "risk 0.02  NEWS2 7" in line
    assert line.endswith("reasons: resp_rate 27 /min (NEWS2 +3); spo2 92 % (NEWS2 +2)")


@pytest.mark.integration
def test_alerts_prints_readable_lines_and_skips_malformed_records(
    broker: EmbeddedBroker, topic_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    topic = topic_env["alerts"]
    values = [orjson.dumps(_alert("bed-7", "high", "none")), b"not json {",
              orjson.dumps({"patient_id": "bed-9", "level": "high"}), orjson.dumps(_alert("bed-7", "none", "high"))]
    for value in values:
        producer.send(topic, key=b"bed-7", value=value, partition=0)
    producer.flush()
    producer.close()

    assert main(["alerts", "--from-beginning", "--max-records", "4", "--timeout", "30",
                 "--bootstrap", broker.bootstrap]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    raised, garbage, incomplete, resolved = lines
    assert raised.startswith(
        "2026-11-22 09:15:00Z  bed-7  none → HIGH  risk 0.83  NEWS2 7 (resp_rate 3, spo2 2, heart_rate 2)"
    )
    assert "reasons: lactate 4.1 mmol/L (+0.21); resp_rate 27 /min (+0.12)" in raised
    assert garbage.startswith(f"warning: skipped a malformed record at {topic}/0@1: ")
    assert incomplete.startswith(f"warning: skipped a malformed record at {topic}/0@2: ")
    assert "high → NONE" in resolved
