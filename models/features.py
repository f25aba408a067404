"""The feature encoder: one patient event plus its memory in, one model input row out.

Events are irregular: vitals arrive minutes apart, labs hours apart, and one event carries only
a few variables. The encoder therefore keeps, per patient, the latest value and time of every
catalogue variable (``last_value``/``last_time``, the slab's columns) and turns each event into
a dense row of ``n_features`` numbers over the ``V`` variables its checkpoint was trained on (a
model trained before a variable joined the catalogue never sees it, so its scores stay as they
were while the memory still carries the new variable for NEWS2 and later models):

* ``V`` carried-forward values, z-scored with the training data's mean/std. A value loses
  weight toward the variable's normal (``schemas.variables``) as it ages, with the catalogue's
  ``decay_hours`` as time constant, because a 6-hour-old heart rate says less about now than a
  fresh one; a never-seen variable *is* its normal value, so "not measured" never reads as
  "abnormal".
* ``V`` observed-now flags: what this event measured.
* ``V`` ages (hours since last observed) on a log scale capped at ``AGE_CAP_HOURS``, the cap
  standing for "never seen", so the LSTM can tell fresh from stale from absent.
* the time since the patient's previous event (hours, same log scale, 0 for the first event).

``FeatureEncoder.steps`` is the one function both the trainer and the worker call (``step`` is
its one-event case): pure tensor ops over a batch of patients and a run of their events, no
loop over rows or steps, on whatever device the tensors live.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLE_NAMES, VARIABLES

#: Width of the per-patient memory: every catalogue variable.
MEMORY_WIDTH = len(VARIABLES)

#: Ages at or beyond this many hours (and never-seen variables) encode as 1.0.
AGE_CAP_HOURS = 48.0
#: z-scores are clipped here: a plausible but extreme value must not saturate the LSTM gates.
Z_CLIP = 8.0
#: A variable whose training values barely vary (or that never occurs) gets at least this std,
#: in its own unit, so normalisation never divides by ~0.
MIN_STD = 1e-2

_LOG_CAP = math.log1p(AGE_CAP_HOURS)


def _log_hours(hours: torch.Tensor) -> torch.Tensor:
    """Hours -> [0, 1] on a log scale: minutes and days both stay distinguishable."""
    return torch.log1p(hours.clamp(0.0, AGE_CAP_HOURS)) / _LOG_CAP


def n_features(n_variables: int) -> int:
    """Model input width for ``n_variables`` variables: value, observed-now flag and age of each,
    plus the time since the previous event."""
    return 3 * n_variables + 1


class FeatureEncoder(nn.Module):
    """The variables a model reads, their normalisation, normals and decays, as buffers.

    An ``nn.Module`` only so ``.to(device)`` moves the buffers; it has no trainable
    parameters, and the statistics are stored in the checkpoint beside the weights.
    """

    mean: torch.Tensor
    std: torch.Tensor
    normal: torch.Tensor
    decay_hours: torch.Tensor
    columns: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, variables: Sequence[str] = VARIABLE_NAMES) -> None:
        super().__init__()
        self.variables = tuple(variables)
        unknown = [name for name in self.variables if name not in VARIABLE_INDEX]
        if unknown or len(set(self.variables)) != len(self.variables) or not self.variables:
            raise ValueError(f"variables must be distinct catalogue names, got {list(self.variables)} (unknown: {unknown})")
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
        return n_features(len(self.variables))

    @classmethod
    def fit(cls, values: Iterable[np.ndarray], variables: Sequence[str] = VARIABLE_NAMES) -> FeatureEncoder:
        """Mean and std of each of ``variables`` over all observed values of ``values`` ([T, V]
        arrays over the whole catalogue, NaN = not measured), e.g. ``(s.values for s in training_series)``.

        A variable the data never measures falls back to its catalogue normal with std 1, so a
        site whose data lacks a lab can still train (that column then carries only "absent").
        """
        columns = [VARIABLE_INDEX[name] for name in variables]
        V = len(columns)
        total = np.zeros(V)
        square = np.zeros(V)
        count = np.zeros(V)
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
        return cls(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32), variables)

    def step(
        self,
        values: torch.Tensor,
        t: torch.Tensor,
        last_value: torch.Tensor,
        last_time: torch.Tensor,
        prev_time: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fold one event per patient into the memory and encode it.

        values [B, M] f32 over the whole catalogue (M = MEMORY_WIDTH, NaN = not measured now),
        t [B] f64 POSIX s, last_value [B, M] f32 and last_time [B, M] f64 (NaN = never seen),
        prev_time [B] f64 (NaN = first event).
        Returns (x [B, n_features] f32, last_value, last_time, prev_time) — new tensors; the
        inputs are not modified. ``t`` must not precede ``prev_time`` (the worker clamps it).
        """
        x, last_value, last_time = self.steps(values.unsqueeze(1), t.unsqueeze(1), last_value, last_time, prev_time)
        return x[:, 0], last_value[:, 0], last_time[:, 0], t.clone()

    def steps(
        self,
        values: torch.Tensor,
        t: torch.Tensor,
        last_value: torch.Tensor,
        last_time: torch.Tensor,
        prev_time: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fold K consecutive events per patient into the memory and encode each, in one pass.

        values [B, K, M] f32, t [B, K] f64 (non-decreasing along K, none before prev_time), and
        the memory before the first of them as in ``step``. Returns (x [B, K, n_features],
        last_value [B, K, M], last_time [B, K, M]): row k is what ``step`` gives for event k
        after events 0..k-1, since carrying values forward is a running "latest observed"
        index (a cummax), not a recurrence; the previous event's time is t[:, k-1]. Padding
        events (all NaN, time repeated) leave the memory unchanged.
        """
        batch, k_steps, n_vars = values.shape
        observed = ~torch.isnan(values)
        position = torch.arange(k_steps, device=values.device).view(1, k_steps, 1).expand(batch, k_steps, n_vars)
        latest = torch.where(observed, position, -1).cummax(dim=1).values  # latest observed step <= k, -1 none
        ever = latest >= 0
        at = latest.clamp(min=0)
        t_each = t.unsqueeze(2).expand(batch, k_steps, n_vars)
        last_value = torch.where(ever, values.gather(1, at), last_value.unsqueeze(1))
        last_time = torch.where(ever, t_each.gather(1, at), last_time.unsqueeze(1))

        # The model's own variables from here on: the memory above keeps every column.
        value, time = last_value.index_select(2, self.columns), last_time.index_select(2, self.columns)
        seen = ~torch.isnan(time)
        age_h = ((t.unsqueeze(2) - time) / 3600.0).float()
        age_h = torch.where(seen, age_h.clamp(min=0.0), torch.full_like(age_h, AGE_CAP_HOURS))
        weight = torch.exp(-age_h / self.decay_hours)
        current = torch.where(seen, self.normal + weight * (value - self.normal), self.normal)
        z = ((current - self.mean) / self.std).clamp(-Z_CLIP, Z_CLIP)

        previous = torch.cat([prev_time.unsqueeze(1), t[:, :-1]], dim=1)
        gap_h = torch.nan_to_num((t - previous) / 3600.0, nan=0.0).float()
        now = observed.index_select(2, self.columns).float()
        x = torch.cat([z, now, _log_hours(age_h), _log_hours(gap_h).unsqueeze(2)], dim=2)
        return x, last_value, last_time

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory of ``batch`` patients never seen: (last_value, last_time, prev_time), all NaN."""
        device = self.mean.device
        return (
            torch.full((batch, MEMORY_WIDTH), math.nan, dtype=torch.float32, device=device),
            torch.full((batch, MEMORY_WIDTH), math.nan, dtype=torch.float64, device=device),
            torch.full((batch,), math.nan, dtype=torch.float64, device=device),
        )

    def encode(self, values: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """A whole batch of sequences, values [B, T, M] f32 and ts [B, T] f64 -> x [B, T, F].

        ``steps`` from an empty memory, so training sees exactly the rows serving computes.
        Padding rows (all-NaN values with a repeated time) after a sequence's end only produce
        rows the caller masks out.
        """
        last_value, last_time, prev_time = self.initial_state(values.shape[0])
        return self.steps(values, ts, last_value, last_time, prev_time)[0]
