"""Pack one patient's streaming state into compact bytes for Redis, and back.

Redis holds the durable copy of every patient's LSTM state so a restart or a rebalance picks
up where the last owner stopped. The format is a fixed header followed by raw
little-endian float arrays: no pickle (nothing in Redis can run code when read), no JSON
(floats must round-trip bit for bit so a restored patient scores exactly as if it had never
left), and small — about 1.5 KB for one layer of hidden 64 over the 37 catalogue variables.

Layout (little-endian), format 4::

    header   magic "VW", format version u8, model-version length u8, layers u16, hidden u16,
             variables u16, prev_time f64, level i8, cleared_level i8, cleared_ts f64,
             watermark entries u16, recent ids K u8,
             catalogue u32, flags u8, sex i8, unit i8, age f32, admitted_ts f64, first_time f64
    model version (UTF-8)
    h [L,H] f32, c [L,H] f32, last_value [V] f32, last_time [V] f64, counts [V] f32,
    recent ids [K] i64
    watermark entries: topic length u8, topic (UTF-8), partition i32, offset i64
    score history (worker.state.history): the patient's scores awaiting their label

``catalogue`` fingerprints the variable order of last_value/last_time (``catalogue_id``), so a
record written before the catalogue grew is read column by column by name into today's order.
The encounter context (age in years, sex and unit codes, -1 unknown, admission time, NaN
unknown) is the patient's, not the model's; flag bit 0 marks a discharged patient's tombstone
(its watermark and recent ids, kept so a redelivered event is still recognised). ``counts``
(measurements of each variable so far) and ``first_time`` (the patient's first event) are the
rest of the feature encoder's memory (models.features.Memory).

Format 3 is format 4 without the score history (it loads with none pending); format 2 is
format 3 without the fields after K and without counts (the first catalogue, no
context); format 1 is format 2 without K and the recent ids. Both still load (no context, no
counts, no first time, no recent ids for format 1), so a worker upgraded over old state keeps
every patient's history.

The recent ids are the hashes of the patient's last ``RECENT_IDS`` applied event ids, oldest
first (0 = empty place): the watermark recognises a redelivered offset, the ring a resent
event (same event_id at a new offset). K is in the header so a record written with another
K still loads (the newest K are kept).

The model version is part of the record because an LSTM state is meaningless to any other set
of weights: ``unpack`` refuses a state written by another model (``ModelMismatchError``, which
still carries the watermark so the caller can start the patient fresh without re-emitting
outputs for events it already published).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Collection, Mapping, Sequence

import numpy as np

from schemas.variables import PREVIOUS_CATALOGUES, VARIABLE_NAMES
from worker.state.history import HistoryError, ScoreHistory, pack_history, unpack_history

FORMAT_VERSION = 4
RECENT_IDS = 32
"""How many applied event ids a patient remembers: a resent event is recognised as long as
fewer than this many newer events of the same patient were applied since its first copy."""

_MAGIC = b"VW"
_HEAD_V1 = [
    ("magic", "S2"), ("format", "u1"), ("version_len", "u1"), ("layers", "<u2"), ("hidden", "<u2"),
    ("variables", "<u2"), ("prev_time", "<f8"), ("level", "i1"), ("cleared_level", "i1"),
    ("cleared_ts", "<f8"), ("watermarks", "<u2"),
]
_HEAD_V2 = [*_HEAD_V1, ("recent", "u1")]
_HEAD_V3 = [
    *_HEAD_V2, ("catalogue", "<u4"), ("flags", "u1"), ("sex", "i1"), ("unit", "i1"), ("age", "<f4"), ("admitted_ts", "<f8"),
    ("first_time", "<f8"),
]
_HEADS = {1: _HEAD_V1, 2: _HEAD_V2, 3: _HEAD_V3, 4: _HEAD_V3}  # packed: numpy adds no padding unless asked
_DISCHARGED = 1
#: The scalars format 3 added (the encounter context and the first event's time), and the value
#: each takes in a record of an older format: unknown.
ADDED_IN_V3: dict[str, float] = {"age": math.nan, "sex": -1, "unit": -1, "admitted_ts": math.nan, "first_time": math.nan}
_PREFIX = np.dtype(_HEAD_V1[:2])  # magic and format: what tells the layouts apart
_WM_TAIL = struct.Struct("<iq")
_NO_HISTORY = pack_history(ScoreHistory())

Watermark = dict[tuple[str, int], int]
"""Last offset applied per (topic, partition): the idempotence record of one patient."""


def id_hashes(event_ids: Sequence[str]) -> np.ndarray:
    """The int64 hashes the recent-ids ring holds, one per event id.

    A fixed hash (BLAKE2b, 8 bytes), not Python's ``hash``, because records outlive the process
    that wrote them. Forced odd so that 0 can mark an empty place; with 63 bits a false match
    among a patient's 32 recent ids has odds of about 1 in 3e17."""
    digests = b"".join(hashlib.blake2b(e.encode(), digest_size=8).digest() for e in event_ids)
    return np.frombuffer(digests, dtype="<i8") | 1


