"""Live accuracy through a real worker: a simulated ward with its outcomes streams in (vitals,
encounters and outcomes.v1 records on their own topics), and

* ``scored-outcomes`` holds every score the labelling rule settles, once, with the label the
  offline rule (models.evaluation.outcome_labels.label_scores, one stay at a time, knowing the
  whole course) gives the same events; the scores still waiting for their horizon are exactly
  those the rule says (their patient's event time has not passed t + horizon + delay);
* the AUROC computed from the worker's /metrics as the dashboard's PromQL computes it (per-bin
  counters) is within 0.005 of the exact AUROC of the published records, NEWS2's equal, and
  the labelled alerts are the alerts the worker published on labelled events;
* ``vitalwatch validate`` on the topic prints the offline report of the same events (the
  cohort's vitals scored by the checkpoint's forward pass and labelled by the horizon rule,
  models.evaluation.labelled_report): the same cohort counts, and AUROC, AUPRC, ECE, NEWS2,
  the paired difference and calibration by decile with their bootstrap intervals within 1e-4
  (the risks agree to float precision; the operating points are the worker's published levels);
* a second worker joining mid-stream (a rebalance) and a kill -9 of the first change none of it:
  the distinct label ids and their labels are the same as in the undisturbed run (a redelivered
  batch may publish a record twice, with the same id and label).

Kafka keeps no order between topics, and a patient's outcome applied before the observations
that precede it in time would still label them right, but one applied after the patient's
clock had run hours past it would not (the feed's delay is bounded by
VITALWATCH_OUTCOME_DELAY_H; a replay at full speed is not). So the stream is sent with
``PacedStream.safe`` (fault_harness): a patient's events cross to another topic only once those
before are in Redis, as a site's feeds keep their outcomes within the configured delay.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.datasets.simulated_stay import SimulatedPatient
from models.datasets.simulator import SimEvent, interleave, simulate_cohort
from models.evaluation.labelled_report import labelled_report
from models.evaluation.metrics import auroc
from models.evaluation.outcome_labels import EXCLUDED, POSITIVE, label_scores
from schemas.decode import decode
from tests.integration.fault_harness import PacedStream, persisted_in
from tests.labelled_records import vitals_labelled_scores
from worker.cli import main
from worker.operations.live_accuracy import RISK_BINS, auroc_from_bins
from worker.tools.embedded import EmbeddedBroker, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

HORIZON_H, DELAY_H = 6.0, 1.0  # the shipped checkpoint's horizon; the delay the workers are given


def ward(patients: int, seed: int) -> list[SimulatedPatient]:
    """A ward admitted within 12 h, two in five deteriorating."""
    return simulate_cohort(patients, seed=seed, deteriorating_fraction=0.4, admission_window_hours=12)


def ward_with_outcomes(cohort: list[SimulatedPatient]) -> list[SimEvent]:
    """The ward's admissions, vitals, each clinical event as an outcomes.v1 record, and the
    discharge or ICU transfer that ends each stay."""
    return [e for _, e in interleave(cohort, with_encounters=True, with_outcomes=True) if e.topic != "labs"]


def flat(value: Any, path: str = "") -> dict[str, Any]:
    """A nested report as {path: leaf}, to compare two reports figure by figure."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}[{i}]").items()}
    return {path: value}


def offline(events: list[SimEvent]) -> tuple[dict[str, bool], set[str]]:
    """The offline rule on the same events: event_id -> label of every score it labels, and the
    scores a live worker still holds at the end (no discharge, horizon + delay not yet passed)."""
    stays: dict[str, dict[str, Any]] = defaultdict(lambda: {"scores": [], "outcomes": [], "kinds": [], "alive": None, "clock": -1.0})
    for event in events:
        (item,) = decode(event.topic, orjson.dumps(event.payload))
        stay = stays[item.patient_id]
        stay["clock"] = max(stay["clock"], event.observed_ts)
        if event.topic == "vitals":
            stay["scores"].append((item.event_id, item.observed_ts))
        elif event.topic == "outcomes":
            stay["outcomes"].append(item.occurred_ts)
            stay["kinds"].append(item.kind)
        elif item.kind == "discharge" and item.disposition == "died":
            stay["outcomes"].append(item.occurred_ts)
            stay["kinds"].append("death")
        elif item.kind == "discharge":
            stay["alive"] = item.occurred_ts
        elif item.kind == "transfer" and item.unit == "icu":  # the simulated ward admits to a ward
            stay["outcomes"].append(item.occurred_ts)
            stay["kinds"].append("icu_transfer")
    labels: dict[str, bool] = {}
    pending: set[str] = set()
    for stay in stays.values():
        ids, times = [i for i, _ in stay["scores"]], [t for _, t in stay["scores"]]
        got = label_scores(times, stay["outcomes"], stay["kinds"], HORIZON_H, stay["alive"])
        ended = stay["alive"] is not None or "death" in stay["kinds"]
        for event_id, ts, label in zip(ids, times, got.label.tolist()):
            if label == EXCLUDED:
                continue
            if label != POSITIVE and not ended and stay["clock"] <= ts + (HORIZON_H + DELAY_H) * 3600:
                pending.add(event_id)
                continue
            labels[event_id] = label == POSITIVE
    return labels, pending


