"""The `vitalwatch dev` board: folding output records, latency from the worker's histogram, rendering."""

from __future__ import annotations

import io

import orjson
import pytest
from rich.console import Console

from worker.tools.live_view import (
    BoardFeed,
    Latency,
    PlainDisplay,
    WardBoard,
    histogram_quantile,
    latency_from_exposition,
    render,
    summary_line,
)
from worker.operations.metrics import Metrics


def _score(patient: str, risk: float, level: str, news2: int) -> bytes:
    return orjson.dumps({"event_id": f"{patient}-1", "patient_id": patient, "observed_at": "2026-11-22T10:00:00Z",
                         "scored_at": "2026-11-22T10:00:01Z", "risk": risk, "news2": news2, "level": level,
                         "model_version": "m1"})


def _alert(patient: str, level: str, previous: str) -> bytes:
    return orjson.dumps({
        "alert_id": f"a-{patient}", "patient_id": patient, "level": level, "previous_level": previous, "risk": 0.9,
        "news2": {"total": 6, "components": {"resp_rate": 3, "spo2": 3}},
        "reasons": [{"variable": "lactate", "value": 4.4, "unit": "mmol/L", "contribution": 0.3},
                    {"variable": "on_oxygen", "value": 1.0, "unit": "{bool}", "contribution": 0.2},
                    {"variable": "consciousness", "value": 1.0, "unit": "{ACVPU}", "contribution": 0.1}],
        "triggered_by": f"{patient}-1", "observed_at": "2026-11-22T10:00:00Z", "raised_at": "2026-11-22T10:00:01Z",
        "model_version": "m1",
    })


def test_board_keeps_each_patients_latest_score_and_counts_everything() -> None:
    board = WardBoard()
    for role, value in [("input", b"{}"), ("input", b"{}"), ("input", b"x"),
                        ("score", _score("p1", 0.2, "none", 1)), ("score", _score("p1", 0.7, "high", 6)),
                        ("alert", _alert("p1", "high", "none")), ("dead_letter", b"{}"),
                        ("score", b"not json"), ("alert", orjson.dumps({"patient_id": "p2"}))]:
        board.fold(role, value)
    assert (board.published, board.scored, board.dead_letters, board.unreadable) == (3, 2, 1, 2)
    row = board.patients["p1"]
    assert (row.risk, row.level, row.news2, row.events, row.last_alert) == (0.7, "high", 6, 2, "none → high")
    assert board.alerts == {"high": 1}
    assert board.recent_alerts[0].endswith(
        "p1  none → HIGH  risk 0.90  NEWS2 6 (resp_rate 3, spo2 3)  "
        "reasons: lactate 4.4 mmol/L (+0.30); on_oxygen yes (+0.20); consciousness C (+0.10)"
    )


def test_sickest_orders_by_level_then_risk() -> None:
    board = WardBoard()
    for patient, risk, level in [("a", 0.9, "medium"), ("b", 0.5, "high"), ("c", 0.95, "none"), ("d", 0.6, "high")]:
        board.fold("score", _score(patient, risk, level, 0))
    assert [row.patient_id for row in board.sickest(3)] == ["d", "b", "a"]


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.3)  # 20th of 40: halfway through (0.1, 0.5]
    assert histogram_quantile(buckets, 0.25) == pytest.approx(0.1)
    assert histogram_quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 5.0)], 0.5) == 1.0  # only +Inf: the highest bound


def test_latency_is_read_from_the_workers_exposition() -> None:
    metrics = Metrics()
    for seconds in (0.02, 0.03, 0.04, 0.2):
        metrics.end_to_end_seconds.observe(seconds)
    latency = latency_from_exposition(metrics.exposition()[0].decode())
    assert latency.p50 is not None and 0.025 <= latency.p50 <= 0.05
    assert latency.p95 is not None and 0.1 <= latency.p95 <= 0.25
    assert latency_from_exposition("") == Latency()


