"""`vitalwatch replay --dataset physionet2019` on the committed set-A fixtures (CC BY 4.0,
tests/fixtures/physionet2019) against the real broker: a stay is published whole — every
vitals, labs and encounters record the loader built, keyed by the stay id, in time order — and
a real worker scores every observation of the fixtures without a dead letter."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from models.datasets.encounters import time_field
from models.datasets.physionet import load_psv_stays
from schemas.decode import decode
from tests.topic_records import read_all
from worker.cli import main
from worker.tools.embedded import EmbeddedBroker
from worker.tools.feed import STAMP_MARGIN_S

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "physionet2019"
INPUTS = ("vitals", "labs", "encounters", "outcomes")
#: Becomes septic at ICULOS 9, hospital admission 33 h before the ICU: an admission, a transfer,
#: 17 hours of vital signs and the laboratory results between them.
STAY = "p001183"


@pytest.fixture
def topic_env(monkeypatch: pytest.MonkeyPatch, topics: dict[str, str]) -> dict[str, str]:
    for role, name in topics.items():
        monkeypatch.setenv(f"VITALWATCH_TOPIC_{role.upper()}", name)
    return topics


def test_replay_publishes_a_fixture_stay_whole_keyed_and_in_time_order(
    broker: EmbeddedBroker, topic_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    [stay] = load_psv_stays(FIXTURES, stay_ids=[STAY])
    code = main(["replay", "--dataset", "physionet2019", "--psv-dir", str(FIXTURES), "--stay-id", STAY,
                 "--as-fast-as-possible", "--bootstrap", broker.bootstrap])
    now = time.time()

    assert code == 0
    assert f"1 stays, {len(stay.events)} events" in capsys.readouterr().out
    records = read_all(broker.bootstrap, [topic_env[kind] for kind in INPUTS])
    kinds = {topic_env[kind]: kind for kind in INPUTS}
    assert len(records) == len(stay.events)
    assert {record.key.decode() for record in records} == {STAY}

    expected = {event.payload["event_id"]: event for event in stay.events}
    published = {}
    for record in records:
        payload = orjson.loads(record.value)
        decode(kinds[record.topic], record.value, now=now)  # the worker accepts it, stamp included
        event = expected[payload["event_id"]]
        assert kinds[record.topic] == event.topic
        published[payload["event_id"]] = (payload, record.timestamp)
    assert set(published) == set(expected)

    shifts = set()
    for event_id, event in expected.items():
        payload, _ = published[event_id]
        field = time_field(payload)
        shifts.add(datetime.fromisoformat(payload[field]).timestamp() - event.observed_ts)
        assert {k: v for k, v in payload.items() if k != field} == {k: v for k, v in event.payload.items() if k != field}
    [shift] = shifts  # one whole-second shift: every gap of the stay kept
    assert shift == int(shift) and stay.events[-1].observed_ts + shift <= now - STAMP_MARGIN_S + 1

    sent_at = [published[event.payload["event_id"]][1] for event in stay.events]
    assert sent_at == sorted(sent_at), "published in the loader's time order"
    assert [event.payload.get("kind") for event in stay.events[:2]] == ["admission", "transfer"]


def test_a_worker_scores_every_observation_of_the_fixtures(start_worker, worker_env, read_output, topic_env) -> None:
    stays = load_psv_stays(FIXTURES)
    observations = sum(event.topic in ("vitals", "labs") for stay in stays for event in stay.events)
    worker = start_worker()
    worker.wait_ready()

    assert main(["replay", "--dataset", "physionet2019", "--psv-dir", str(FIXTURES), "--stays", "5",
                 "--as-fast-as-possible", "--bootstrap", worker_env["VITALWATCH_KAFKA_BOOTSTRAP"]]) == 0

    reader = read_output(topic_env["risk_scores"])
    scores = reader.until(lambda r: len(r) >= observations, 60, [worker])
    time.sleep(1.0)  # a duplicate would have arrived by now
    assert len(reader.poll()) == observations == len({s["event_id"] for s in scores})
    assert {s["patient_id"] for s in scores} == {stay.stay_id for stay in stays}
    assert read_output(topic_env["dead_letters"]).poll() == []
