"""State records of earlier formats, for the compatibility tests.

Redis holds records written by earlier workers for up to the state TTL, so an upgraded worker
must read them. ``V1_RECORD`` is a record exactly as format 1 packed it (bytes taken from the
format-1 ``pack_many``); ``as_v3`` turns a record of today's format into the format-3 record
of the same state (no score history), ``as_v2`` turns a record of today's format into the format-2 record of
the same state (no catalogue fingerprint, no encounter context) and ``as_v1`` into the format-1
record (no recent ids either), so a test can put old-format state for any model shape into
Redis. The codec test checks ``as_v1`` against ``V1_RECORD``.
"""

from __future__ import annotations

import math

import numpy as np

from worker.state.codec import RECENT_IDS

#: Layers 1, hidden 2, variables 3, model "m-1"; the values of ``V1_STATE``.
V1_RECORD = bytes.fromhex(
    "565701030100020003000000204ffc54d9410201000000000000f87f02006d2d310000003f0000a0bf00000040"
    "000040bf0000c2420000c07f0000c03f00000040fc54d941000000000000f87f0000204ffc54d941067669746"
    "16c73030000002900000000000000046c616273000000000700000000000000"
)
V1_SHAPE = {"num_layers": 1, "hidden_size": 2, "n_vars": 3}
#: The variable order V1_RECORD's three values stand for in the tests.
V1_VARIABLES = ("spo2", "lactate", "heart_rate")
V1_STATE = {
    "h": np.array([[0.5, -1.25]], np.float32),
    "c": np.array([[2.0, -0.75]], np.float32),
    "last_value": np.array([97.0, np.nan, 1.5], np.float32),
    "last_time": np.array([1.7e9, np.nan, 1.7e9 + 60.5]),
    "prev_time": 1.7e9 + 60.5,
    "level": 2,
    "cleared_level": 1,
    "cleared_ts": math.nan,
    "watermark": {("vitals", 3): 41, ("labs", 0): 7},
    "counts": np.array([4.0, 0.0, 2.0], np.float32),
}

_HEAD_V1 = 30  # bytes; format 2 adds one (K) at its end
_HEAD_V2 = 31  # format 3 adds catalogue u32, flags, sex, unit, age f32, admitted_ts f64, first_time f64
_HEAD_V3 = 58


def as_v3(record: bytes, *, num_layers: int, hidden_size: int, n_vars: int) -> bytes:
    """The format-3 record of the state in a format-4 ``record``: format byte 3, nothing after
    the watermark (format 4 adds the score history there)."""
    version_len, recent = record[3], record[30]
    pos = _HEAD_V3 + version_len + 2 * num_layers * hidden_size * 4 + n_vars * (4 + 8 + 4) + recent * 8
    for _ in range(int.from_bytes(record[28:30], "little")):  # watermark entries: topic, partition, offset
        pos += 1 + record[pos] + 12
    return record[:2] + b"\x03" + record[3:pos]


def as_v2(record: bytes, *, num_layers: int, hidden_size: int, n_vars: int) -> bytes:
    """The format-2 record of the state in a format-4 ``record``: format byte 2, the header
    without the fields format 3 added, no counts after last_time, no score history."""
    record = as_v3(record, num_layers=num_layers, hidden_size=hidden_size, n_vars=n_vars)
    version_len = record[3]
    counts_at = _HEAD_V3 + version_len + 2 * num_layers * hidden_size * 4 + n_vars * (4 + 8)
    body = record[_HEAD_V3:counts_at] + record[counts_at + n_vars * 4 :]
    return record[:2] + b"\x02" + record[3:_HEAD_V2] + body


def as_v1(record: bytes, *, num_layers: int, hidden_size: int, n_vars: int) -> bytes:
    """The format-1 record of the state in a format-4 ``record`` written with ``RECENT_IDS``:
    format byte 1, no K in the header, no recent ids after the arrays."""
    record = as_v2(record, num_layers=num_layers, hidden_size=hidden_size, n_vars=n_vars)
    version_len = record[3]
    arrays_end = _HEAD_V1 + 1 + version_len + 2 * num_layers * hidden_size * 4 + n_vars * (4 + 8)
    return (
        record[:2] + b"\x01" + record[3:_HEAD_V1] + record[_HEAD_V1 + 1 : arrays_end]
        + record[arrays_end + RECENT_IDS * 8 :]
    )
