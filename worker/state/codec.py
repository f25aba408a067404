"""Pack one patient's streaming state into compact bytes for Redis, and back.

Redis holds the durable copy of every patient's LSTM state so a restart or a rebalance picks
up where the last owner stopped. The format is a fixed header followed by raw
little-endian float arrays: no pickle (nothing in Redis can run code when read), no JSON
(floats must round-trip bit for bit so a restored patient scores exactly as if it had never
left), and small — about 1.1 KB for one layer of hidden 64 over 18 variables, 1.6 KB for two.

Layout (little-endian), format 2::

    header   magic "VW", format version u8, model-version length u8, layers u16, hidden u16,
             variables u16, prev_time f64, level i8, cleared_level i8, cleared_ts f64,
             watermark entries u16, recent ids K u8
    model version (UTF-8)
    h [L,H] f32, c [L,H] f32, last_value [V] f32, last_time [V] f64, recent ids [K] i64
    watermark entries: topic length u8, topic (UTF-8), partition i32, offset i64

Format 1 is the same without K and the recent ids; it still loads (as a patient with no
recent ids), so a worker upgraded over old state keeps every patient's history.

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
import struct
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

FORMAT_VERSION = 2
RECENT_IDS = 32
"""How many applied event ids a patient remembers: a resent event is recognised as long as
fewer than this many newer events of the same patient were applied since its first copy."""

_MAGIC = b"VW"
_HEAD_V1 = [
    ("magic", "S2"), ("format", "u1"), ("version_len", "u1"), ("layers", "<u2"), ("hidden", "<u2"),
    ("variables", "<u2"), ("prev_time", "<f8"), ("level", "i1"), ("cleared_level", "i1"),
    ("cleared_ts", "<f8"), ("watermarks", "<u2"),
]
_HEADS = {1: _HEAD_V1, 2: [*_HEAD_V1, ("recent", "u1")]}  # packed: numpy adds no padding unless asked
_PREFIX = np.dtype(_HEAD_V1[:2])  # magic and format: what tells the layouts apart
_WM_TAIL = struct.Struct("<iq")

Watermark = dict[tuple[str, int], int]
"""Last offset applied per (topic, partition): the idempotence record of one patient."""


def id_hashes(event_ids: Sequence[str]) -> np.ndarray:
    """The int64 hashes the recent-ids ring holds, one per event id.

    A fixed hash (BLAKE2b, 8 bytes), not Python's ``hash``, because records outlive the process
    that wrote them. Forced odd so that 0 can mark an empty place; with 63 bits a false match
    among a patient's 32 recent ids has odds of about 1 in 3e17."""
    digests = b"".join(hashlib.blake2b(e.encode(), digest_size=8).digest() for e in event_ids)
    return np.frombuffer(digests, dtype="<i8") | 1


class StateCodecError(ValueError):
    """The bytes are not a state record this code can read (corrupt, truncated, other format)."""


class ModelMismatchError(StateCodecError):
    """A readable record written for a different model (version or shape).

    ``watermark`` is still valid — it describes which inputs were consumed, not the model.
    """

    def __init__(self, message: str, watermark: Watermark) -> None:
        super().__init__(message)
        self.watermark = watermark


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


def pack_many(columns: Mapping[str, np.ndarray], watermarks: Sequence[Watermark], model_version: str) -> list[bytes]:
    """Serialise n patients at once; ``columns`` holds the ``PatientState`` array fields with a
    leading patient axis (h, c [n, L, H]; last_value, last_time [n, V]; recent_ids [n, K]; the
    scalars [n]).

    The fixed-size part of all records is laid out by one numpy record array (one copy, no
    per-field Python work), so packing a batch of 512 costs a few microseconds per patient.
    """
    version = model_version.encode()
    if not 0 < len(version) <= 255:
        raise StateCodecError(f"model version must be 1-255 bytes, got {len(version)}")
    n, num_layers, hidden = columns["h"].shape
    n_vars = columns["last_value"].shape[1]
    recent = columns["recent_ids"].shape[1]
    records = np.zeros(n, dtype=_record_dtype(FORMAT_VERSION, len(version), num_layers, hidden, n_vars, recent))
    records["magic"], records["format"], records["version_len"] = _MAGIC, FORMAT_VERSION, len(version)
    records["layers"], records["hidden"], records["variables"] = num_layers, hidden, n_vars
    records["recent"], records["version"] = recent, version
    records["watermarks"] = [len(w) for w in watermarks]
    for name in ("prev_time", "level", "cleared_level", "cleared_ts", "h", "c", "last_value", "last_time", "recent_ids"):
        records[name] = columns[name]
    blob, size = records.tobytes(), records.itemsize
    return [blob[i * size : (i + 1) * size] + _pack_watermark(w) for i, w in enumerate(watermarks)]


def _record_dtype(fmt: int, version_len: int, num_layers: int, hidden: int, n_vars: int, recent: int) -> np.dtype:
    """The fixed-size part of a record of format ``fmt`` (format 1 has no recent ids: ``recent`` 0)."""
    return np.dtype(
        _HEADS[fmt]
        + [
            ("version", f"S{version_len}"),
            ("h", "<f4", (num_layers, hidden)),
            ("c", "<f4", (num_layers, hidden)),
            ("last_value", "<f4", (n_vars,)),
            ("last_time", "<f8", (n_vars,)),
            ("recent_ids", "<i8", (recent,)),
        ]
    )


def _pack_watermark(watermark: Watermark) -> bytes:
    parts = []
    for (topic, partition), offset in watermark.items():
        name = topic.encode()
        parts.append(bytes((len(name),)) + name + _WM_TAIL.pack(partition, offset))
    return b"".join(parts)


def unpack(data: bytes, *, model_version: str, num_layers: int, hidden_size: int, n_vars: int) -> PatientState:
    """Parse a record (format 1 or 2) and check it belongs to this model.

    Raises ``StateCodecError`` for bytes that are not a valid record and
    ``ModelMismatchError`` for a valid record of another model version or shape.
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
    watermark = _unpack_watermark(data, dtype.itemsize, int(head["watermarks"]))
    stored_version = bytes(record["version"]).decode(errors="replace")
    if stored_version != model_version or (layers, hidden, nv) != (num_layers, hidden_size, n_vars):
        raise ModelMismatchError(
            f"state written by model {stored_version!r} (layers={layers}, hidden={hidden}, variables={nv}); "
            f"this worker runs {model_version!r} (layers={num_layers}, hidden={hidden_size}, variables={n_vars})",
            watermark,
        )
    return PatientState(
        h=record["h"],
        c=record["c"],
        last_value=record["last_value"],
        last_time=record["last_time"],
        prev_time=float(record["prev_time"]),
        level=int(record["level"]),
        cleared_level=int(record["cleared_level"]),
        cleared_ts=float(record["cleared_ts"]),
        recent_ids=_newest(record["recent_ids"], RECENT_IDS),
        watermark=watermark,
    )


def _newest(ids: np.ndarray, k: int) -> np.ndarray:
    """The ring at length ``k``: the newest ``k`` of ``ids`` (oldest first), empty places in front."""
    ring = np.zeros(k, dtype=np.int64)
    kept = ids[len(ids) - min(k, len(ids)) :]
    ring[k - len(kept) :] = kept
    return ring


def _unpack_watermark(data: bytes, pos: int, count: int) -> Watermark:
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
    if pos != len(data):
        raise StateCodecError(f"state record has {len(data) - pos} trailing bytes")
    return watermark
