"""Per-patient streaming state held in preallocated tensors on the model's device.

A micro-batch touches a few hundred patients out of tens of thousands resident. Keeping every
resident patient's LSTM state and feature memory in one set of preallocated tensors, indexed
by slot, turns a batch into one gather, one step and one scatter — no allocation, no host
round trip per patient, the same on CPU and GPU. The slot map is an LRU so a bounded slab can
serve an unbounded census: the least recently seen patients make room (the engine persists
them first when they hold unsaved changes). The hashes of each patient's recent event ids are
a column like any other, so recognising a resent event is one gather and one comparison for
the whole batch.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import numpy as np
import torch

from models.features import Memory
from worker.state.codec import RECENT_IDS, PatientState, Watermark
from worker.state.history import ScoreHistory


@dataclass(slots=True)
class SlotState:
    """State of a set of slots, batch-major except h/c which keep the LSTM's [L, B, H]."""

    h: torch.Tensor  # [L, B, H] float32
    c: torch.Tensor  # [L, B, H] float32
    last_value: torch.Tensor  # [B, V] float32, NaN = never observed
    last_time: torch.Tensor  # [B, V] float64, NaN = never observed
    prev_time: torch.Tensor  # [B] float64, NaN before the first step
    level: torch.Tensor  # [B] int8 alert level code
    cleared_level: torch.Tensor  # [B] int8 level most recently cleared by a downgrade
    cleared_ts: torch.Tensor  # [B] float64 time of that downgrade, NaN never
    recent_ids: torch.Tensor  # [B, RECENT_IDS] int64 hashes of the last applied event ids, oldest first, 0 = empty
    age: torch.Tensor  # [B] float32 years at admission, NaN unknown
    sex: torch.Tensor  # [B] int8 sex code, -1 unknown
    unit: torch.Tensor  # [B] int8 current unit code, -1 unknown
    admitted_ts: torch.Tensor  # [B] float64 admission time, NaN unknown
    counts: torch.Tensor  # [B, V] float32 measurements of each variable so far
    first_time: torch.Tensor  # [B] float64 time of the patient's first event, NaN before it

    @classmethod
    def fresh(cls, n: int, *, num_layers: int, hidden_size: int, n_vars: int, device: torch.device) -> SlotState:
        """The state of patients never seen: zero LSTM state, nothing observed, level none,
        encounter context unknown."""
        nan64 = dict(dtype=torch.float64, device=device)
        return cls(
            h=torch.zeros(num_layers, n, hidden_size, device=device),
            c=torch.zeros(num_layers, n, hidden_size, device=device),
            last_value=torch.full((n, n_vars), math.nan, device=device),
            last_time=torch.full((n, n_vars), math.nan, **nan64),
            prev_time=torch.full((n,), math.nan, **nan64),
            level=torch.zeros(n, dtype=torch.int8, device=device),
            cleared_level=torch.zeros(n, dtype=torch.int8, device=device),
            cleared_ts=torch.full((n,), math.nan, **nan64),
            recent_ids=torch.zeros(n, RECENT_IDS, dtype=torch.int64, device=device),
            age=torch.full((n,), math.nan, device=device),
            sex=torch.full((n,), -1, dtype=torch.int8, device=device),
            unit=torch.full((n,), -1, dtype=torch.int8, device=device),
            admitted_ts=torch.full((n,), math.nan, **nan64),
            counts=torch.zeros(n, n_vars, device=device),
            first_time=torch.full((n,), math.nan, **nan64),
        )

    @classmethod
    def from_patients(cls, states: Sequence[PatientState], device: torch.device) -> SlotState:
        """Stack host records into one device state (one copy per field, not per patient)."""

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        return cls(
            h=put(np.stack([s.h for s in states], axis=1)),
            c=put(np.stack([s.c for s in states], axis=1)),
            last_value=put(np.stack([s.last_value for s in states])),
            last_time=put(np.stack([s.last_time for s in states])),
            prev_time=put(np.array([s.prev_time for s in states], dtype=np.float64)),
            level=put(np.array([s.level for s in states], dtype=np.int8)),
            cleared_level=put(np.array([s.cleared_level for s in states], dtype=np.int8)),
            cleared_ts=put(np.array([s.cleared_ts for s in states], dtype=np.float64)),
            recent_ids=put(np.stack([s.recent_ids for s in states])),
            age=put(np.array([s.age for s in states], dtype=np.float32)),
            sex=put(np.array([s.sex for s in states], dtype=np.int8)),
            unit=put(np.array([s.unit for s in states], dtype=np.int8)),
            admitted_ts=put(np.array([s.admitted_ts for s in states], dtype=np.float64)),
            counts=put(np.stack([_counts(s) for s in states])),
            first_time=put(np.array([s.first_time for s in states], dtype=np.float64)),
        )

    def memory(self) -> Memory:
        """The feature encoder's part of this state."""
        return Memory(self.last_value, self.last_time, self.prev_time, self.counts, self.first_time)

    def to_host(self) -> dict[str, np.ndarray]:
        """Host arrays with a leading patient axis (h, c become [B, L, H]), one device-to-host
        copy per field: the columns ``worker.state.codec.pack_many`` takes."""
        columns = {f.name: getattr(self, f.name).cpu().numpy() for f in fields(self)}
        columns["h"] = columns["h"].transpose(1, 0, 2)
        columns["c"] = columns["c"].transpose(1, 0, 2)
        return columns

    def select(self, rows: torch.Tensor) -> SlotState:
        """The subset of rows ``rows`` (a long tensor on the state's device)."""
        return SlotState(**{f.name: _take(getattr(self, f.name), f.name, rows) for f in fields(self)})

    def remember(self, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The rows' recent ids after applying ``counts[b]`` more events each, whose ids are
        ``ids[b, :counts[b]]`` in order ([B, K]; the rest is ignored): the oldest fall out."""
        ring = self.recent_ids.shape[1]
        appended = torch.cat([self.recent_ids, ids], dim=1)
        window = counts.unsqueeze(1) + torch.arange(ring, device=ids.device).unsqueeze(0)
        return appended.gather(1, window)


def _counts(state: PatientState) -> np.ndarray:
    """A record's measurement counts (zeros when it has none: written before they were kept)."""
    return state.counts if state.counts is not None else np.zeros(len(state.last_value), np.float32)


def _batch_dim(name: str) -> int:
    return 1 if name in ("h", "c") else 0


def _take(tensor: torch.Tensor, name: str, rows: torch.Tensor) -> torch.Tensor:
    return tensor.index_select(_batch_dim(name), rows)


class StateSlab:
    """``capacity`` patients' state on ``device``, a patient -> slot map in LRU order, watermarks.

    The watermark ({(topic, partition): last offset applied}) and the score history (the
    scores awaiting their label, worker.state.history) live beside the tensors because they
    change with them: they are part of the same per-patient record in Redis.
    """

    def __init__(self, capacity: int, *, num_layers: int, hidden_size: int, n_vars: int, device: torch.device) -> None:
        if capacity < 1:
            raise ValueError(f"slab capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.device = device
        self.shape = dict(num_layers=num_layers, hidden_size=hidden_size, n_vars=n_vars)
        self.state = SlotState.fresh(capacity, device=device, **self.shape)
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._free = list(range(capacity - 1, -1, -1))
        self._watermarks: dict[str, Watermark] = {}
        self._histories: dict[str, ScoreHistory] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, patient_id: object) -> bool:
        return patient_id in self._slots

    @property
    def free(self) -> int:
        return len(self._free)

    def patients(self) -> list[str]:
        """Resident patients, least recently used first."""
        return list(self._slots)

    def slot(self, patient_id: str) -> int:
        return self._slots[patient_id]

    def watermark(self, patient_id: str) -> Watermark:
        """The live watermark dict of a resident patient (the engine updates it in place)."""
        return self._watermarks[patient_id]

    def history(self, patient_id: str) -> ScoreHistory:
        """The live score history of a resident patient (the engine's labelling updates it)."""
        return self._histories[patient_id]

    def touch(self, patient_ids: Iterable[str]) -> None:
        """Mark resident patients most recently used."""
        for p in patient_ids:
            self._slots.move_to_end(p)

    def least_recent(self, n: int) -> list[str]:
        """The ``n`` least recently used residents: whom to evict to make room for ``n``."""
        return [p for p, _ in zip(self._slots, range(n))]

    def admit(
        self,
        patient_ids: Sequence[str],
        state: SlotState,
        watermarks: Sequence[Watermark],
        histories: Sequence[ScoreHistory] | None = None,
    ) -> list[int]:
        """Give new patients slots (most recently used) and write their initial state (an empty
        score history unless ``histories`` gives theirs)."""
        if len(patient_ids) > len(self._free):
            raise RuntimeError(f"slab full: {len(patient_ids)} to admit, {len(self._free)} free; evict first")
        slots = [self._free.pop() for _ in patient_ids]
        for i, (p, s, wm) in enumerate(zip(patient_ids, slots, watermarks)):
            self._slots[p] = s
            self._watermarks[p] = wm
            self._histories[p] = histories[i] if histories is not None else ScoreHistory()
        self.scatter(self.index(slots), state)
        return slots

    def remove(self, patient_ids: Iterable[str]) -> None:
        """Forget patients (their slots become free; the tensors are overwritten on reuse)."""
        for p in patient_ids:
            self._free.append(self._slots.pop(p))
            del self._watermarks[p]
            del self._histories[p]

    def index(self, slots: Sequence[int]) -> torch.Tensor:
        return torch.tensor(slots, dtype=torch.long, device=self.device)

    def gather(self, slots: torch.Tensor) -> SlotState:
        """A copy of the state in ``slots`` (later scatters do not change it)."""
        return self.state.select(slots)

    def holds_ids(self, slots: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[B] bool: whether ``ids[i]`` is among the recent ids of ``slots[i]`` (one gather of
        that column and one comparison for the whole batch, not a lookup per event)."""
        return (self.state.recent_ids.index_select(0, slots) == ids.unsqueeze(1)).any(dim=1)

    def scatter(self, slots: torch.Tensor, update: SlotState) -> None:
        """Write ``update`` into ``slots`` (distinct slots; one index_copy_ per field)."""
        for f in fields(SlotState):
            getattr(self.state, f.name).index_copy_(_batch_dim(f.name), slots, getattr(update, f.name))
