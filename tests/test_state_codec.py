"""The state record must round-trip bit for bit and refuse what it cannot trust."""

from __future__ import annotations

import math

import numpy as np
import pytest

from schemas.variables import PREVIOUS_CATALOGUES, VARIABLE_NAMES
from tests.old_state_formats import V1_RECORD, V1_SHAPE, V1_STATE, V1_VARIABLES, as_v1, as_v2
from worker.state.codec import (
    RECENT_IDS,
    ModelMismatchError,
    PatientState,
    StateCodecError,
    id_hashes,
    pack_many,
    unpack,
)

SHAPE = {"num_layers": 2, "hidden_size": 64}
V = len(VARIABLE_NAMES)
ARRAYS = (
    "h", "c", "last_value", "last_time", "prev_time", "level", "cleared_level", "cleared_ts", "recent_ids",
    "age", "sex", "unit", "admitted_ts", "discharged", "counts", "first_time",
)


def pack(state: PatientState, model_version: str, variables: tuple[str, ...] = VARIABLE_NAMES) -> bytes:
    """One record through the batch packer (the engine always packs batches)."""
    columns = {name: np.asarray(getattr(state, name))[None] for name in ARRAYS}
    (data,) = pack_many(columns, [state.watermark], model_version, variables)
    return data


def _state(rng: np.random.Generator, n_vars: int = V) -> PatientState:
    last_value = rng.normal(size=n_vars).astype(np.float32)
    last_value[[3, 10]] = np.nan
    last_time = 1.7e9 + rng.uniform(0, 3600, size=n_vars)
    last_time[[3, 10]] = np.nan
    return PatientState(
        h=rng.normal(size=(2, 64)).astype(np.float32),
        c=rng.normal(size=(2, 64)).astype(np.float32),
        last_value=last_value,
        last_time=last_time,
        prev_time=1.7e9 + 3600.123456,
        level=2,
        cleared_level=1,
        cleared_ts=math.nan,
        recent_ids=np.concatenate([np.zeros(5, np.int64), id_hashes([f"e{i}" for i in range(RECENT_IDS - 5)])]),
        watermark={("vitals", 3): 12345678901, ("labs", 3): 7, ("fhir-observations", 0): 0},
        age=72.5,
        sex=0,
        unit=2,
        admitted_ts=1.7e9 - 86400.25,
        counts=rng.integers(0, 300, size=n_vars).astype(np.float32),
        first_time=1.7e9 - 3000.5,
    )