def catalogue_id(variables: Sequence[str]) -> int:
    """The fingerprint of a variable order, stored with every record (CRC-32 of the names)."""
    return zlib.crc32(",".join(variables).encode())


class StateCodecError(ValueError):
    """The bytes are not a state record this code can read (corrupt, truncated, other format)."""


class ModelMismatchError(StateCodecError):
    """A readable record written for a different model (version or shape).

    ``state`` holds what does not depend on the model and stays valid: the watermark and recent
    ids (which inputs were consumed), the encounter context, the discharge flag and the scores
    awaiting a label (each names the model that made it, so it stays valid); its LSTM
    state, values and level are those of a patient never seen.
    """

    def __init__(self, message: str, state: PatientState) -> None:
        super().__init__(message)
        self.state = state

    @property
    def watermark(self) -> Watermark:
        return self.state.watermark


@dataclass(slots=True)
class PatientState:
    """One patient's state as host arrays: what the slab holds in one slot, plus its watermark."""

    h: np.ndarray  # [L, H] float32
    c: np.ndarray  # [L, H] float32
    last_value: np.ndarray  # [V] float32, NaN = never observed
    last_time: np.ndarray  # [V] float64 POSIX s, NaN = never observed
    prev_time: float  # POSIX s of the last applied step, NaN before the first
    level: int  # alert level code (alert_policy.LEVELS index)
    cleared_level: int  # the level most recently cleared by a downgrade
    cleared_ts: float  # when that downgrade happened (NaN: never)
    recent_ids: np.ndarray  # [RECENT_IDS] int64 hashes of the last applied event ids, oldest first, 0 = empty
    watermark: Watermark = field(default_factory=dict)
    age: float = math.nan  # years at admission, NaN unknown
    sex: int = -1  # schemas.encounter sex code, -1 unknown
    unit: int = -1  # schemas.encounter unit code (current unit), -1 unknown
    admitted_ts: float = math.nan  # POSIX s of the admission, NaN unknown
    discharged: bool = False  # a tombstone: the patient left; only watermark and recent ids matter
    counts: np.ndarray | None = None  # [V] float32 measurements so far; None: none
    first_time: float = math.nan  # POSIX s of the patient's first event, NaN before it
    history: ScoreHistory = field(default_factory=ScoreHistory)  # scores awaiting their label

    @classmethod
    def fresh(cls, *, num_layers: int, hidden_size: int, n_vars: int) -> PatientState:
        """A patient never seen: zero LSTM state, nothing observed, level none, context unknown."""
        return cls(
            h=np.zeros((num_layers, hidden_size), np.float32),
            c=np.zeros((num_layers, hidden_size), np.float32),
            last_value=np.full(n_vars, np.nan, np.float32),
            last_time=np.full(n_vars, np.nan),
            prev_time=math.nan,
            level=0,
            cleared_level=0,
            cleared_ts=math.nan,
            recent_ids=np.zeros(RECENT_IDS, np.int64),
            counts=np.zeros(n_vars, np.float32),
        )