def counters(text: str, name: str, key: str, role: str = "live") -> dict[str, float]:
    """One labelled counter family of a scrape, summed per ``key`` label value."""
    out: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("role") == role:
                out[sample.labels[key]] += sample.value
    return out


def promql_auroc(text: str, negatives: str, ranked: str, key: str, bins: list[str]) -> float:
    """What the dashboard's AUROC query computes, over one scrape."""
    neg, pos = counters(text, negatives, key), counters(text, ranked, key)
    totals = counters(text, "vitalwatch_labelled_scores_total", "label")
    return auroc_from_bins(
        np.array([neg.get(b, 0.0) for b in bins]), np.array([pos.get(b, 0.0) for b in bins]),
        totals.get("negative", 0.0), totals.get("positive", 0.0),
    )


def labelled(records: list[dict[str, Any]]) -> dict[str, tuple[bool, str]]:
    """label_id -> (label, event_id), checking that every copy of a record agrees."""
    seen: dict[str, tuple[bool, str]] = {}
    for r in records:
        value = (r["label"], r["event_id"])
        assert seen.setdefault(r["label_id"], value) == value, f"two labels for one score: {r}"
    return seen


def four_partition_topics(broker: EmbeddedBroker, unique: str) -> dict[str, str]:
    inputs = {name: f"{name}4-{unique}" for name in ("vitals", "encounters", "outcomes")}
    create_topics(broker.bootstrap, inputs.values(), partitions=4)
    return inputs


