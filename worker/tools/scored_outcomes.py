"""Labelled scores read back, from the ``scored-outcomes`` topic or a JSONL export of it.

``validate``, ``recalibrate`` and ``evaluate --scored`` all read through here, so they judge the
same records the same way: every record is parsed against the published contract
(schemas.scored_outcome.ScoredOutcomeV1; one that does not parse is counted and skipped, never a
crash: another producer may have written it), duplicates are dropped by ``label_id`` (the
worker's publish is at-least-once; the id makes it once in effect), and the selection keeps the
scores observed in ``[since, until)`` of one model version or of all.

The topic is read outside any consumer group and commits nothing, from the beginning of every
partition until each is past the end offset it had when reading began and a poll brings
nothing more: a retained topic is a finite log at any instant, and the report is of about that
instant. (The end offset alone is not trusted to be the last record: Tansu answers a ListOffsets
for the latest offset with one short of the records already written.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from pydantic import ValidationError

from schemas.scored_outcome import ScoredOutcomeV1
from worker.operations.config import Settings

#: How long reading the topic may go without progress before it gives up.
STALL_S = 30.0
#: A poll this long that returns nothing, once every partition is past its end offset at the
#: start, ends the reading.
IDLE_POLL_MS = 1000
#: How long to wait for the topic to exist (a worker that never labelled anything has none).
TOPIC_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Selection:
    """Which labelled scores to keep: observed in ``[since, until)``, of one model version (all when None)."""

    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None

    def keeps(self, record: ScoredOutcomeV1) -> bool:
        return (
            (self.since is None or record.observed_at >= self.since)
            and (self.until is None or record.observed_at < self.until)
            and (self.model_version is None or record.model_version == self.model_version)
        )

    def describe(self) -> dict[str, str | None]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "model_version": self.model_version,
        }


@dataclass(slots=True)
class Read:
    """The selected, de-duplicated records and the counts of what was read and left out."""

    records: list[ScoredOutcomeV1] = field(default_factory=list)
    read: int = 0
    duplicates: int = 0
    malformed: int = 0
    not_selected: int = 0
    first_problem: str | None = None

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read, "selected": len(self.records), "duplicates": self.duplicates,
            "malformed": self.malformed, "not_selected": self.not_selected,
        }


def timestamp(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time for --since and --until; one without an offset is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01 or 2026-12-01T08:00:00+01:00)") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def select(values: Iterable[bytes], selection: Selection) -> Read:
    """Parse, de-duplicate (first of a label_id wins) and select raw record values."""
    out, seen = Read(), set()
    for value in values:
        out.read += 1
        try:
            record = ScoredOutcomeV1.model_validate_json(value)
        except ValidationError as exc:
            out.malformed += 1
            out.first_problem = out.first_problem or str(exc).splitlines()[0]
            continue
        if record.label_id in seen:
            out.duplicates += 1
        elif not selection.keeps(record):
            out.not_selected += 1
        else:
            out.records.append(record)
        seen.add(record.label_id)
    return out


def read_jsonl(path: Path, selection: Selection) -> Read:
    """An export: one record per line (blank lines skipped)."""
    with Path(path).open("rb") as lines:
        return select((line for line in lines if line.strip()), selection)


def write_jsonl(path: Path, records: Iterable[ScoredOutcomeV1]) -> None:
    """The records as an export ``read_jsonl`` (and ``evaluate --scored``) reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(record.model_dump_json() + "\n")


def read_topic(settings: Settings, selection: Selection, *, topic: str | None = None) -> Read:
    """Every record of the topic up to its end offsets at the start (TimeoutError when the topic
    does not exist or reading stalls for STALL_S)."""
    return select(_topic_values(settings, topic or settings.topic_scored_outcomes), selection)


def _topic_values(settings: Settings, topic: str) -> Iterator[bytes]:
    from worker.tools.kafka_clients import follower

    consumer = follower(settings, [topic], from_beginning=True, wait_s=TOPIC_WAIT_S)
    try:
        partitions = list(consumer.assignment())
        ends = consumer.end_offsets(partitions)
        last_progress = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=IDLE_POLL_MS)
            for records in batch.values():
                yield from (record.value for record in records)
            if batch:
                last_progress = time.monotonic()
            elif all(consumer.position(p) >= ends[p] for p in partitions):
                return
            elif time.monotonic() - last_progress > STALL_S:
                raise TimeoutError(f"reading {topic!r} made no progress for {STALL_S:.0f} s")
    finally:
        consumer.close()