def pack_many(
    columns: Mapping[str, np.ndarray],
    watermarks: Sequence[Watermark],
    model_version: str,
    variables: Sequence[str] = VARIABLE_NAMES,
    histories: Sequence[ScoreHistory] | None = None,
) -> list[bytes]:
    """Serialise n patients at once; ``columns`` holds the ``PatientState`` array fields with a
    leading patient axis (h, c [n, L, H]; last_value, last_time, counts [n, V] in the order of
    ``variables``; recent_ids [n, K]; the scalars and the context [n]; ``discharged`` [n] bool
    is optional, absent meaning none); ``histories`` the patients' score histories (None: none
    pending).

    The fixed-size part of all records is laid out by one numpy record array (one copy, no
    per-field Python work), so packing a batch of 512 costs a few microseconds per patient.
    """
    version = model_version.encode()
    if not 0 < len(version) <= 255:
        raise StateCodecError(f"model version must be 1-255 bytes, got {len(version)}")
    n, num_layers, hidden = columns["h"].shape
    n_vars = columns["last_value"].shape[1]
    if n_vars != len(variables):
        raise StateCodecError(f"{n_vars} value columns for {len(variables)} variables")
    recent = columns["recent_ids"].shape[1]
    records = np.zeros(n, dtype=_record_dtype(FORMAT_VERSION, len(version), num_layers, hidden, n_vars, recent))
    records["magic"], records["format"], records["version_len"] = _MAGIC, FORMAT_VERSION, len(version)
    records["layers"], records["hidden"], records["variables"] = num_layers, hidden, n_vars
    records["recent"], records["version"] = recent, version
    records["catalogue"] = catalogue_id(variables)
    records["watermarks"] = [len(w) for w in watermarks]
    if "discharged" in columns:
        records["flags"] = np.where(columns["discharged"], _DISCHARGED, 0)
    for name in (
        "prev_time", "level", "cleared_level", "cleared_ts", "h", "c", "last_value", "last_time", "counts", "recent_ids",
        *ADDED_IN_V3,
    ):
        records[name] = columns[name]
    blob, size = records.tobytes(), records.itemsize
    tails = [pack_history(h) for h in histories] if histories is not None else [_NO_HISTORY] * n
    return [blob[i * size : (i + 1) * size] + _pack_watermark(w) + tails[i] for i, w in enumerate(watermarks)]


def _record_dtype(fmt: int, version_len: int, num_layers: int, hidden: int, n_vars: int, recent: int) -> np.dtype:
    """The fixed-size part of a record of format ``fmt`` (format 1 has no recent ids: ``recent``
    0; formats 1 and 2 no counts)."""
    counts = [("counts", "<f4", (n_vars,))] if fmt >= 3 else []
    return np.dtype(
        _HEADS[fmt]
        + [
            ("version", f"S{version_len}"),
            ("h", "<f4", (num_layers, hidden)),
            ("c", "<f4", (num_layers, hidden)),
            ("last_value", "<f4", (n_vars,)),
            ("last_time", "<f8", (n_vars,)),
            *counts,
            ("recent_ids", "<i8", (recent,)),
        ]
    )


def _pack_watermark(watermark: Watermark) -> bytes:
    parts = []
    for (topic, partition), offset in watermark.items():
        name = topic.encode()
        parts.append(bytes((len(name),)) + name + _WM_TAIL.pack(partition, offset))
    return b"".join(parts)


