"""Occlusion reasons credit the variable that actually moved the score."""

from __future__ import annotations

import math

import pytest
import torch

from models.features import Memory
from schemas.variables import VARIABLE_INDEX, VARIABLES
from worker.scoring.reasons import occlusion, top_reasons

V = len(VARIABLES)
NAMES = tuple(v.name for v in VARIABLES)
NORMAL = torch.tensor([v.normal for v in VARIABLES])


class CarryForwardEncoder:
    """Minimal encoder with the FeatureEncoder.step contract: carry values forward, a never
    observed variable reads as its normal value (feature 0). It reads every catalogue variable."""

    columns = torch.arange(V)

    def step(self, values, t, memory: Memory, context=None):
        observed = ~values.isnan()
        last_value = torch.where(observed, values, memory.last_value)
        last_time = torch.where(observed, t.unsqueeze(1), memory.last_time)
        x = torch.where(last_value.isnan(), NORMAL, last_value) - NORMAL
        return x, Memory(last_value, last_time, t, memory.counts + observed.float(), memory.first_time)


def memory_of(last_value: torch.Tensor) -> Memory:
    """A memory holding ``last_value`` [B, V] (observed at time 0 where given), nothing counted."""
    b = last_value.shape[0]
    nan = torch.full((b,), math.nan, dtype=torch.float64)
    return Memory(last_value, torch.where(last_value.isnan(), math.nan, 0.0).double(), nan, torch.zeros(b, V), nan)


class LinearRisk:
    """risk = sigmoid(w . x): the ground truth of which variable matters is ``w``."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.w = torch.zeros(V)
        for name, weight in weights.items():
            self.w[VARIABLE_INDEX[name]] = weight

    def step(self, x, h, c):
        return x @ self.w, h, c

    def risk(self, logits):
        return torch.sigmoid(logits)


def _row(**values: float) -> torch.Tensor:
    row = torch.full((V,), math.nan)
    for name, value in values.items():
        row[VARIABLE_INDEX[name]] = value
    return row


def test_the_perturbed_variable_comes_first() -> None:
    encoder, model = CarryForwardEncoder(), LinearRisk({"lactate": 1.5, "heart_rate": 0.02, "spo2": -0.05})
    # Row 0: lactate far from normal (5 vs 1), others near normal. Row 1: only heart rate is off.
    values = torch.stack([_row(lactate=5.0, heart_rate=80.0, spo2=96.0), _row(heart_rate=140.0, spo2=97.0)])
    memory = memory_of(torch.stack([_row(sodium=140.0), _row(lactate=1.0)]))
    t = torch.tensor([600.0, 600.0], dtype=torch.float64)
    h = c = torch.zeros(1, 2, 4)
    x, after = encoder.step(values, t, memory)
    current = after.last_value
    risk = model.risk(model.step(x, h, c)[0])

    contribution = occlusion(encoder, model, values=values, t=t, memory=memory, context=None, h=h, c=c, risk=risk)
    assert contribution.shape == (2, V)
    expected_lactate = risk[0] - torch.sigmoid(x[0] @ model.w - 1.5 * 4.0)
    assert contribution[0, VARIABLE_INDEX["lactate"]].item() == pytest.approx(expected_lactate.item(), rel=1e-5)

    reasons = top_reasons(contribution, current, NAMES)
    assert [r["variable"] for r in reasons[0]][:2] == ["lactate", "heart_rate"]
    assert reasons[0][0] == {"variable": "lactate", "value": 5.0, "unit": "mmol/L", "contribution": pytest.approx(expected_lactate.item(), rel=1e-5)}
    assert reasons[1][0]["variable"] == "heart_rate" and reasons[1][0]["value"] == 140.0
    # Never-observed variables cannot explain a score; carried-forward ones can.
    assert {r["variable"] for r in reasons[0]} == {"lactate", "heart_rate", "spo2", "sodium"}
    assert {r["variable"] for r in reasons[1]} == {"heart_rate", "spo2", "lactate"}


def test_at_most_five_reasons() -> None:
    contribution = torch.arange(V, dtype=torch.float32).unsqueeze(0)
    current = torch.ones(1, V)
    (reasons,) = top_reasons(contribution, current, NAMES)
    assert [r["variable"] for r in reasons] == [VARIABLES[j].name for j in range(V - 1, V - 6, -1)]


def test_values_are_reported_as_measured_not_as_float32_noise() -> None:
    current = torch.tensor([[37.2] + [math.nan] * (V - 1)])
    (reasons,) = top_reasons(torch.ones(1, V), current, NAMES)
    assert reasons == [{"variable": VARIABLES[0].name, "value": 37.2, "unit": VARIABLES[0].unit, "contribution": 1.0}]


class FirstColumnsEncoder(CarryForwardEncoder):
    """The same encoder for a model that reads only some variables (a checkpoint trained before
    the catalogue grew): it still carries the whole memory."""

    columns = torch.tensor([VARIABLE_INDEX["heart_rate"], VARIABLE_INDEX["lactate"]])

    def step(self, values, t, memory: Memory, context=None):
        x, after = super().step(values, t, memory, context)
        return x.index_select(1, self.columns), after


def test_only_the_models_own_variables_are_occluded_and_reported() -> None:
    """A variable the model does not read cannot have driven its score: it is neither occluded
    (no wasted rows) nor offered as a reason, however abnormal its value."""

    class TwoVariableRisk(LinearRisk):
        def __init__(self) -> None:
            self.w = torch.tensor([0.02, 1.5])  # heart_rate, lactate

    encoder, model = FirstColumnsEncoder(), TwoVariableRisk()
    values = _row(heart_rate=130.0, lactate=4.0, bun=120.0).unsqueeze(0)
    memory = memory_of(torch.full((1, V), math.nan))
    x, after = encoder.step(values, torch.tensor([60.0], dtype=torch.float64), memory)
    current = after.last_value
    risk = model.risk(model.step(x, None, None)[0])
    h = c = torch.zeros(1, 1, 4)
    contribution = occlusion(
        encoder, model, values=values, t=torch.tensor([60.0], dtype=torch.float64), memory=memory, context=None,
        h=h, c=c, risk=risk,
    )
    assert contribution.shape == (1, 2)
    (reasons,) = top_reasons(contribution, current.index_select(1, encoder.columns), ("heart_rate", "lactate"))
    assert [r["variable"] for r in reasons] == ["lactate", "heart_rate"]
