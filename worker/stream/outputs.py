"""Output records (risk-scores, alerts, scored-outcomes, dead-letters) as plain dicts, encoded with orjson.

The hot path builds dicts rather than pydantic models: at thousands of events per second model
construction and validation would cost more than the LSTM step. schemas.outputs holds the
contract as pydantic models; tests/test_outputs.py validates these dicts against them so the
two cannot drift.
"""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson

from schemas.scored_outcome import label_id
from worker.scoring.alert_policy import LEVELS

if TYPE_CHECKING:
    from worker.scoring.engine import ScoredEvent
    from worker.scoring.labelling import LabelledScore
    from worker.stream.messages import RawMessage

#: Dead-letters keep at most this much of the original: enough to diagnose, and far below the
#: producer's max_request_size (1 MB) even after base64, so an oversize input cannot block the
#: dead-letter that reports it.
ORIGINAL_PREFIX_BYTES = 64 * 1024


def encode(record: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON; datetimes as RFC 3339 with their offset."""
    return orjson.dumps(record)


def risk_score(scored: "ScoredEvent", *, model_version: str, scored_at: datetime) -> dict[str, Any]:
    obs = scored.observation
    return {
        "event_id": obs.event_id,
        "patient_id": obs.patient_id,
        "observed_at": obs.observed_at,
        "scored_at": scored_at,
        "risk": scored.risk,
        "news2": scored.news2,
        "level": scored.level,
        "model_version": model_version,
    }


def scored_outcome(labelled: "LabelledScore", *, role: str, horizon_h: float, labelled_at: datetime) -> dict[str, Any]:
    """A labelled score (schemas.scored_outcome.ScoredOutcomeV1), its id deterministic."""
    score = labelled.score
    return {
        "label_id": label_id(score.model_version, role, score.event_id),
        "patient_id": labelled.patient_id,
        "event_id": score.event_id,
        "observed_at": datetime.fromtimestamp(score.observed_ts, timezone.utc),
        "risk": score.risk,
        "level": LEVELS[score.level],
        "news2": score.news2,
        "model_version": score.model_version,
        "role": role,
        "horizon_h": horizon_h,
        "label": labelled.label,
        "resolution": labelled.resolution,
        "outcome_kind": labelled.outcome_kind,
        "outcome_at": None if math.isnan(labelled.outcome_ts) else datetime.fromtimestamp(labelled.outcome_ts, timezone.utc),
        "labelled_at": labelled_at,
    }


def alert(scored: "ScoredEvent", *, model_version: str, raised_at: datetime) -> dict[str, Any]:
    """The alert for a scored event whose AlertDecision is set (callers check ``scored.alert``)."""
    decision = scored.alert
    assert decision is not None
    obs = scored.observation
    return {
        "alert_id": decision.alert_id,
        "patient_id": obs.patient_id,
        "level": decision.level,
        "previous_level": decision.previous_level,
        "risk": scored.risk,
        "news2": {"total": scored.news2, "components": dict(decision.news2_components)},
        "reasons": list(decision.reasons),
        "raised_by": decision.raised_by,
        "triggered_by": obs.event_id,
        "observed_at": obs.observed_at,
        "raised_at": raised_at,
        "model_version": model_version,
    }


def _text_prefix(prefix: bytes, truncated: bool) -> str | None:
    """The prefix as text when it is UTF-8, forgiving a character cut in half by the truncation."""
    for cut in range(4 if truncated else 1):
        try:
            return prefix[: len(prefix) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def dead_letter(
    message: "RawMessage",
    errors: Sequence[Mapping[str, Any]],
    *,
    stage: str,
    received_at: datetime,
    worker: str,
) -> dict[str, Any]:
    """A rejected input with its reason, source coordinates and a bounded copy of its bytes."""
    raw = message.value or b""
    truncated = len(raw) > ORIGINAL_PREFIX_BYTES
    prefix = raw[:ORIGINAL_PREFIX_BYTES]
    record: dict[str, Any] = {
        "reason": {"errors": [dict(e) for e in errors], "stage": stage},
        "source": {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key.decode("utf-8", "backslashreplace") if message.key is not None else None,
        },
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "truncated": truncated,
        "received_at": received_at,
        "worker": worker,
    }
    text = _text_prefix(prefix, truncated)
    if text is not None:
        record["original"] = text
    else:
        record["original_b64"] = base64.b64encode(prefix).decode("ascii")
    return record