def test_round_trip_is_bit_exact_and_compact() -> None:
    state = _state(np.random.default_rng(0))
    data = pack(state, "risk-lstm-2025.1")
    assert len(data) <= 2048
    back = unpack(data, model_version="risk-lstm-2025.1", **SHAPE)
    for name in ("h", "c", "last_value", "last_time", "recent_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(state, name))
        assert getattr(back, name).tobytes() == np.asarray(getattr(state, name)).tobytes()
    assert (back.prev_time, back.level, back.cleared_level) == (state.prev_time, 2, 1)
    assert math.isnan(back.cleared_ts)
    assert back.watermark == state.watermark
    assert (back.age, back.sex, back.unit, back.admitted_ts, back.discharged) == (72.5, 0, 2, 1.7e9 - 86400.25, False)


def test_a_discharged_patients_tombstone_says_so() -> None:
    state = _state(np.random.default_rng(7))
    state.discharged = True
    assert unpack(pack(state, "v1"), model_version="v1", **SHAPE).discharged


def test_one_layer_hidden_64_with_recent_ids_context_and_counts_fits_in_1_5_kb() -> None:
    """The shipped model's shape over the 37-variable catalogue: 1,506 bytes with three
    watermark entries and no score pending, of which the 32 recent ids are 257, the encounter
    context 19, the measurement counts and first event's time 156 and the empty score history 20."""
    rng = np.random.default_rng(1)
    state = _state(rng)
    state.h, state.c = state.h[:1], state.c[:1]
    assert len(pack(state, "v1")) <= 1510


@pytest.mark.parametrize("old_format", [as_v2, as_v1], ids=["format-2", "format-1"])
def test_a_record_of_the_first_catalogue_is_read_by_name_into_todays(old_format) -> None:
    """State written before the catalogue grew (18 variables, no context): every value lands
    in its own variable's column, the new variables are unobserved, the context unknown."""
    first = PREVIOUS_CATALOGUES[0]
    old = _state(np.random.default_rng(8), n_vars=len(first))
    back = unpack(old_format(pack(old, "v1", first), num_layers=2, hidden_size=64, n_vars=len(first)), model_version="v1", **SHAPE)
    for j, name in enumerate(VARIABLE_NAMES):
        if name in first:
            i = first.index(name)
            np.testing.assert_array_equal(back.last_value[j], old.last_value[i])
            np.testing.assert_array_equal(back.last_time[j], old.last_time[i])
        else:
            assert math.isnan(back.last_value[j]) and math.isnan(back.last_time[j]), name
    np.testing.assert_array_equal(back.h, old.h)
    assert math.isnan(back.age) and back.sex == back.unit == -1 and math.isnan(back.admitted_ts)


def test_a_format_3_record_of_the_first_catalogue_is_read_by_name_too() -> None:
    first = PREVIOUS_CATALOGUES[0]
    old = _state(np.random.default_rng(9), n_vars=len(first))
    back = unpack(pack(old, "v1", first), model_version="v1", **SHAPE)
    assert back.last_value[VARIABLE_NAMES.index("hemoglobin")] == old.last_value[first.index("hemoglobin")]
    assert back.age == 72.5, "the context is read whatever the variable order"


def test_a_variable_order_this_worker_does_not_know_is_refused() -> None:
    unknown_order = tuple(reversed(VARIABLE_NAMES))
    data = pack(_state(np.random.default_rng(10)), "v1", unknown_order)
    with pytest.raises(StateCodecError, match="variable order this worker does not know"):
        unpack(data, model_version="v1", **SHAPE)


def test_batch_packing_matches_one_by_one() -> None:
    rng = np.random.default_rng(5)
    states = [_state(rng) for _ in range(3)]
    states[1].watermark = {}
    columns = {name: np.stack([np.asarray(getattr(s, name)) for s in states]) for name in ARRAYS}
    assert pack_many(columns, [s.watermark for s in states], "v1") == [pack(s, "v1") for s in states]
    back = unpack(pack_many(columns, [s.watermark for s in states], "v1")[2], model_version="v1", **SHAPE)
    np.testing.assert_array_equal(back.c, states[2].c)


def test_other_model_version_is_refused_but_keeps_what_is_not_the_models() -> None:
    """Watermark, recent ids and encounter context describe the patient and the inputs consumed,
    not the model: they survive a model upgrade; LSTM state, values and level start fresh."""
    state = _state(np.random.default_rng(2))
    data = pack(state, "old-model")
    with pytest.raises(ModelMismatchError, match="old-model") as info:
        unpack(data, model_version="new-model", **SHAPE)
    kept = info.value.state
    assert kept.watermark == state.watermark
    np.testing.assert_array_equal(kept.recent_ids, state.recent_ids)
    assert (kept.age, kept.sex, kept.unit, kept.admitted_ts) == (state.age, state.sex, state.unit, state.admitted_ts)
    assert not kept.h.any() and np.isnan(kept.last_value).all() and kept.level == 0 and math.isnan(kept.prev_time)


def test_a_version_with_the_same_weights_is_this_models_state() -> None:
    """A recalibration (same weights, another version) continues its parent's patients: after a
    restart or a reload their stored LSTM state loads as it is."""
    state = _state(np.random.default_rng(4))
    data = pack(state, "parent")
    loaded = unpack(data, model_version="parent-site-1", same_weights={"parent"}, **SHAPE)
    np.testing.assert_array_equal(loaded.h, state.h)
    assert loaded.level == state.level
    with pytest.raises(ModelMismatchError):
        unpack(data, model_version="parent-site-1", same_weights={"another"}, **SHAPE)
    with pytest.raises(ModelMismatchError, match="hidden=64"):  # the same version list never overrides the shape
        unpack(data, model_version="parent-site-1", same_weights={"parent"}, num_layers=2, hidden_size=32)


def test_other_shape_is_refused() -> None:
    data = pack(_state(np.random.default_rng(3)), "v1")
    with pytest.raises(ModelMismatchError, match="hidden=64"):
        unpack(data, model_version="v1", num_layers=2, hidden_size=32)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"XX" + d[2:], "magic"),
        (lambda d: d[:2] + bytes((99,)) + d[3:], "format version 99"),
        (lambda d: d[:2], "truncated"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:-23], "watermark unreadable"),
        (lambda d: d[:-3], "score history unreadable"),
        (lambda d: d + b"\0", "trailing"),
    ],
)
def test_corrupt_records_raise_codec_errors(mutate, message: str) -> None:
    data = pack(_state(np.random.default_rng(4)), "v1")
    with pytest.raises(StateCodecError, match=message):
        unpack(mutate(data), model_version="v1", **SHAPE)


def test_id_hashes_are_stable_odd_and_distinct() -> None:
    """The ring outlives the process, so the hash must not depend on it (Python's hash does)."""
    ids = [f"sim-{i}" for i in range(10_000)]
    hashes = id_hashes(ids)
    assert hashes.dtype == np.int64 and (hashes & 1).all(), "odd: 0 marks an empty place"
    assert len(set(hashes.tolist())) == len(ids)
    assert id_hashes(["sim-0"])[0] == hashes[0] == -5126020852494850905, "changing it would forget every stored ring"


def test_format_1_record_loads_with_no_recent_ids() -> None:
    """A record written before the ring (format 1) restores the patient's whole state."""
    back = unpack(V1_RECORD, model_version="m-1", num_layers=1, hidden_size=2, variables=V1_VARIABLES)
    for name in ("h", "c", "last_value", "last_time"):
        np.testing.assert_array_equal(getattr(back, name), V1_STATE[name])
    assert (back.prev_time, back.level, back.cleared_level) == (V1_STATE["prev_time"], 2, 1)
    assert back.watermark == V1_STATE["watermark"]
    assert back.recent_ids.shape == (RECENT_IDS,) and not back.recent_ids.any()


def test_as_v1_writes_what_format_1_wrote() -> None:
    """The helper the engine test uses to plant old state produces genuine format-1 bytes."""
    state = PatientState(**{**V1_STATE, "recent_ids": id_hashes([f"x{i}" for i in range(RECENT_IDS)])})
    assert as_v1(pack(state, "m-1", V1_VARIABLES), **V1_SHAPE) == V1_RECORD


@pytest.mark.parametrize("stored", [0, 4, RECENT_IDS, RECENT_IDS + 8])
def test_a_ring_of_another_length_keeps_its_newest_ids(stored: int) -> None:
    state = _state(np.random.default_rng(6))
    ids = id_hashes([f"r{i}" for i in range(stored)])
    state.recent_ids = ids
    back = unpack(pack(state, "v1"), model_version="v1", **SHAPE)
    kept = min(stored, RECENT_IDS)
    assert back.recent_ids.shape == (RECENT_IDS,)
    np.testing.assert_array_equal(back.recent_ids[RECENT_IDS - kept :], ids[stored - kept :])
    assert not back.recent_ids[: RECENT_IDS - kept].any()
