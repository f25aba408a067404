"""encounters.v1 payloads as the data sets' interface engines would send them (and the
outcomes.v1 record of a stay's clinical event, which only the data sets know).

The simulator, the PhysioNet PSV loader and the CLIF adapter each know a stay's admission,
transfers and discharge in their own terms; they all publish them in one wire shape, built
here, and decode every payload through ``schemas.decode`` (the worker's one validation path)
so a replay never sends what the worker would refuse.

The payloads carry ``age`` (years at admission), never ``birth_date``: a replay moves a stay's
timeline into the recent past, and an age computed from a birth date at the moved admission
time would be wrong by the move (decades for MIMIC's shifted dates).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from schemas.encounter import Disposition, Encounter, EncounterKind, Sex, UnitKind

if TYPE_CHECKING:  # pydantic models behind them: not for the command line's parsers (see decoded)
    from schemas.outcome import OutcomeSource
    from schemas.scored_outcome import OutcomeKind

#: The payload field that carries the time, per encounter kind (observations: ``observed_at``).
TIME_FIELDS: dict[EncounterKind, str] = {
    "admission": "admitted_at",
    "transfer": "transferred_at",
    "discharge": "discharged_at",
}
OBSERVED_AT = "observed_at"
#: The time field of an outcomes.v1 payload (told apart by its kind: an outcome kind).
OCCURRED_AT = "occurred_at"


def rfc3339(ts: float) -> str:
    """POSIX seconds as ``YYYY-MM-DDThh:mm:ssZ`` (whole seconds: every source here is)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_field(payload: dict[str, Any]) -> str:
    """Which field of a vitals.v1, labs.v1, encounters.v1 or outcomes.v1 payload holds its instant."""
    kind = payload.get("kind")
    if OCCURRED_AT in payload:
        return OCCURRED_AT
    return TIME_FIELDS[kind] if kind in TIME_FIELDS else OBSERVED_AT


def outcome(event_id: str, patient_id: str, ts: float, kind: OutcomeKind, *, source: OutcomeSource) -> dict[str, Any]:
    """An outcomes.v1 record of an outcome that occurred at ``ts`` (the simulator's and the
    replays' ground truth: what labels the worker's scores)."""
    return {"event_id": event_id, "patient_id": patient_id, "kind": kind, "occurred_at": rfc3339(ts), "source": source}


def admission(
    event_id: str, patient_id: str, ts: float, *, source: str,
    unit: UnitKind | None = None, age: float | None = None, sex: Sex | None = None,
) -> dict[str, Any]:
    """An admission at ``ts``; what is unknown (unit, age, sex) is left out, as the contract reads it."""
    payload: dict[str, Any] = {
        "event_id": event_id, "patient_id": patient_id, "kind": "admission", "admitted_at": rfc3339(ts),
    }
    optional = {"unit": unit, "age": age, "sex": sex}
    payload.update((name, value) for name, value in optional.items() if value is not None)
    payload["source"] = source
    return payload


def transfer(event_id: str, patient_id: str, ts: float, unit: UnitKind, *, source: str) -> dict[str, Any]:
    """A move to another kind of unit at ``ts``."""
    return {
        "event_id": event_id, "patient_id": patient_id, "kind": "transfer", "transferred_at": rfc3339(ts),
        "unit": unit, "source": source,
    }


def discharge(
    event_id: str, patient_id: str, ts: float, *, source: str, disposition: Disposition | None = None
) -> dict[str, Any]:
    """A discharge at ``ts``; a disposition the source does not state is left out."""
    payload: dict[str, Any] = {
        "event_id": event_id, "patient_id": patient_id, "kind": "discharge", "discharged_at": rfc3339(ts),
    }
    if disposition is not None:
        payload["disposition"] = disposition
    payload["source"] = source
    return payload


def decoded(payload: dict[str, Any]) -> Encounter:
    """The payload as the worker decodes it; ContractError when the worker would refuse it."""
    # Imported here: the command line imports this module (time_field) to build its parsers,
    # and the contracts' validators are not needed for that.
    from schemas.decode import decode

    [encounter] = decode("encounters", orjson.dumps(payload))
    return encounter
