"""A patient's recent scores, kept until their horizon tells whether they were right.

The worker labels its own scores when the patient's course is known (worker.scoring.labelling):
a score is positive once an outcome follows within the model's horizon, negative once the
horizon plus the longest outcome delay has passed quietly or the patient left alive. Until then
the score waits here, beside the LSTM state, in the slab and in the patient's Redis record: a
restart or a rebalance loses no pending score, and a labelled score leaves the history in the
same state write that follows its publication, so it is never labelled twice in effect.

The history is bounded by time (a score waits at most horizon + delay of the patient's event
time) and by a hard cap on entries; it is host data, not tensors, because event ids are text
and a batch touches each patient's history only to append a few scores and pop the labelled.

Bytes (format 4 of worker.state.codec, after the watermark): clock f64, first outcome time f64
and kind i8; versions u8, then per version length u16 + UTF-8; entries u16, then per entry
observed_ts f64, risk f32, level i8, news2 u8, version index u8, alerted bool, event-id
length u16 + UTF-8.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import NamedTuple


class ScoreEntry(NamedTuple):
    """One published score awaiting its label."""

    observed_ts: float
    risk: float
    level: int  # alert level code
    news2: int
    event_id: str
    model_version: str
    alerted: bool  # the score raised or escalated an alert


@dataclass(slots=True)
class ScoreHistory:
    """A patient's unlabelled scores (oldest first) and what the labelling rule needs of the stay
    so far: the event-time clock, the first outcome (time and OUTCOME_KINDS index), and the
    time of a discharge alive (set by the batch that discharges: a tombstone holds none)."""

    entries: list[ScoreEntry] = field(default_factory=list)
    clock: float = math.nan
    outcome_ts: float = math.nan
    outcome_kind: int = -1
    discharged_alive_ts: float = math.nan

    def clear(self) -> None:
        """The stay ended: the next one starts with nothing pending and no outcome."""
        self.entries = []
        self.clock = self.outcome_ts = self.discharged_alive_ts = math.nan
        self.outcome_kind = -1


_ENTRY = struct.Struct("<dfbBB?")
_STAY = struct.Struct("<ddb")
_COUNT = struct.Struct("<H")


class HistoryError(ValueError):
    """The bytes of a history section are unreadable."""


def pack_history(history: ScoreHistory) -> bytes:
    """The history's bytes (see the module doc), the stay's facts first."""
    versions = list(dict.fromkeys(e.model_version for e in history.entries))
    index = {v: i for i, v in enumerate(versions)}
    parts = [_STAY.pack(history.clock, history.outcome_ts, history.outcome_kind), bytes((len(versions),))]
    parts.extend(_text(version) for version in versions)
    parts.append(_COUNT.pack(len(history.entries)))
    for e in history.entries:
        parts.append(_ENTRY.pack(e.observed_ts, e.risk, e.level, e.news2, index[e.model_version], e.alerted))
        parts.append(_text(e.event_id))
    return b"".join(parts)


def unpack_history(data: bytes, pos: int) -> tuple[ScoreHistory, int]:
    """The history starting at ``data[pos]`` and the position after it."""
    try:
        clock, outcome_ts, outcome_kind = _STAY.unpack_from(data, pos)
        pos += _STAY.size
        versions: list[str] = []
        n_versions, pos = data[pos], pos + 1
        for _ in range(n_versions):
            version, pos = _read_text(data, pos)
            versions.append(version)
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        entries = []
        for _ in range(count):
            observed_ts, risk, level, news2, version_index, alerted = _ENTRY.unpack_from(data, pos)
            event_id, pos = _read_text(data, pos + _ENTRY.size)
            entries.append(ScoreEntry(observed_ts, risk, level, news2, event_id, versions[version_index], alerted))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise HistoryError(f"score history unreadable: {exc}") from exc
    return ScoreHistory(entries, clock, outcome_ts, outcome_kind), pos


def _text(value: str) -> bytes:
    raw = value.encode()
    return _COUNT.pack(len(raw)) + raw


def _read_text(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = _COUNT.unpack_from(data, pos)
    start = pos + _COUNT.size
    if start + n > len(data):
        raise HistoryError(f"score history truncated: text of {n} bytes at {start}, record ends at {len(data)}")
    return data[start : start + n].decode(), start + n
