"""What goes into a micro-batch and what comes out of it, as plain records.

The pipeline, the output builders and the publisher all speak these two types; they live in a
module of their own, below all three, so none of them imports another just for a type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A consumed Kafka record, as far as the pipeline cares."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None  # Kafka record timestamp, POSIX seconds


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One output record: its topic, key (the patient id) and encoded value."""

    topic: str
    key: bytes | None
    value: bytes
