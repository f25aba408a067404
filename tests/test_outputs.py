"""Output records: the dicts the worker publishes match the published contract models."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import orjson

from schemas.observation import Observation
from schemas.outputs import AlertV1, DeadLetterV1, RiskScoreV1
from worker.stream import outputs
from worker.scoring.engine import AlertDecision, InputEvent, ScoredEvent
from worker.stream.messages import RawMessage

OBSERVED = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 5, 8, 0, 2, tzinfo=timezone.utc)


def scored(alert: AlertDecision | None = None) -> ScoredEvent:
    obs = Observation("e1", "bed-7", OBSERVED, {"heart_rate": 131.0, "resp_rate": 26.0})
    return ScoredEvent(InputEvent(obs, "vitals", 1, 42, 1_767_600_001.0), 0.734, 7, "high", alert)


def roundtrip(record: dict) -> dict:
    return orjson.loads(outputs.encode(record))


def test_risk_score_record_matches_the_contract() -> None:
    record = roundtrip(outputs.risk_score(scored(), model_version="m-1", scored_at=NOW))
    model = RiskScoreV1.model_validate(record)
    assert (model.event_id, model.patient_id, model.level, model.news2) == ("e1", "bed-7", "high", 7)
    assert record["observed_at"] == "2026-01-05T08:00:00+00:00"
    assert record["risk"] == 0.734 and record["model_version"] == "m-1"


def test_alert_record_matches_the_contract() -> None:
    decision = AlertDecision(
        alert_id="a" * 32, level="high", previous_level="none",
        reasons=[{"variable": "heart_rate", "value": 131.0, "unit": "/min", "contribution": 0.21}],
        news2_components={"resp_rate": 3, "spo2": 0, "on_oxygen": 0, "sbp": 0, "heart_rate": 2, "consciousness": 0, "temperature": 0},
    )
    record = roundtrip(outputs.alert(scored(decision), model_version="m-1", raised_at=NOW))
    AlertV1.model_validate(record)
    assert record["news2"] == {"total": 7, "components": decision.news2_components}
    assert record["triggered_by"] == "e1" and record["alert_id"] == "a" * 32
    assert record["reasons"][0]["variable"] == "heart_rate"


def message(value: bytes | None, key: bytes | None = b"bed-7") -> RawMessage:
    return RawMessage("vitals", 2, 99, key, value, None)


#: A dead-letter always carries at least one reason (the contract requires it).
OVERSIZE = [{"field": "$", "problem": "message is larger than the 1000000-byte limit", "value": None}]


def test_dead_letter_keeps_small_originals_whole() -> None:
    raw = b'{"heart_rate": 900}'
    errors = [{"field": "heart_rate", "problem": "out of plausible range", "value": 900}]
    record = roundtrip(outputs.dead_letter(message(raw), errors, stage="decode", received_at=NOW, worker="w1"))
    DeadLetterV1.model_validate(record)
    assert record["original"] == raw.decode() and record["truncated"] is False
    assert record["original_size"] == len(raw) and record["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["source"] == {"topic": "vitals", "partition": 2, "offset": 99, "key": "bed-7"}
    assert record["reason"] == {"errors": errors, "stage": "decode"}


def test_dead_letter_bounds_an_oversize_original_without_splitting_a_character() -> None:
    raw = b"x" + ("é" * 600_000).encode()  # 1.2 MB; the 64 KiB cut falls inside a two-byte "é"
    record = roundtrip(outputs.dead_letter(message(raw), OVERSIZE, stage="decode", received_at=NOW, worker="w1"))
    DeadLetterV1.model_validate(record)
    assert record["truncated"] is True and record["original_size"] == len(raw)
    assert len(record["original"].encode()) == outputs.ORIGINAL_PREFIX_BYTES - 1
    assert len(outputs.encode(record)) < 200_000


def test_dead_letter_carries_binary_as_base64_and_survives_no_key_or_value() -> None:
    raw = b"\xff\xfe\x00binary"
    record = roundtrip(outputs.dead_letter(message(raw, key=None), OVERSIZE, stage="decode", received_at=NOW, worker="w1"))
    DeadLetterV1.model_validate(record)
    assert "original" not in record and base64.b64decode(record["original_b64"]) == raw
    assert record["source"]["key"] is None
    empty = roundtrip(outputs.dead_letter(message(None), OVERSIZE, stage="decode", received_at=NOW, worker="w1"))
    assert empty["original"] == "" and empty["original_size"] == 0
