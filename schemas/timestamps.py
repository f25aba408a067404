"""RFC 3339 instants: the only time format the contracts accept.

A timestamp without an offset is ambiguous across a daylight-saving change and between sites,
so it is refused rather than assumed local or UTC. Instants before 2000 or far in the future
are clock or transcription faults that would corrupt a patient's time series, so they are
refused too. Parsing runs inside pydantic-core (Rust): this is on the per-message hot path.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, WithJsonSchema
from pydantic_core import core_schema

from schemas.errors import FieldError

#: Earliest instant accepted: older data is a default/epoch clock, not a real observation.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)

#: How far ahead of the consumer's clock an observation may be stamped (monitor clock skew).
FUTURE_TOLERANCE_S = 300.0

_DATE_TIME = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
_OFFSET = r"(?:[Zz]|[+-]\d{2}:\d{2})"


def _bad(
    schema: core_schema.CoreSchema, problem: str, what: str = "timestamp"
) -> core_schema.CoreSchema:
    return core_schema.custom_error_schema(
        schema, f"bad_{what}", custom_error_message=f"bad {what}: {problem}"
    )


class _Rfc3339Marker:
    """Builds the validator: shape, then offset, then calendar, then the 2000 floor; each
    step has its own message (speedate's own calendar messages are mapped in schemas.errors).
    pydantic's lax datetime parsing alone would also take epoch numbers and naive times."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [
                _bad(
                    core_schema.str_schema(strict=True, pattern=f"^{_DATE_TIME}{_OFFSET}?$"),
                    "not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)",
                ),
                _bad(
                    core_schema.str_schema(pattern=f"{_OFFSET}$"),
                    "no UTC offset (add Z or ±hh:mm)",
                ),
                core_schema.datetime_schema(strict=False),
                _bad(core_schema.datetime_schema(ge=EARLIEST), "before 2000-01-01"),
            ]
        )


#: An RFC 3339 date-time with offset. The validated value keeps the sender's offset;
#: Observation carries it converted to UTC.
Rfc3339 = Annotated[
    datetime,
    _Rfc3339Marker,
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="validation"),
]


class _CalendarDateMarker:
    """Builds the validator of a calendar date: the YYYY-MM-DD shape, then the calendar (month
    13 or 30 February are named by pydantic's own parser, reworded in schemas.errors)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [
                _bad(
                    core_schema.str_schema(strict=True, pattern=r"^\d{4}-\d{2}-\d{2}$"),
                    "not a calendar date YYYY-MM-DD",
                    "date",
                ),
                core_schema.date_schema(strict=False),
            ]
        )


#: A calendar date such as a birth date, exactly YYYY-MM-DD (no time, no offset: a date of
#: birth is a day, not an instant).
CalendarDate = Annotated[
    date,
    _CalendarDateMarker,
    WithJsonSchema({"type": "string", "format": "date"}, mode="validation"),
]


def future_error(observed_ts: float, now: float | None, field: str) -> FieldError | None:
    """The problem with an instant more than FUTURE_TOLERANCE_S after ``now``, if it is one.
    Skipped when ``now`` is None, so replaying historical data through decode needs no clock."""
    if now is None or observed_ts <= now + FUTURE_TOLERANCE_S:
        return None
    return FieldError(
        field,
        f"bad timestamp: {observed_ts - now:.0f} s in the future "
        f"(tolerance {FUTURE_TOLERANCE_S:.0f} s)",
        datetime.fromtimestamp(observed_ts, timezone.utc).isoformat(),
    )
