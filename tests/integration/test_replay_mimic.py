"""A real MIMIC-IV demo hospitalisation through `vitalwatch replay`, the real broker, a real
worker subprocess and Redis: every observation scored once, in the stay's own order, with the
NEWS2 a nurse would chart from the raw CLIF rows; its admission, transfer and discharge on the
encounters topic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.integration.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: An 18-hour stay ending in death: 31 observations (23 vitals sets, 8 lab results: blood gases
#: and coagulation from 04:26, before the ICU) with GCS and oxygen charted, and 3 encounters
#: (admitted 02:20 from the ED, to the ICU at 07:51, died 20:30); replayed in about five seconds.
HOSPITALIZATION = "24470193"
EVENTS = 31
ENCOUNTERS = 3
SPEED = 12_000

#: NEWS2 checked by hand from the demo's clif_vitals / clif_respiratory_support /
#: clif_patient_assessments rows (values carried forward within 24 h, as the worker does).
#: Oxygen is on from 08:00 (nasal cannula, 2 points); temperature 37.4 °C at 08:00 (0).
HAND_CHECKED_NEWS2 = {
    # HR 82 (0), SBP 134 (0), RR 14 (0), 37.4 °C (0), oxygen (2), GCS 15 -> A (0)
    "2137-10-09T08:00:00Z": 2,
    # HR 97 (1), SBP 158 (0), RR 23 (2), SpO2 99 from 09:03 (0), oxygen (2), A (0)
    "2137-10-09T11:00:00Z": 5,
    # HR 97 (1), SBP 148 (0), RR 25 (3), SpO2 95 (1), oxygen (2), A (0)
    "2137-10-09T12:00:00Z": 7,
    # HR 106 (1), SBP 132 (0), RR 22 (2), SpO2 96 (0), oxygen (2), GCS 3-5 -> U (3)
    "2137-10-09T15:00:00Z": 8,
    # only GCS 15 -> A charted; HR 101 (1), SBP 147, RR 16, SpO2 95 (1), oxygen (2) from 17:00
    "2137-10-09T17:10:00Z": 4,
}


def test_replayed_demo_stay_is_scored_in_order_with_hand_checked_news2(start_worker, worker_env, read_output, topics) -> None:
    started = time.monotonic()
    worker = start_worker()
    worker.wait_ready()
    replay = subprocess.run(
        [sys.executable, "-m", "worker.cli", "replay", "--dataset", "mimic-iv-demo",
         "--hospitalization-id", HOSPITALIZATION, "--speed", str(SPEED)],
        cwd=REPO, env={**os.environ, **worker_env}, capture_output=True, text=True, timeout=60,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"1 stays, {EVENTS + ENCOUNTERS} events" in replay.stdout

    reader = read_output(topics["risk_scores"])
    scores = reader.until(lambda r: len(r) >= EVENTS, 60, [worker])
    time.sleep(1.0)  # a duplicate would have arrived by now
    scores = reader.poll()
    assert len(scores) == EVENTS and len({s["event_id"] for s in scores}) == EVENTS
    assert {s["patient_id"] for s in scores} == {HOSPITALIZATION}

    # Event ids ("clif:<stay>:<topic>:<time>") carry the stay's own (MIMIC-shifted) time;
    # payloads carry the replay's clock.
    ids = [s["event_id"].split(":", 3) for s in scores]
    vitals = [(own_time, s) for (_, _, topic, own_time), s in zip(ids, scores) if topic == "vitals"]
    assert [t for t, _ in vitals] == sorted(t for t, _ in vitals), "vitals scored out of order"
    observed = [datetime.fromisoformat(s["observed_at"]) for _, s in vitals]
    assert observed == sorted(observed)
    gaps = {(b - a).total_seconds() for a, b in zip(observed, observed[1:])}
    assert 3 * 60 in gaps and 3600 in gaps, "the stay's real spacing is kept"

    news2 = {t: s["news2"] for t, s in vitals}
    assert {t: news2[t] for t in HAND_CHECKED_NEWS2} == HAND_CHECKED_NEWS2
    assert read_output(topics["dead_letters"]).poll() == []
    encounters = read_output(topics["encounters"]).until(lambda r: len(r) >= ENCOUNTERS, 10)
    assert [(e["kind"], e.get("unit"), e.get("disposition")) for e in encounters] == [
        ("admission", None, None), ("transfer", "icu", None), ("discharge", None, "died"),
    ]
    print(f"{EVENTS} real events replayed and scored in {time.monotonic() - started:.1f} s")