def test_summary_and_render_show_the_counters() -> None:
    board = WardBoard()
    board.fold("input", b"{}")
    board.fold("score", _score("p1", 0.81, "high", 7))
    board.fold("alert", _alert("p1", "high", "none"))
    line = summary_line(board, Latency(0.045, 1.5))
    assert line == ("1 events published, 1 scored, 1 alerts (→high 1), 0 dead letters, 1 patients; "
                    "end-to-end latency p50 45 ms, p95 1.5 s")
    out = io.StringIO()
    model = "vw-lstm-2026.12.1 · PhysioNet 2019 set A · sepsis within 6 h"
    Console(file=out, width=200, force_terminal=False).print(render(board, Latency(), "status line", model))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["status line", f"model: {model}"]  # the model right under the status
    text = out.getvalue()
    assert "p1" in text and "0.81" in text and "none → HIGH" in text


def test_plain_display_prints_each_new_alert_once(capsys: pytest.CaptureFixture[str]) -> None:
    feed = BoardFeed(consumer=None, roles={}, metrics_url="http://127.0.0.1:9/metrics")
    display = PlainDisplay()
    feed.board.fold("alert", _alert("p1", "high", "none"))
    display.update(feed, "status", 0.0)
    display.update(feed, "status", 1.0)
    feed.board.fold("alert", _alert("p2", "medium", "none"))
    display.update(feed, "status", 2.0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines if line.startswith("alert: ")] == ["p1", "p2"]
    summaries = [line for line in lines if line.startswith("[")]
    assert len(summaries) == 1 and summaries[0].startswith("[    0 s] 0 events published, 0 scored, 1 alerts")


def _encounter(patient: str, kind: str, **fields: str) -> bytes:
    return orjson.dumps({"event_id": f"{patient}-{kind}", "patient_id": patient, "kind": kind, **fields})


def test_encounters_place_patients_on_units_and_a_discharge_takes_them_off_the_table() -> None:
    board = WardBoard()
    for role, value in [
        ("encounter", _encounter("p1", "admission", unit="ward")), ("score", _score("p1", 0.9, "high", 7)),
        ("encounter", _encounter("p1", "transfer", unit="icu")),
        ("encounter", _encounter("p2", "admission")), ("score", _score("p2", 0.3, "none", 1)),
        ("encounter", _encounter("p3", "admission", unit="ward")), ("score", _score("p3", 0.5, "medium", 3)),
        ("encounter", _encounter("p3", "discharge", disposition="died")),
        ("encounter", b"{}"), ("encounter", _encounter("p4", "readmission")),
    ]:
        board.fold(role, value)

    assert board.published == 0  # encounters are not events the worker scores
    assert board.encounters == {"admission": 3, "transfer": 1, "discharge": 1} and board.unreadable == 2
    assert {r.patient_id: (r.unit, r.left) for r in board.patients.values()} == {
        "p1": ("icu", ""), "p2": ("", ""), "p3": ("ward", "died"),
    }
    assert [row.patient_id for row in board.sickest(5)] == ["p1", "p2"]
    line = summary_line(board, Latency())
    assert "5 encounters (3 admissions, 1 transfers, 1 discharges), 3 patients (1 discharged), 2 unreadable;" in line
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=False).print(render(board, Latency(), "status", "m1"))
    text = out.getvalue()
    assert "Sickest 15 of 2 patients in hospital" in text and "icu" in text and "p3" not in text


def _labelled(label_id: str, risk: float, news2: int, label: bool, role: str = "live") -> bytes:
    return orjson.dumps({"label_id": label_id, "risk": risk, "news2": news2, "label": label, "role": role})


def test_the_board_shows_live_accuracy_building_up_from_scored_outcomes() -> None:
    board = WardBoard()
    board.fold("labelled", _labelled("a", 0.2, 5, True))
    assert board.accuracy.text() == "live accuracy: 1 scores labelled (1 positive); AUROC once both labels are in"
    for record in (_labelled("b", 0.05, 1, False), _labelled("c", 0.3, 2, False), _labelled("a", 0.2, 5, True),
                   _labelled("s", 0.9, 0, False, role="shadow"), b"{not json"):
        board.fold("labelled", record)
    assert board.accuracy.text() == "live accuracy: 3 scores labelled (1 positive); AUROC 0.500, NEWS2 1.000"
    assert board.unreadable == 1, "a duplicate label_id counts once, the shadow's apart, junk as unreadable"
    board.fold("outcome", b"{}")
    assert board.outcomes == 1 and board.published == 0
