"""NEWS2, the Royal College of Physicians' National Early Warning Score (2017).

NEWS2 is the baseline the model must beat and the score every alert shows, so it is computed
for every event on the worker's hot path: one vectorised pass over a batch ``[B, V]`` of
latest values laid out in ``schemas.variables`` order, on whatever device the batch lives.

Rounding. The RCP charts are written for charted integers (temperature to one decimal), while
the worker sees continuous values (a monitor average, a unit conversion). Respiration rate,
SpO2, systolic pressure and pulse are therefore rounded to integers and temperature to one
decimal, half up (20.5 /min counts as 21; 36.05 °C as 36.1), before banding. Rounding half up
and then comparing with integer limits is the same as comparing the raw value with the
half-way points (``x < 20.5`` means "rounds to 20 or less"), which is what the tables below
store: one comparison per limit, no separate rounding step, identical in float32 and
float64 because the input and the limits go through the same conversion.

Only SpO2 scale 1 is implemented; scale 2 (target 88–92 % for hypercapnic respiratory
failure) needs a clinician's prescription per patient, which no input carries. The ward's
COPD patients therefore score as NEWS2 charts them on scale 1, false positives included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import torch

from schemas.variables import VARIABLE_INDEX, VARIABLES

NEWS2_COMPONENTS: tuple[str, ...] = (
    "resp_rate",
    "spo2",
    "on_oxygen",
    "sbp",
    "heart_rate",
    "consciousness",
    "temperature",
)

#: Clinical risk bands, indexed by the codes ``news2_risk_band`` returns.
RISK_BANDS: tuple[str, ...] = ("low", "low-medium", "medium", "high")

# Per component: the half-way limits between bands (ascending) and the points of each band,
# so band i covers limits[i-1] <= x < limits[i]. Written from the RCP 2017 chart.
_BANDS: dict[str, tuple[tuple[float, ...], tuple[int, ...]]] = {
    # <=8:3  9-11:1  12-20:0  21-24:2  >=25:3
    "resp_rate": ((8.5, 11.5, 20.5, 24.5), (3, 1, 0, 2, 3)),
    # scale 1: <=91:3  92-93:2  94-95:1  >=96:0
    "spo2": ((91.5, 93.5, 95.5), (3, 2, 1, 0)),
    # air:0  oxygen:2 (on_oxygen is 0/1)
    "on_oxygen": ((0.5,), (0, 2)),
    # <=90:3  91-100:2  101-110:1  111-219:0  >=220:3
    "sbp": ((90.5, 100.5, 110.5, 219.5), (3, 2, 1, 0, 3)),
    # <=40:3  41-50:1  51-90:0  91-110:1  111-130:2  >=131:3
    "heart_rate": ((40.5, 50.5, 90.5, 110.5, 130.5), (3, 1, 0, 1, 2, 3)),
    # ACVPU ordinal: A(0):0, new confusion C(1), V, P, U:3
    "consciousness": ((0.5,), (0, 3)),
    # <=35.0:3  35.1-36.0:1  36.1-38.0:0  38.1-39.0:1  >=39.1:2
    "temperature": ((35.05, 36.05, 38.05, 39.05), (3, 1, 0, 1, 2)),
}

_COLUMNS: tuple[int, ...] = tuple(VARIABLE_INDEX[name] for name in NEWS2_COMPONENTS)


@dataclass(frozen=True, slots=True)
class News2Result:
    """One patient's NEWS2: the aggregate, the points per parameter and the RCP risk band."""

    total: int
    components: dict[str, int]
    any_single_3: bool
    risk_band: str


_WIDTH = max(len(points) for _, points in _BANDS.values())


@lru_cache(maxsize=16)
def _tables(
    device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Value columns, padded limits ``[7, W-1]``, flat points ``[7*W]`` and row offsets.

    All seven parameters are banded at once (one compare, one sum, one gather), because on
    the hot path the number of kernel launches, not arithmetic, is the cost. Limits are padded
    with +inf, which no value reaches, so a short table never indexes its padding.
    """
    limits = torch.full((len(NEWS2_COMPONENTS), _WIDTH - 1), math.inf, dtype=dtype)
    points = torch.zeros((len(NEWS2_COMPONENTS), _WIDTH), dtype=torch.int64)
    for row, name in enumerate(NEWS2_COMPONENTS):
        bounds, scores = _BANDS[name]
        limits[row, : len(bounds)] = torch.tensor(bounds, dtype=dtype)
        points[row, : len(scores)] = torch.tensor(scores)
    offsets = torch.arange(len(NEWS2_COMPONENTS)) * _WIDTH
    columns = torch.tensor(_COLUMNS)
    return columns.to(device), limits.to(device), points.flatten().to(device), offsets.to(device)


def news2_components(values: torch.Tensor) -> torch.Tensor:
    """Points per NEWS2 parameter, ``[B, V]`` values -> ``[B, 7]`` int64 in NEWS2_COMPONENTS order.

    A NaN (not measured) scores 0 points: NEWS2 is charted from what was observed, and the
    worker passes carried-forward values, so NaN only means "never seen".
    """
    if not values.is_floating_point():
        values = values.float()
    columns, limits, points, offsets = _tables(values.device, values.dtype)
    x = values.index_select(1, columns)
    band = (x.unsqueeze(-1) >= limits).sum(dim=-1)
    scored = points[band + offsets]
    return torch.where(torch.isnan(x), torch.zeros_like(scored), scored)


def news2_total(components: torch.Tensor) -> torch.Tensor:
    """Aggregate NEWS2 ``[B]`` from ``[B, 7]`` component points."""
    return components.sum(dim=-1)


def news2_risk_band(components: torch.Tensor) -> torch.Tensor:
    """RCP clinical risk band codes ``[B]`` (indices into RISK_BANDS) from component points.

    Low 0–4; low-medium when a single parameter scores 3 and the aggregate is still 0–4;
    medium 5–6; high 7 or more.
    """
    total = news2_total(components)
    band = torch.zeros_like(total)
    band = torch.where((components == 3).any(dim=-1), torch.ones_like(band), band)
    band = torch.where(total >= 5, torch.full_like(band, 2), band)
    return torch.where(total >= 7, torch.full_like(band, 3), band)


def news2(values: Mapping[str, float]) -> News2Result:
    """NEWS2 of one observation set keyed by catalogue name (canonical units, ACVPU ordinal).

    Runs the batched tensor path on a batch of one so the single-patient score can never
    disagree with what the worker computes.
    """
    row = [math.nan] * len(VARIABLES)
    for name, value in values.items():
        row[VARIABLE_INDEX[name]] = math.nan if value is None else float(value)
    components = news2_components(torch.tensor([row], dtype=torch.float64))
    points = components[0].tolist()
    return News2Result(
        total=int(news2_total(components)[0]),
        components=dict(zip(NEWS2_COMPONENTS, points)),
        any_single_3=3 in points,
        risk_band=RISK_BANDS[int(news2_risk_band(components)[0])],
    )