def test_a_worker_labels_each_score_once_and_its_metrics_give_the_exact_auroc(
    start_worker, producer, read_output, redis_url, unique, topics, broker, tmp_path, monkeypatch
) -> None:
    started = time.monotonic()
    cohort = ward(30, seed=1515)
    events = ward_with_outcomes(cohort)
    expected, pending = offline(events)
    assert sum(expected.values()) >= 20 and len(expected) - sum(expected.values()) >= 100, "both labels, a ward's mix"
    worker = start_worker(VITALWATCH_OUTCOME_DELAY_H=str(DELAY_H))
    worker.wait_ready()
    stream = PacedStream(producer, topics, events, per_second=400, safe=persisted_in(redis_url, f"test-{unique}:state:")).start()
    stream.join(timeout_s=90)

    reader = read_output(topics["scored_outcomes"])
    reader.until(lambda r: len({x["label_id"] for x in r}) >= len(expected), 60, [worker])
    time.sleep(1.0)  # a late duplicate or a wrong extra record would have arrived by now
    records = reader.poll()
    got = labelled(records)
    assert len(records) == len(got), "each score published once"
    assert {event_id: label for label, event_id in got.values()} == expected
    assert not pending & {event_id for _, event_id in got.values()}
    assert all(r["horizon_h"] == HORIZON_H and r["role"] == "live" for r in records)
    wanted = {r["event_id"] for r in records}
    published = {s["event_id"]: s for s in read_output(topics["risk_scores"]).until(
        lambda scores: wanted <= {s["event_id"] for s in scores}, 30, [worker])}
    for r in records:  # the score as risk-scores published it, level and NEWS2 included
        score = published[r["event_id"]]
        assert (r["risk"], r["level"], r["news2"], r["observed_at"]) == (
            pytest.approx(score["risk"], rel=1e-6), score["level"], score["news2"], score["observed_at"])
    assert {r["outcome_kind"] for r in records if r["label"]} <= {"sepsis_onset", "rapid_response", "icu_transfer", "death"}

    text = worker.metrics()
    label = np.array([r["label"] for r in records], dtype=int)
    exact = auroc(label, np.array([r["risk"] for r in records]))
    from_metrics = promql_auroc(
        text, "vitalwatch_labelled_negatives_total", "vitalwatch_labelled_positives_ranked_total", "bin",
        [f"{b:03d}" for b in range(RISK_BINS)],
    )
    assert abs(from_metrics - exact) < 0.005, (from_metrics, exact)
    news2 = promql_auroc(
        text, "vitalwatch_labelled_news2_negatives_total", "vitalwatch_labelled_news2_positives_ranked_total", "news2",
        [str(n) for n in range(21)],
    )
    assert news2 == pytest.approx(auroc(label, np.array([r["news2"] for r in records])), abs=1e-9)

    alerts = read_output(topics["alerts"]).until(lambda r: True, 5, [worker])
    raised = {a["triggered_by"] for a in alerts if ("none", "medium", "high").index(a["level"]) > ("none", "medium", "high").index(a["previous_level"])}
    by_label = counters(text, "vitalwatch_labelled_alerts_total", "label")
    assert by_label.get("positive", 0) == sum(r["label"] and r["event_id"] in raised for r in records)
    assert by_label.get("negative", 0) == sum(not r["label"] and r["event_id"] in raised for r in records)
    # vitalwatch validate on the topic = the labelled report of the same events scored and labelled offline.
    monkeypatch.setenv("VITALWATCH_TOPIC_SCORED_OUTCOMES", topics["scored_outcomes"])
    assert main(["validate", "--bootstrap", broker.bootstrap, "--replicates", "200", "--json", str(tmp_path / "v.json")]) == 0
    (online,) = orjson.loads((tmp_path / "v.json").read_bytes())["models"]
    scores = vitals_labelled_scores(load_checkpoint(DEFAULT_CHECKPOINT), cohort).only(r["event_id"] for r in records)
    offline_report = labelled_report(scores, replicates=200)
    assert online["report"]["cohort"] == offline_report["cohort"]
    for part in ("scorers", "differences", "calibration"):  # the published levels (operating points) are the worker's own
        got, want = flat(online["report"][part]), flat(offline_report[part])
        assert got.keys() == want.keys()
        assert [k for k in got if got[k] != pytest.approx(want[k], abs=1e-4)] == []
    print(
        f"\n{len(events)} events, {len(records)} labelled ({int(label.sum())} positive), {len(pending)} pending; "
        f"AUROC exact {exact:.4f}, from /metrics {from_metrics:.4f}; NEWS2 {news2:.4f}; {time.monotonic() - started:.1f} s"
    )


def test_a_rebalance_and_a_kill_change_no_label(
    start_worker, producer, broker, read_output, redis_url, unique, topics
) -> None:
    started = time.monotonic()
    events = ward_with_outcomes(ward(24, seed=2727))
    expected, _ = offline(events)
    inputs = four_partition_topics(broker, unique)
    env = {f"VITALWATCH_TOPIC_{name.upper()}": topic for name, topic in inputs.items()} | {"VITALWATCH_OUTCOME_DELAY_H": str(DELAY_H)}
    first = start_worker(**env)
    first.wait_ready()
    third = len(events) // 3
    stream = PacedStream(producer, {**topics, **inputs}, events, per_second=150, allowed=third,
                         safe=persisted_in(redis_url, f"test-{unique}:state:")).start()
    scores = read_output(topics["risk_scores"])
    scores.until(lambda r: len(r) >= third // 3, 60, [first])
    second = start_worker(**env)  # joins: the group rebalances mid-stream
    second.wait_ready()
    stream.allow(2 * third)
    scores.until(lambda r: len(r) >= third, 60, [first, second])
    first.kill()  # kill -9 mid-batch: its uncommitted batches are redelivered to the second
    stream.allow(len(events))
    stream.join(timeout_s=90)

    reader = read_output(topics["scored_outcomes"])
    reader.until(lambda r: len({x["label_id"] for x in r}) >= len(expected), 90, [second])
    time.sleep(1.0)
    got = labelled(reader.poll())
    assert {event_id: label for label, event_id in got.values()} == expected
    print(
        f"\n{len(events)} events on 4 partitions, a worker joined and the first killed: {len(got)} scores labelled "
        f"({sum(label for label, _ in got.values())} positive), {len(reader.records) - len(got)} records re-published; "
        f"{time.monotonic() - started:.1f} s"
    )
