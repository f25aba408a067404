"""Pack one patient's streaming state into compact bytes for Redis, and back.

Redis holds the durable copy of every patient's LSTM state so a restart or a rebalance picks
up where the last owner stopped. The format is a fixed header followed by raw
little-endian float arrays: no pickle (nothing in Redis can run code when read), no JSON
(floats must round-trip bit for bit so a restored patient scores exactly as if it had never
left), and small — about 0.9 KB for one layer of hidden 64 over 18 variables.

Layout (little-endian)::

    header   magic "VW", format version u8, model-version length u8, layers u16, hidden u16,
             variables u16, prev_time f64, level i8, cleared_level i8, cleared_ts f64,
             watermark entries u16
    model version (UTF-8)
    h [L,H] f32, c [L,H] f32, last_value [V] f32, last_time [V] f64
    watermark entries: topic length u8, topic (UTF-8), partition i32, offset i64

The model version is part of the record because an LSTM state is meaningless to any other set
of weights: ``unpack`` refuses a state written by another model (``ModelMismatchError``, which
still carries the watermark so the caller can start the patient fresh without re-emitting
outputs for events it already published).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

FORMAT_VERSION = 1
_MAGIC = b"VW"
_HEAD_FIELDS = [
    ("magic", "S2"), ("format", "u1"), ("version_len", "u1"), ("layers", "<u2"), ("hidden", "<u2"),
    ("variables", "<u2"), ("prev_time", "<f8"), ("level", "i1"), ("cleared_level", "i1"),
    ("cleared_ts", "<f8"), ("watermarks", "<u2"),
]
_HEAD = np.dtype(_HEAD_FIELDS)  # packed: numpy adds no padding unless asked
_WM_TAIL = struct.Struct("<iq")

Watermark = dict[tuple[str, int], int]
"""Last offset applied per (topic, partition): the idempotence record of one patient."""

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
    watermark: Watermark = field(default_factory=dict)


def pack_many(columns: Mapping[str, np.ndarray], watermarks: Sequence[Watermark], model_version: str) -> list[bytes]:
    """Serialise n patients at once; ``columns`` holds the ``PatientState`` array fields with a
    leading patient axis (h, c [n, L, H]; last_value, last_time [n, V]; the scalars [n]).

    The fixed-size part of all records is laid out by one numpy record array (one copy, no
    per-field Python work), so packing a batch of 512 costs a few microseconds per patient.
    """
    version = model_version.encode()
    if not 0 < len(version) <= 255:
        raise StateCodecError(f"model version must be 1-255 bytes, got {len(version)}")
    n, num_layers, hidden = columns["h"].shape
    n_vars = columns["last_value"].shape[1]
    records = np.zeros(n, dtype=_record_dtype(len(version), num_layers, hidden, n_vars))
    records["magic"], records["format"], records["version_len"] = _MAGIC, FORMAT_VERSION, len(version)
    records["layers"], records["hidden"], records["variables"] = num_layers, hidden, n_vars
    records["version"] = version
    records["watermarks"] = [len(w) for w in watermarks]
    for name in ("prev_time", "level", "cleared_level", "cleared_ts", "h", "c", "last_value", "last_time"):
        records[name] = columns[name]
    blob, size = records.tobytes(), records.itemsize
    return [blob[i * size : (i + 1) * size] + _pack_watermark(w) for i, w in enumerate(watermarks)]


def _record_dtype(version_len: int, num_layers: int, hidden: int, n_vars: int) -> np.dtype:
    return np.dtype(
        _HEAD_FIELDS
        + [
            ("version", f"S{version_len}"),
            ("h", "<f4", (num_layers, hidden)),
            ("c", "<f4", (num_layers, hidden)),
            ("last_value", "<f4", (n_vars,)),
            ("last_time", "<f8", (n_vars,)),
        ]
    )


def _pack_watermark(watermark: Watermark) -> bytes:
    parts = []
    for (topic, partition), offset in watermark.items():
        name = topic.encode()
        parts.append(bytes((len(name),)) + name + _WM_TAIL.pack(partition, offset))
    return b"".join(parts)


def unpack(data: bytes, *, model_version: str, num_layers: int, hidden_size: int, n_vars: int) -> PatientState:
    """Parse a record and check it belongs to this model.

    Raises ``StateCodecError`` for bytes that are not a valid record and
    ``ModelMismatchError`` for a valid record of another model version or shape.
    """
    if len(data) < _HEAD.itemsize:
        raise StateCodecError(f"state record truncated: {len(data)} bytes, header needs {_HEAD.itemsize}")
    head = np.frombuffer(data, _HEAD, count=1)[0]
    if head["magic"] != _MAGIC:
        raise StateCodecError(f"not a vitalwatch state record (magic {bytes(head['magic'])!r})")
    if head["format"] != FORMAT_VERSION:
        raise StateCodecError(f"state format version {head['format']}, this worker reads {FORMAT_VERSION}")
    layers, hidden, nv = int(head["layers"]), int(head["hidden"]), int(head["variables"])
    dtype = _record_dtype(int(head["version_len"]), layers, hidden, nv)
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
        watermark=watermark,
    )


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
