"""The normalised encounter event every encounter contract is decoded into.

An interface engine's ADT feed (HL7 A01/A02/A03, FHIR ``Encounter``, a CLIF ``adt`` table, the
encounters.v1 topic) says who the patient is and where: admitted at what age, of which sex, to
what kind of unit; moved to another unit; discharged home, elsewhere, or dead. The worker keeps
that context in each patient's state beside the observations, and a discharge releases it.
Decoding every source into this one shape keeps the worker, the loaders and the replays on one
code path, as ``Observation`` does for measurements.

The context is stored as small integer codes (the index in the tuples below, -1 unknown) so the
worker's device-resident state stays a set of tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Literal

from schemas.errors import FieldError

EncounterKind = Literal["admission", "transfer", "discharge"]
Sex = Literal["female", "male", "other", "unknown"]
UnitKind = Literal["ward", "step_down", "icu"]
Disposition = Literal["home", "other_facility", "died"]

#: Codes of the state record: index in these tuples; -1 stands for unknown.
SEXES: tuple[Sex, ...] = ("female", "male", "other")
UNIT_KINDS: tuple[UnitKind, ...] = ("ward", "step_down", "icu")
UNKNOWN = -1


#: Ages (years) a living patient can have; the contracts refuse others, never clip them.
AGE_LOW, AGE_HIGH = 0.0, 125.0
#: The mean Gregorian year, so an age from a birth date is exact over centuries of leap years.
_DAYS_PER_YEAR = 365.2425


def age_at(birth_date: date, instant: datetime) -> float:
    """Age in fractional years at ``instant`` of someone born on ``birth_date`` (midnight UTC)."""
    born = datetime(birth_date.year, birth_date.month, birth_date.day, tzinfo=timezone.utc)
    return (instant - born).total_seconds() / 86_400 / _DAYS_PER_YEAR


def age_error(age: float, field: str, value: object) -> FieldError | None:
    """The problem with an age outside AGE_LOW–AGE_HIGH (``value`` is what was sent for it)."""
    if AGE_LOW <= age <= AGE_HIGH:  # False for NaN too
        return None
    shown = "" if value == age else f" (an age of {age:.1f} years at admission)"
    return FieldError(field, f"out of plausible range {AGE_LOW:g}–{AGE_HIGH:g} years{shown}", value)


def sex_code(sex: Sex | None) -> int:
    """The stored code of ``sex`` ("unknown" and None are unknown)."""
    return SEXES.index(sex) if sex in SEXES else UNKNOWN


def unit_code(unit: UnitKind | None) -> int:
    """The stored code of ``unit`` (None is unknown)."""
    return UNIT_KINDS.index(unit) if unit in UNIT_KINDS else UNKNOWN


@dataclass(frozen=True, slots=True)
class Encounter:
    """A validated encounter event.

    ``occurred_at`` is when it happened (admitted, transferred or discharged at), in UTC;
    ``occurred_ts`` the same as POSIX seconds for the hot path. An admission carries the unit
    admitted to and, when known, ``age`` (years at admission, already computed from a birth
    date) and ``sex``; a transfer carries the new ``unit``; a discharge its ``disposition``.
    Fields that do not belong to the kind are None.
    """

    event_id: str
    patient_id: str
    kind: EncounterKind
    occurred_at: datetime
    unit: UnitKind | None = None
    age: float | None = None
    sex: Sex | None = None
    disposition: Disposition | None = None
    source: str | None = None
    occurred_ts: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_ts", self.occurred_at.timestamp())