def unpack(
    data: bytes,
    *,
    model_version: str,
    num_layers: int,
    hidden_size: int,
    variables: Sequence[str] = VARIABLE_NAMES,
    previous: Sequence[Sequence[str]] = PREVIOUS_CATALOGUES,
    same_weights: Collection[str] = (),
) -> PatientState:
    """Parse a record (format 1 to 4) and check it belongs to this model (``model_version``,
    or one of ``same_weights``: versions with this model's very weights, such as the parent of
    a recalibration); values come back in the order of ``variables`` whatever catalogue
    (``variables`` or one of ``previous``) the record was written in.

    Raises ``StateCodecError`` for bytes that are not a valid record (or written in a variable
    order this worker does not know) and ``ModelMismatchError`` for a valid record of another
    model version or shape.
    """
    if len(data) < _PREFIX.itemsize:
        raise StateCodecError(f"state record truncated: {len(data)} bytes")
    prefix = np.frombuffer(data, _PREFIX, count=1)[0]
    if prefix["magic"] != _MAGIC:
        raise StateCodecError(f"not a vitalwatch state record (magic {bytes(prefix['magic'])!r})")
    fmt = int(prefix["format"])
    if fmt not in _HEADS:
        raise StateCodecError(f"state format version {fmt}, this worker reads {sorted(_HEADS)}")
    head_dtype = np.dtype(_HEADS[fmt])
    if len(data) < head_dtype.itemsize:
        raise StateCodecError(f"state record truncated: {len(data)} bytes, header needs {head_dtype.itemsize}")
    head = np.frombuffer(data, head_dtype, count=1)[0]
    layers, hidden, nv = int(head["layers"]), int(head["hidden"]), int(head["variables"])
    recent = int(head["recent"]) if fmt > 1 else 0
    dtype = _record_dtype(fmt, int(head["version_len"]), layers, hidden, nv, recent)
    if len(data) < dtype.itemsize:
        raise StateCodecError(f"state record truncated: {len(data)} bytes, arrays end at {dtype.itemsize}")
    record = np.frombuffer(data, dtype, count=1)[0]
    watermark, history = _unpack_tail(data, dtype.itemsize, int(head["watermarks"]), fmt)
    written_in = _catalogue(head, fmt, nv, variables, previous)
    added = {name: record[name].item() if fmt >= 3 else unknown for name, unknown in ADDED_IN_V3.items()}
    context = {name: value for name, value in added.items() if name != "first_time"}
    discharged = fmt >= 3 and bool(record["flags"] & _DISCHARGED)
    recent_ids = _newest(record["recent_ids"], RECENT_IDS)
    stored_version = bytes(record["version"]).decode(errors="replace")
    if (stored_version != model_version and stored_version not in same_weights) or (layers, hidden) != (num_layers, hidden_size):
        kept = PatientState.fresh(num_layers=num_layers, hidden_size=hidden_size, n_vars=len(variables))
        kept.watermark, kept.recent_ids, kept.discharged, kept.history = watermark, recent_ids, discharged, history
        for name, value in context.items():
            setattr(kept, name, value)
        raise ModelMismatchError(
            f"state written by model {stored_version!r} (layers={layers}, hidden={hidden}); "
            f"this worker runs {model_version!r} (layers={num_layers}, hidden={hidden_size})",
            kept,
        )
    return PatientState(
        h=record["h"],
        c=record["c"],
        last_value=_reorder(record["last_value"], written_in, variables),
        last_time=_reorder(record["last_time"], written_in, variables),
        prev_time=float(record["prev_time"]),
        level=int(record["level"]),
        cleared_level=int(record["cleared_level"]),
        cleared_ts=float(record["cleared_ts"]),
        recent_ids=recent_ids,
        watermark=watermark,
        discharged=discharged,
        history=history,
        counts=_reorder(record["counts"], written_in, variables, fill=0.0) if fmt >= 3 else np.zeros(len(variables), np.float32),
        **added,
    )


def _catalogue(
    head: np.void, fmt: int, n_vars: int, variables: Sequence[str], previous: Sequence[Sequence[str]]
) -> Sequence[str]:
    """The variable order a record's values were written in: by fingerprint (format 3), or the
    known order of that width (formats 1 and 2 predate the fingerprint)."""
    known = [*previous, variables]
    if fmt >= 3:
        found = {catalogue_id(c): c for c in known}.get(int(head["catalogue"]))
    else:
        found = next((c for c in known if len(c) == n_vars), None)
    if found is None or len(found) != n_vars:
        raise StateCodecError(f"state written in a variable order this worker does not know ({n_vars} variables)")
    return found


def _reorder(values: np.ndarray, written_in: Sequence[str], variables: Sequence[str], fill: float = math.nan) -> np.ndarray:
    """``values`` (in ``written_in`` order) in the order of ``variables``; ``fill`` for a
    variable the record predates."""
    if list(written_in) == list(variables):
        return values
    position = {name: i for i, name in enumerate(written_in)}
    out = np.full(len(variables), fill, dtype=values.dtype)
    for j, name in enumerate(variables):
        if name in position:
            out[j] = values[position[name]]
    return out


def _newest(ids: np.ndarray, k: int) -> np.ndarray:
    """The ring at length ``k``: the newest ``k`` of ``ids`` (oldest first), empty places in front."""
    ring = np.zeros(k, dtype=np.int64)
    kept = ids[len(ids) - min(k, len(ids)) :]
    ring[k - len(kept) :] = kept
    return ring


def _unpack_tail(data: bytes, pos: int, count: int, fmt: int) -> tuple[Watermark, ScoreHistory]:
    """The watermark after the fixed part, then (format 4) the score history; nothing may follow."""
    watermark: Watermark = {}
    try:
        for _ in range(count):
            n = data[pos]
            topic = data[pos + 1 : pos + 1 + n].decode()
            pos += 1 + n
            partition, offset = _WM_TAIL.unpack_from(data, pos)
            pos += _WM_TAIL.size
            watermark[(topic, partition)] = offset
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise StateCodecError(f"state record watermark unreadable: {exc}") from exc
    history = ScoreHistory()
    if fmt >= 4:
        try:
            history, pos = unpack_history(data, pos)
        except HistoryError as exc:
            raise StateCodecError(str(exc)) from exc
    if pos != len(data):
        raise StateCodecError(f"state record has {len(data) - pos} trailing bytes")
    return watermark, history
