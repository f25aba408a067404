"""Output contracts: field names as docs/contracts.md fixes them, round trips, dead letters."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import orjson
import pytest
from pydantic import ValidationError

from schemas.errors import FieldError
from schemas.outputs import (
    LEVELS,
    ORIGINAL_LIMIT,
    AlertV1,
    DeadLetterSource,
    DeadLetterV1,
    RiskScoreV1,
)

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 5, 1, 8, 0, 2, tzinfo=timezone.utc)
SOURCE = DeadLetterSource(topic="vitals", partition=3, offset=1234, key="P000123")


def risk_score() -> RiskScoreV1:
    return RiskScoreV1(
        event_id="mon-7-000123",
        patient_id="P000123",
        observed_at=T0,
        scored_at=T1,
        risk=0.42,
        news2=6,
        level="medium",
        model_version="lstm-2024.05.1",
    )


def alert(**overrides: object) -> AlertV1:
    fields: dict[str, object] = {
        "alert_id": "a-5f1c",
        "patient_id": "P000123",
        "level": "high",
        "previous_level": "medium",
        "risk": 0.81,
        "news2": {"total": 7, "components": {"resp_rate": 3, "spo2": 2, "heart_rate": 2}},
        "reasons": [{"variable": "resp_rate", "value": 28.0, "unit": "/min", "contribution": 0.3}],
        "triggered_by": "mon-7-000123",
        "observed_at": T0,
        "raised_at": T1,
        "model_version": "lstm-2024.05.1",
    }
    fields.update(overrides)
    return AlertV1.model_validate(fields)


def test_levels_are_ordered_by_severity() -> None:
    assert LEVELS == ("none", "medium", "high")


def test_risk_score_field_names_and_round_trip() -> None:
    wire = orjson.loads(risk_score().model_dump_json())
    assert list(wire) == [
        "event_id", "patient_id", "observed_at", "scored_at", "risk", "news2", "level",
        "model_version",
    ]
    assert wire["observed_at"] == "2024-05-01T08:00:00Z"
    assert RiskScoreV1.model_validate(wire) == risk_score()


def test_alert_field_names_and_round_trip() -> None:
    wire = orjson.loads(alert().model_dump_json())
    assert list(wire) == [
        "alert_id", "patient_id", "level", "previous_level", "risk", "news2", "reasons", "raised_by",
        "triggered_by", "observed_at", "raised_at", "model_version",
    ]
    assert list(wire["news2"]) == ["total", "components"]
    assert list(wire["reasons"][0]) == ["variable", "value", "unit", "contribution"]
    assert AlertV1.model_validate_json(orjson.dumps(wire)) == alert()


@pytest.mark.parametrize(
    "overrides",
    [
        {"level": "high", "previous_level": "high"},
        {"level": "critical"},
        {"risk": 1.5},
        {"news2": {"total": 21, "components": {}}},
        {"observed_at": datetime(2024, 5, 1, 8, 0)},
        {"extra": 1},
    ],
)
def test_alert_refuses_what_consumers_could_not_trust(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        alert(**overrides)


def test_dead_letter_keeps_text_originals_as_text() -> None:
    raw = b'{"heart_rate": 900}'
    letter = DeadLetterV1.for_payload(
        raw,
        errors=[FieldError("heart_rate", "out of plausible range 20–300 /min", 900)],
        source=SOURCE,
        received_at=T1,
        worker="worker-1",
        stage="decode",
    )
    wire = orjson.loads(letter.model_dump_json(exclude_none=True))
    assert wire == {
        "reason": {
            "errors": [
                {"field": "heart_rate", "problem": "out of plausible range 20–300 /min",
                 "value": 900}
            ],
            "stage": "decode",
        },
        "source": {"topic": "vitals", "partition": 3, "offset": 1234, "key": "P000123"},
        "original": raw.decode(),
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "truncated": False,
        "received_at": "2024-05-01T08:00:02Z",
        "worker": "worker-1",
    }


def test_dead_letter_of_binary_is_base64() -> None:
    raw = b"\xff\xfe{}"
    letter = DeadLetterV1.for_payload(
        raw, errors=[FieldError("$", "invalid UTF-8", None)], source=SOURCE,
        received_at=T1, worker="w",
    )
    assert letter.original is None
    assert base64.b64decode(letter.original_b64 or "") == raw


def test_dead_letter_of_an_oversize_message_is_bounded() -> None:
    raw = b'"' + "é".encode() * ORIGINAL_LIMIT + b'"'  # 2 bytes per char: the cut splits one
    letter = DeadLetterV1.for_payload(
        raw, errors=[FieldError("$", "too big", len(raw))], source=SOURCE,
        received_at=T1, worker="w",
    )
    assert letter.truncated
    assert letter.original_size == len(raw)
    assert letter.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert letter.original is not None
    assert len(letter.original.encode()) <= ORIGINAL_LIMIT
    assert len(letter.model_dump_json()) < 1_000_000


def test_dead_letter_needs_exactly_one_original() -> None:
    letter = DeadLetterV1.for_payload(
        b"{}", errors=[FieldError("$", "x")], source=SOURCE, received_at=T1, worker="w"
    )
    with pytest.raises(ValidationError):
        DeadLetterV1.model_validate({**letter.model_dump(), "original_b64": "e30="})
    with pytest.raises(ValidationError):
        DeadLetterV1.model_validate({**letter.model_dump(), "original": None})
