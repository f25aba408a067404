"""The normalised observation every input contract is decoded into.

vitals.v1, labs.v1 and FHIR Observations differ on the wire but mean the same thing to the
model: at one instant, one patient had these values in canonical units. Decoding once into
this shape keeps the worker, the simulator-driven training and the real-data loaders on a
single code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping


@dataclass(frozen=True, slots=True)
class Observation:
    """A validated observation set.

    ``values`` maps catalogue names (schemas.variables) to canonical-unit floats: already
    range-checked, consciousness as its ACVPU ordinal, on_oxygen as 0.0/1.0.
    ``observed_ts`` is ``observed_at`` as POSIX seconds, precomputed because the hot path
    works on numbers, not datetimes.
    """

    event_id: str
    patient_id: str
    observed_at: datetime
    values: Mapping[str, float]
    source: str | None = None
    observed_ts: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "observed_ts", self.observed_at.timestamp())
