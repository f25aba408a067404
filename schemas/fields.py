"""Field types shared by every contract, so an identifier means the same thing on every topic.

The patient id is the Kafka key and part of Redis keys and metric labels: restricting it to a
short, shell- and URL-safe alphabet keeps it safe in all of them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

PATIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

PatientId = Annotated[str, StringConstraints(pattern=PATIENT_ID_PATTERN)]

#: The idempotence key of an input event; outputs cite it (``triggered_by``).
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

#: Free-text origin of an event (monitor, analyser, interface engine), for tracing only.
Source = Annotated[str, StringConstraints(min_length=1, max_length=128)]
