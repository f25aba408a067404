"""StateSlab: slots, gather/scatter, LRU order, host-record conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worker.scoring.slab import SlotState, StateSlab
from worker.state.codec import RECENT_IDS, PatientState, id_hashes

SHAPE = dict(num_layers=2, hidden_size=4, n_vars=3)
CPU = torch.device("cpu")


def _filled(n: int, base: float) -> SlotState:
    state = SlotState.fresh(n, device=CPU, **SHAPE)
    for i in range(n):
        state.h[:, i] = base + i
        state.c[:, i] = -(base + i)
        state.last_value[i] = base + i
        state.last_time[i] = 1e9 + base + i
        state.prev_time[i] = 1e9 + base + i
        state.level[i] = i % 3
    return state


def test_admit_gather_scatter_round_trip() -> None:
    slab = StateSlab(4, device=CPU, **SHAPE)
    slots = slab.admit(["a", "b"], _filled(2, 10.0), [{}, {("vitals", 0): 5}])
    assert len(slab) == 2 and slab.free == 2 and slab.watermark("b") == {("vitals", 0): 5}
    got = slab.gather(slab.index([slab.slot("b"), slab.slot("a")]))
    assert got.h[:, 0].eq(11.0).all() and got.h[:, 1].eq(10.0).all()
    assert got.last_time[0, 0].item() == 1e9 + 11.0 and got.last_time.dtype == torch.float64
    update = _filled(2, 100.0)
    slab.scatter(slab.index(slots), update)
    assert got.h[:, 0].eq(11.0).all(), "a gather is a copy"
    again = slab.gather(slab.index(slots))
    for name in ("h", "c", "last_value", "last_time", "prev_time", "level"):
        assert torch.equal(getattr(again, name), getattr(update, name))


def test_fresh_state_is_empty() -> None:
    s = SlotState.fresh(2, device=CPU, **SHAPE)
    assert s.h.shape == (2, 2, 4) and s.h.abs().sum() == 0
    assert s.last_value.isnan().all() and s.last_time.isnan().all() and s.prev_time.isnan().all()
    assert s.level.dtype == torch.int8 and s.cleared_ts.isnan().all()


def test_lru_order_and_eviction_frees_slots() -> None:
    slab = StateSlab(3, device=CPU, **SHAPE)
    slab.admit(["a", "b", "c"], _filled(3, 0.0), [{}, {}, {}])
    slab.touch(["a"])
    assert slab.patients() == ["b", "c", "a"]
    victims = slab.least_recent(2)
    assert victims == ["b", "c"]
    freed = {slab.slot(p) for p in victims}
    slab.remove(victims)
    assert "b" not in slab and slab.free == 2
    slots = slab.admit(["d", "e"], _filled(2, 50.0), [{}, {}])
    assert set(slots) == freed
    assert slab.patients() == ["a", "d", "e"]
    assert slab.gather(slab.index([slab.slot("d")])).h[0, 0, 0].item() == 50.0


def test_admit_beyond_capacity_refuses() -> None:
    slab = StateSlab(1, device=CPU, **SHAPE)
    slab.admit(["a"], _filled(1, 0.0), [{}])
    with pytest.raises(RuntimeError, match="slab full"):
        slab.admit(["b"], _filled(1, 0.0), [{}])


def test_host_records_round_trip_through_the_device_layout() -> None:
    rng = np.random.default_rng(0)
    records = [
        PatientState(
            h=rng.normal(size=(2, 4)).astype(np.float32),
            c=rng.normal(size=(2, 4)).astype(np.float32),
            last_value=np.array([1.0, np.nan, 3.0], np.float32),
            last_time=np.array([1e9, np.nan, 1e9 + 0.5]),
            prev_time=1e9 + i,
            level=i,
            cleared_level=1,
            cleared_ts=math.nan,
            recent_ids=np.roll(id_hashes([f"e{i}-{k}" for k in range(RECENT_IDS)]), i),
            watermark={("labs", i): i},
        )
        for i in range(3)
    ]
    state = SlotState.from_patients(records, CPU)
    assert state.h.shape == (2, 3, 4)
    host = state.to_host()
    assert host["h"].shape == (3, 2, 4)
    for i, r in enumerate(records):
        np.testing.assert_array_equal(host["h"][i], r.h)
        np.testing.assert_array_equal(host["last_time"][i], r.last_time)
        np.testing.assert_array_equal(host["recent_ids"][i], r.recent_ids)
        assert (host["prev_time"][i], host["level"][i], host["cleared_level"][i]) == (r.prev_time, r.level, r.cleared_level)


def test_recent_ids_ring_wraps_around_forgetting_the_oldest() -> None:
    slab = StateSlab(3, device=CPU, **SHAPE)
    slab.admit(["a", "b", "fresh"], SlotState.fresh(3, device=CPU, **SHAPE), [{}, {}, {}])
    slots = slab.index([slab.slot("a"), slab.slot("b")])
    a_ids = torch.from_numpy(id_hashes([f"a{k}" for k in range(RECENT_IDS + 1)]))
    b_ids = torch.from_numpy(id_hashes([f"b{k}" for k in range(RECENT_IDS + 1)]))
    a_slot = slots[:1].expand(RECENT_IDS + 1)
    one_each = torch.ones(2, dtype=torch.long)
    for k in range(RECENT_IDS + 1):  # one event each per batch
        state = slab.gather(slots)
        state.recent_ids = state.remember(torch.stack([a_ids[k], b_ids[k]]).unsqueeze(1), one_each)
        slab.scatter(slots, state)
        remembered = slab.holds_ids(a_slot, a_ids).tolist()
        oldest = max(0, k + 1 - RECENT_IDS)
        assert remembered == [oldest <= j <= k for j in range(RECENT_IDS + 1)], f"after {k + 1} events"
    assert torch.equal(slab.gather(slots).recent_ids[0], a_ids[1:]), "oldest first, newest last"
    assert not slab.holds_ids(slots[1:].expand(RECENT_IDS + 1), a_ids).any(), "each patient has its own ring"
    fresh = slab.index([slab.slot("fresh")]).expand(RECENT_IDS + 1)
    assert not slab.holds_ids(fresh, a_ids).any(), "an empty place (0) matches no id (ids are odd)"


def test_remembering_a_run_of_events_at_once_equals_one_after_another() -> None:
    """A batch applies each patient's events together: a ring fed ``counts[b]`` ids at once
    must equal the ring fed them one by one, whatever the rest of the padded row holds."""
    state = SlotState.fresh(3, device=CPU, **SHAPE)
    state.recent_ids = torch.from_numpy(id_hashes([f"old{j}" for j in range(3 * RECENT_IDS)])).view(3, RECENT_IDS)
    counts = torch.tensor([5, 1, RECENT_IDS + 3])
    ids = torch.from_numpy(id_hashes([f"new{j}" for j in range(3 * (RECENT_IDS + 3))])).view(3, RECENT_IDS + 3)
    at_once = state.remember(ids, counts)
    for b, n in enumerate(counts.tolist()):
        ring = state.recent_ids[b : b + 1]
        for k in range(n):
            one = SlotState.fresh(1, device=CPU, **SHAPE)
            one.recent_ids = ring
            ring = one.remember(ids[b : b + 1, k : k + 1], torch.ones(1, dtype=torch.long))
        assert torch.equal(at_once[b], ring[0]), f"row {b}"
    assert torch.equal(at_once[2], ids[2, 3:]), "more new ids than places: only the newest stay"
