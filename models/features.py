"""The feature encoder: one patient event plus its memory in, one model input row out.

Events are irregular: vitals arrive minutes apart, labs hours apart, and one event carries only
a few variables. The encoder therefore keeps, per patient, a ``Memory`` — the latest value and
time of every catalogue variable, how often each was measured, when the patient's previous and
first events were (the slab's columns) — and turns each event into a dense row of
``n_features`` numbers over the ``V`` variables its checkpoint was trained on (a model trained
before a variable joined the catalogue never sees it, so its scores stay as they were while
the memory still carries the new variable for NEWS2 and later models). A checkpoint names the
groups of inputs it reads (``inputs``), laid out in that order:

* ``values``: ``V`` carried-forward values, z-scored with the training data's mean/std. A
  value loses weight toward the variable's normal (``schemas.variables``) as it ages, with the
  catalogue's ``decay_hours`` as time constant, because a 6-hour-old heart rate says less about
  now than a fresh one; a never-seen variable *is* its normal value, so "not measured" never
  reads as "abnormal".
* ``observed``: ``V`` observed-now flags: what this event measured.
* ``ages``: ``V`` hours since last observed, on a log scale capped at ``AGE_CAP_HOURS``, the
  cap standing for "never seen", so the LSTM can tell fresh from stale from absent.
* ``counts``: ``V`` numbers of measurements so far in the stay, on a log scale: how closely the
  unit watches this patient (what it chose to measure is information where it was learnt;
  whether that carries to another unit is what the ICU-type split of the model card tests).
* ``gap``: the time since the patient's previous event (hours, log scale, 0 for the first).
* ``since_admission``: hours since the admission (the encounter context), or since the
  patient's first event when no admission is known, on a log scale up to 60 days.
* ``age``: years / 100 and a known flag (0, 0 when the age is unknown).
* ``sex``: female and male flags (both 0 when unknown or other).

Checkpoints written before ``inputs`` existed read ``LEGACY_INPUTS``, exactly as they always did.

``FeatureEncoder.runs`` is the one function both the trainer and the worker fold events with:
pure tensor ops over runs of events, one run per patient, no loop over rows or steps, on
whatever device the tensors live. The worker hands it a micro-batch's real events (runs of
different lengths); ``steps`` hands it a padded [B, K] grid (``encode`` for whole training
sequences, ``step`` for one event each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from schemas.encounter import SEXES
from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLE_NAMES, VARIABLES

#: Width of the per-patient memory: every catalogue variable.
MEMORY_WIDTH = len(VARIABLES)

#: Ages at or beyond this many hours (and never-seen variables) encode as 1.0.
AGE_CAP_HOURS = 48.0
#: Time since admission at or beyond this (60 days) encodes as 1.0.
STAY_CAP_HOURS = 60 * 24.0
#: Measurement counts at or beyond this encode as 1.0.
COUNT_CAP = 1000.0
#: z-scores are clipped here: a plausible but extreme value must not saturate the LSTM gates.
Z_CLIP = 8.0
#: A variable whose training values barely vary (or that never occurs) gets at least this std,
#: in its own unit, so normalisation never divides by ~0.
MIN_STD = 1e-2

#: Every input group, and the groups of a checkpoint that names none.
INPUTS: tuple[str, ...] = ("values", "observed", "ages", "counts", "gap", "since_admission", "age", "sex")
LEGACY_INPUTS: tuple[str, ...] = ("values", "observed", "ages", "gap")
_PER_VARIABLE = frozenset({"values", "observed", "ages", "counts"})
_WIDTH = {"gap": 1, "since_admission": 1, "age": 2, "sex": 2}
_FEMALE, _MALE = SEXES.index("female"), SEXES.index("male")


def _log_scale(amount: torch.Tensor, cap: float) -> torch.Tensor:
    """[0, cap] -> [0, 1] on a log scale: minutes and days (or 1 and 100 measurements) both stay
    distinguishable."""
    return torch.log1p(amount.clamp(0.0, cap)) / math.log1p(cap)


def n_features(n_variables: int, inputs: Sequence[str] = LEGACY_INPUTS) -> int:
    """Model input width for ``n_variables`` variables and the input groups ``inputs``."""
    return sum(n_variables if group in _PER_VARIABLE else _WIDTH[group] for group in inputs)


@dataclass(slots=True)
class Memory:
    """What the encoder remembers of patients between events: [B, M] over the whole catalogue,
    [B] per patient. ``steps`` returns one per event, with a K axis after B."""

    last_value: torch.Tensor  # float32, NaN = never observed
    last_time: torch.Tensor  # float64 POSIX s, NaN = never observed
    prev_time: torch.Tensor  # float64, NaN before the first event
    counts: torch.Tensor  # float32 measurements so far
    first_time: torch.Tensor  # float64 time of the first event, NaN before it

    def erased(self, columns: torch.Tensor, rows: torch.Tensor) -> Memory:
        """A copy where the memory column ``columns[i]`` of row ``rows[i]`` is never observed:
        what occlusion reasons compare against."""
        value, time, counts = self.last_value.clone(), self.last_time.clone(), self.counts.clone()
        value[rows, columns], time[rows, columns], counts[rows, columns] = math.nan, math.nan, 0.0
        return Memory(value, time, self.prev_time, counts, self.first_time)

    def repeat_interleave(self, n: int) -> Memory:
        """Every row repeated ``n`` times in place (rows r, r, ..., r+1, ...)."""
        return Memory(*(t.repeat_interleave(n, dim=0) for t in self.fields()))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.last_value, self.last_time, self.prev_time, self.counts, self.first_time


@dataclass(slots=True)
class Context:
    """The encounter context in force at each event ([B, K], or [B] for one event each)."""

    age: torch.Tensor  # float32 years, NaN unknown
    sex: torch.Tensor  # int8 schemas.encounter code, -1 unknown
    admitted: torch.Tensor  # float64 POSIX s of the admission, NaN unknown

    @classmethod
    def unknown(cls, shape: tuple[int, ...], device: torch.device | str) -> Context:
        return cls(
            torch.full(shape, math.nan, device=device),
            torch.full(shape, -1, dtype=torch.int8, device=device),
            torch.full(shape, math.nan, dtype=torch.float64, device=device),
        )

    def repeat_interleave(self, n: int) -> Context:
        return Context(*(t.repeat_interleave(n, dim=0) for t in (self.age, self.sex, self.admitted)))


@dataclass(frozen=True, slots=True)
class Runs:
    """Where each event of a flat, patient-after-patient layout belongs (``FeatureEncoder.runs``)."""

    patient: torch.Tensor  # [N] long: its patient, a row of the memory
    start: torch.Tensor  # [N] long: where its patient's run starts in the layout


class FeatureEncoder(nn.Module):
    """The variables and input groups a model reads, their normalisation, normals and decays.

    An ``nn.Module`` only so ``.to(device)`` moves the buffers; it has no trainable
    parameters, and the statistics are stored in the checkpoint beside the weights.
    """

    mean: torch.Tensor
    std: torch.Tensor
    normal: torch.Tensor
    decay_hours: torch.Tensor
    columns: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        variables: Sequence[str] = VARIABLE_NAMES,
        inputs: Sequence[str] = LEGACY_INPUTS,
    ) -> None:
        super().__init__()
        self.variables = tuple(variables)
        self.inputs = tuple(inputs)
        unknown = [name for name in self.variables if name not in VARIABLE_INDEX]
        if unknown or len(set(self.variables)) != len(self.variables) or not self.variables:
            raise ValueError(f"variables must be distinct catalogue names, got {list(self.variables)} (unknown: {unknown})")
        if not self.inputs or len(set(self.inputs)) != len(self.inputs) or not set(self.inputs) <= set(INPUTS):
            raise ValueError(f"inputs must be distinct groups of {list(INPUTS)}, got {list(self.inputs)}")
        n = len(self.variables)
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (n,) or std.shape != (n,):
            raise ValueError(f"mean and std must have shape ({n},), got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("mean must be finite and std finite and positive")
        chosen = [BY_NAME[name] for name in self.variables]
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.register_buffer("normal", torch.tensor([v.normal for v in chosen], dtype=torch.float32))
        self.register_buffer("decay_hours", torch.tensor([v.decay_hours for v in chosen], dtype=torch.float32))
        self.register_buffer("columns", torch.tensor([VARIABLE_INDEX[name] for name in self.variables], dtype=torch.long))

    @property
    def n_features(self) -> int:
        return n_features(len(self.variables), self.inputs)

    @classmethod
    def fit(
        cls, values: Iterable[np.ndarray], variables: Sequence[str] = VARIABLE_NAMES, inputs: Sequence[str] = LEGACY_INPUTS
    ) -> FeatureEncoder:
        """Mean and std of each of ``variables`` over all observed values of ``values`` ([T, V]
        arrays over the whole catalogue, NaN = not measured), e.g. ``(s.values for s in training_series)``.

        A variable the data never measures falls back to its catalogue normal with std 1, so a
        site whose data lacks a lab can still train (that column then carries only "absent").
        """
        columns = [VARIABLE_INDEX[name] for name in variables]
        total = np.zeros(len(columns))
        square = np.zeros(len(columns))
        count = np.zeros(len(columns))
        for block in values:
            block = block[:, columns]
            seen = ~np.isnan(block)
            filled = np.where(seen, block, 0.0).astype(np.float64)
            total += filled.sum(axis=0)
            square += (filled**2).sum(axis=0)
            count += seen.sum(axis=0)
        normal = np.array([BY_NAME[name].normal for name in variables], dtype=np.float64)
        n = np.maximum(count, 1)
        mean = np.where(count > 0, total / n, normal)
        var = np.where(count > 1, square / n - mean**2, 1.0)
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), MIN_STD)
        return cls(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32), variables, inputs)

    def step(
        self, values: torch.Tensor, t: torch.Tensor, memory: Memory, context: Context | None = None
    ) -> tuple[torch.Tensor, Memory]:
        """Fold one event per patient into the memory and encode it.

        values [B, M] f32 over the whole catalogue (M = MEMORY_WIDTH, NaN = not measured now),
        t [B] f64 POSIX s, the memory before it, the context in force ([B] each; None: unknown).
        Returns (x [B, n_features] f32, the memory after it) — new tensors; the inputs are not
        modified. ``t`` must not precede ``memory.prev_time`` (the worker clamps it).
        """
        per_step = None if context is None else Context(*(c.unsqueeze(1) for c in (context.age, context.sex, context.admitted)))
        x, after = self.steps(values.unsqueeze(1), t.unsqueeze(1), memory, per_step)
        return x[:, 0], Memory(after.last_value[:, 0], after.last_time[:, 0], t.clone(), after.counts[:, 0], after.first_time)

    def steps(
        self, values: torch.Tensor, t: torch.Tensor, memory: Memory, context: Context | None = None
    ) -> tuple[torch.Tensor, Memory]:
        """Fold K consecutive events per patient into the memory and encode each, in one pass.

        values [B, K, M] f32, t [B, K] f64 (non-decreasing along K, none before prev_time), the
        memory before the first of them, the context at each ([B, K]; None: unknown). Returns
        (x [B, K, n_features], the memory after each event: last_value, last_time, counts
        [B, K, M], prev_time [B, K] (= t), first_time [B]). Row k is what ``step`` gives for
        event k after events 0..k-1. Padding events (all NaN, time repeated) leave the memory
        unchanged. ``runs`` over the flattened grid: every patient a run of K events.
        """
        batch, k_steps, width = values.shape
        patient = torch.arange(batch, device=values.device).repeat_interleave(k_steps)
        flat = None if context is None else Context(*(c.reshape(-1) for c in (context.age, context.sex, context.admitted)))
        x, after = self.runs(values.reshape(-1, width), t.reshape(-1), memory, Runs(patient, patient * k_steps), flat)
        grid = (batch, k_steps)
        return x.view(*grid, -1), Memory(
            after.last_value.view(*grid, width), after.last_time.view(*grid, width), t,
            after.counts.view(*grid, width), after.first_time,
        )

    def runs(
        self, values: torch.Tensor, t: torch.Tensor, memory: Memory, runs: Runs, context: Context | None = None
    ) -> tuple[torch.Tensor, Memory]:
        """Fold runs of events into the memory of their patients and encode each event, in one
        pass over the events and without a loop: values [N, M] f32 and t [N] f64 of N events
        laid out patient after patient (``runs``: each event's patient, a row of ``memory``
        [P, ...], and where its run starts; t non-decreasing within a run, none before the
        patient's prev_time), the context at each ([N]; None: unknown). Returns (x [N,
        n_features], the memory after each event: last_value, last_time, counts [N, M],
        prev_time [N] (= t), first_time [P]).

        Carrying values forward is a running "latest observed event" index (a cummax over all
        events, kept when it falls inside the event's own run) and counting is a running sum
        less the sum before the run, not a recurrence. The worker lays out only a batch's real
        events this way; ``steps`` a padded grid, for training, as runs of equal length.
        """
        n_events, width = values.shape
        patient, start = runs.patient, runs.start
        observed = ~torch.isnan(values)
        position = torch.arange(n_events, device=values.device).view(-1, 1).expand(n_events, width)
        latest = torch.where(observed, position, -1).cummax(dim=0).values  # latest observed event <= n, -1 none
        ever = latest >= start.view(-1, 1)  # ... of this run
        at = latest.clamp(min=0)
        last_value = torch.where(ever, values.gather(0, at), memory.last_value.index_select(0, patient))
        last_time = torch.where(ever, t.view(-1, 1).expand(n_events, width).gather(0, at), memory.last_time.index_select(0, patient))
        running = observed.cumsum(dim=0, dtype=torch.float32)
        before_run = (running - observed.float()).index_select(0, start)
        counts = memory.counts.index_select(0, patient) + (running - before_run)
        # The earliest real time of each run (an encounter's row may have none yet); fmin lets a
        # NaN (no event before) give way.
        earliest = torch.full_like(memory.first_time, math.inf).scatter_reduce(
            0, patient, torch.where(torch.isnan(t), math.inf, t), reduce="amin"
        )
        first_time = torch.fmin(memory.first_time, earliest.masked_fill(earliest == math.inf, math.nan))
        after = Memory(last_value, last_time, t, counts, first_time)
        if context is None:
            context = Context.unknown((n_events,), values.device)
        first = torch.arange(n_events, device=values.device) == start
        previous = torch.where(first, memory.prev_time.index_select(0, patient), t.roll(1))
        groups = self._groups(t, observed, previous, after, first_time.index_select(0, patient), context)
        return torch.cat([groups[name] for name in self.inputs], dim=1), after

    def _groups(
        self, t: torch.Tensor, observed: torch.Tensor, previous: torch.Tensor, after: Memory, first_time: torch.Tensor,
        context: Context,
    ) -> dict[str, torch.Tensor]:
        """Every input group this encoder reads, [N, width] each (only those: a legacy model
        pays nothing for the newer groups); ``previous``: the time of each event's previous
        event (its patient's prev_time for the first of a run), ``first_time`` its patient's."""
        wanted = set(self.inputs)
        groups: dict[str, torch.Tensor] = {}
        value = after.last_value.index_select(1, self.columns)  # the model's own variables from here on
        time = after.last_time.index_select(1, self.columns)
        seen = ~torch.isnan(time)
        age_h = ((t.unsqueeze(1) - time) / 3600.0).float()
        age_h = torch.where(seen, age_h.clamp(min=0.0), torch.full_like(age_h, AGE_CAP_HOURS))
        if "values" in wanted:
            weight = torch.exp(-age_h / self.decay_hours)
            current = torch.where(seen, self.normal + weight * (value - self.normal), self.normal)
            groups["values"] = ((current - self.mean) / self.std).clamp(-Z_CLIP, Z_CLIP)
        if "observed" in wanted:
            groups["observed"] = observed.index_select(1, self.columns).float()
        if "ages" in wanted:
            groups["ages"] = _log_scale(age_h, AGE_CAP_HOURS)
        if "counts" in wanted:
            groups["counts"] = _log_scale(after.counts.index_select(1, self.columns), COUNT_CAP)
        if "gap" in wanted:
            gap_h = torch.nan_to_num((t - previous) / 3600.0, nan=0.0).float()
            groups["gap"] = _log_scale(gap_h, AGE_CAP_HOURS).unsqueeze(1)
        if "since_admission" in wanted:
            start = torch.where(torch.isnan(context.admitted), first_time, context.admitted)
            stay_h = torch.nan_to_num((t - start) / 3600.0, nan=0.0).float()
            groups["since_admission"] = _log_scale(stay_h, STAY_CAP_HOURS).unsqueeze(1)
        if "age" in wanted:
            known = ~torch.isnan(context.age)
            groups["age"] = torch.stack([torch.where(known, context.age / 100.0, 0.0), known.float()], dim=1)
        if "sex" in wanted:
            groups["sex"] = torch.stack([(context.sex == _FEMALE).float(), (context.sex == _MALE).float()], dim=1)
        return groups

    def initial_memory(self, batch: int) -> Memory:
        """Memory of ``batch`` patients never seen: nothing observed, no event yet."""
        device = self.mean.device
        return Memory(
            torch.full((batch, MEMORY_WIDTH), math.nan, dtype=torch.float32, device=device),
            torch.full((batch, MEMORY_WIDTH), math.nan, dtype=torch.float64, device=device),
            torch.full((batch,), math.nan, dtype=torch.float64, device=device),
            torch.zeros((batch, MEMORY_WIDTH), dtype=torch.float32, device=device),
            torch.full((batch,), math.nan, dtype=torch.float64, device=device),
        )

    def encode(self, values: torch.Tensor, ts: torch.Tensor, context: Context | None = None) -> torch.Tensor:
        """A whole batch of sequences, values [B, T, M] f32, ts [B, T] f64 and the context at
        each event -> x [B, T, F].

        ``steps`` from an empty memory, so training sees exactly the rows serving computes.
        Padding rows (all-NaN values with a repeated time) after a sequence's end only produce
        rows the caller masks out.
        """
        return self.steps(values, ts, self.initial_memory(values.shape[0]), context)[0]
