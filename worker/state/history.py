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
and kind i8; versions u8, then per version length u16 + UTF-8; entries n u16, then the
entries' fixed fields column by column (n observed_ts f64, n risk f32, n level i8, n news2 u8,
n version index u8, n alerted bool, n event-id lengths u16: 18 bytes an entry), then their
event ids' UTF-8, one after the other.
"""

from __future__ import annotations

import functools
import itertools
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


_STAY = struct.Struct("<ddb")
_COUNT = struct.Struct("<H")
_NO_ENTRIES = bytes((0,)) + _COUNT.pack(0)  # no versions, no entries


@functools.lru_cache(maxsize=64)
def _columns(n: int) -> struct.Struct:
    """The entries' fixed fields for ``n`` entries, column after column: one C call packs or
    reads them all (per field or per entry Python work was the cost of a large history)."""
    return struct.Struct(f"<{n}d{n}f{n}b{n}B{n}B{n}?{n}H")


class HistoryError(ValueError):
    """The bytes of a history section are unreadable."""


def pack_history(history: ScoreHistory) -> bytes:
    """The history's bytes (see the module doc), the stay's facts first. Written for the
    common case, run for every patient a batch changes: one model version, ASCII event ids
    (their text joined and encoded once)."""
    entries = history.entries
    stay = _STAY.pack(history.clock, history.outcome_ts, history.outcome_kind)
    if not entries:
        return stay + _NO_ENTRIES
    ts, risk, level, news2, event_ids, models, alerted = zip(*entries)
    versions = list(dict.fromkeys(models))
    index = [versions.index(m) for m in models] if len(versions) > 1 else [0] * len(entries)
    text = "".join(event_ids)
    ids = text.encode()
    lengths = map(len, event_ids) if len(ids) == len(text) else [len(i.encode()) for i in event_ids]
    return b"".join((
        stay, bytes((len(versions),)), *map(_text, versions), _COUNT.pack(len(entries)),
        _columns(len(entries)).pack(*ts, *risk, *level, *news2, *index, *alerted, *lengths), ids,
    ))


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
        (n,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        if not n:  # most records: nothing pending
            return ScoreHistory([], clock, outcome_ts, outcome_kind), pos
        layout = _columns(n)
        flat = layout.unpack_from(data, pos)
        pos += layout.size
        ends = list(itertools.accumulate(flat[6 * n :], initial=0))
        blob = data[pos : pos + ends[-1]]
        if len(blob) < ends[-1]:
            raise HistoryError(f"score history truncated: event ids of {ends[-1]} bytes at {pos}, record ends at {len(data)}")
        pos += ends[-1]
        text = blob.decode()  # one decode; slices by byte offsets hold for ASCII ids, the usual kind
        ids = [text[a:b] for a, b in zip(ends, ends[1:])] if len(text) == len(blob) else [
            blob[a:b].decode() for a, b in zip(ends, ends[1:])
        ]
        models = [versions[v] for v in flat[4 * n : 5 * n]]
        entries = list(map(ScoreEntry, flat[:n], flat[n : 2 * n], flat[2 * n : 3 * n], flat[3 * n : 4 * n], ids, models, flat[5 * n : 6 * n]))
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
