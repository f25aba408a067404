"""Why did this alert fire: occlusion attribution on the alerting step.

A nurse paged at 3 a.m. needs to see which measurements drove the score. Occlusion answers
that with the model itself and no extra training: redo the alerting step with one variable
at a time made "never observed" (its current value, carried-forward value and observation
time erased, so the encoder falls back to the normal value with mask 0) from the same LSTM
state, and credit the variable with the risk it adds. Gradients would be cheaper but explain
an infinitesimal change, not "what if we had not measured this". It runs only for the rows
whose level changed, all K x V occlusions as one batched step (V: the variables the model
reads; one it does not read cannot have driven its score), so its cost scales with alerts, not
with traffic.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import torch

from models.features import Context, Memory
from schemas.variables import BY_NAME

TOP_K = 5


class _Encoder(Protocol):
    columns: torch.Tensor  # [V] long: the memory columns of the model's variables

    def step(
        self, values: torch.Tensor, t: torch.Tensor, memory: Memory, context: Context | None = None
    ) -> tuple[torch.Tensor, Memory]: ...


class _Model(Protocol):
    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def risk(self, logits: torch.Tensor) -> torch.Tensor: ...


def occlusion(
    encoder: _Encoder,
    model: _Model,
    *,
    values: torch.Tensor,
    t: torch.Tensor,
    memory: Memory,
    context: Context | None,
    h: torch.Tensor,
    c: torch.Tensor,
    risk: torch.Tensor,
) -> torch.Tensor:
    """Contribution [K, V] of each of the model's variables (``encoder.columns``) to ``risk``
    [K]: risk minus the risk of the same step with that variable never observed. Inputs are the
    alerting rows' step inputs (values [K, M] over the whole memory, t [K], the memory *before*
    the step, the context at it) and h, c [L, K, H]. Erasing a variable makes it never observed:
    no value now, none carried, never counted."""
    k = values.shape[0]
    v = encoder.columns.numel()
    rows = torch.arange(k * v, device=values.device)
    erased = encoder.columns.repeat(k)  # row k*V+j erases the model's j-th variable
    occluded = values.repeat_interleave(v, dim=0)
    occluded[rows, erased] = math.nan
    x, _ = encoder.step(
        occluded, t.repeat_interleave(v), memory.repeat_interleave(v).erased(erased, rows),
        None if context is None else context.repeat_interleave(v),
    )
    logits, _, _ = model.step(x, h.repeat_interleave(v, dim=1), c.repeat_interleave(v, dim=1))
    return risk.unsqueeze(1) - model.risk(logits).view(k, v)


def top_reasons(
    contribution: torch.Tensor, current: torch.Tensor, variables: Sequence[str], top_k: int = TOP_K
) -> list[list[dict[str, Any]]]:
    """Per row, the ``top_k`` of ``variables`` by |contribution| among those with a known value
    (``contribution`` and ``current`` [K, V] in the order of ``variables``, NaN = never
    observed: a missing variable cannot explain a score)."""
    magnitude = contribution.abs().masked_fill(current.isnan(), -1.0)
    order = magnitude.topk(min(top_k, contribution.shape[1]), dim=1).indices.cpu().tolist()
    contribution, current = contribution.cpu().tolist(), current.cpu().numpy()
    return [
        [
            {
                "variable": variables[j],
                # The shortest decimal that is this float32: 37.2, not 37.20000076293945.
                "value": float(str(current[row, j])),
                "unit": BY_NAME[variables[j]].unit,
                "contribution": contribution[row][j],
            }
            for j in order[row]
            if not math.isnan(current[row, j])
        ]
        for row in range(len(order))
    ]
