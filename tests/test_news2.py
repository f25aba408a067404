"""NEWS2 against the RCP 2017 chart, worked by hand at every band edge of every parameter.

Each parameter is tested alone (every other parameter unmeasured, so it scores 0 points), on
both sides of each edge, through the single-patient ``news2`` and the batched float32 path
the worker runs. Decimal values follow the rule documented in models/news2.py: charted
precision (integers; temperature one decimal) rounded half up before banding.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.news2 import NEWS2_COMPONENTS, RISK_BANDS, news2, news2_components, news2_risk_band, news2_total
from schemas.variables import VARIABLE_INDEX, VARIABLES

# (parameter, value, points): both sides of every edge of the RCP 2017 chart.
EDGES: list[tuple[str, float, int]] = [
    # Respiration rate: <=8:3  9-11:1  12-20:0  21-24:2  >=25:3
    ("resp_rate", 3, 3), ("resp_rate", 8, 3), ("resp_rate", 9, 1), ("resp_rate", 11, 1), ("resp_rate", 12, 0),
    ("resp_rate", 20, 0), ("resp_rate", 21, 2), ("resp_rate", 24, 2), ("resp_rate", 25, 3), ("resp_rate", 60, 3),
    # SpO2 scale 1: <=91:3  92-93:2  94-95:1  >=96:0
    ("spo2", 70, 3), ("spo2", 91, 3), ("spo2", 92, 2), ("spo2", 93, 2), ("spo2", 94, 1), ("spo2", 95, 1),
    ("spo2", 96, 0), ("spo2", 100, 0),
    # Air or oxygen: air 0, oxygen 2
    ("on_oxygen", 0, 0), ("on_oxygen", 1, 2),
    # Systolic BP: <=90:3  91-100:2  101-110:1  111-219:0  >=220:3
    ("sbp", 60, 3), ("sbp", 90, 3), ("sbp", 91, 2), ("sbp", 100, 2), ("sbp", 101, 1), ("sbp", 110, 1),
    ("sbp", 111, 0), ("sbp", 219, 0), ("sbp", 220, 3), ("sbp", 260, 3),
    # Pulse: <=40:3  41-50:1  51-90:0  91-110:1  111-130:2  >=131:3
    ("heart_rate", 30, 3), ("heart_rate", 40, 3), ("heart_rate", 41, 1), ("heart_rate", 50, 1), ("heart_rate", 51, 0),
    ("heart_rate", 90, 0), ("heart_rate", 91, 1), ("heart_rate", 110, 1), ("heart_rate", 111, 2),
    ("heart_rate", 130, 2), ("heart_rate", 131, 3), ("heart_rate", 180, 3),
    # Consciousness (ACVPU ordinal): alert 0; new confusion, voice, pain, unresponsive 3
    ("consciousness", 0, 0), ("consciousness", 1, 3), ("consciousness", 2, 3), ("consciousness", 3, 3),
    ("consciousness", 4, 3),
    # Temperature: <=35.0:3  35.1-36.0:1  36.1-38.0:0  38.1-39.0:1  >=39.1:2
    ("temperature", 33.0, 3), ("temperature", 35.0, 3), ("temperature", 35.1, 1), ("temperature", 36.0, 1),
    ("temperature", 36.1, 0), ("temperature", 38.0, 0), ("temperature", 38.1, 1), ("temperature", 39.0, 1),
    ("temperature", 39.1, 2), ("temperature", 41.0, 2),
]

# Between charted values: round half up to the chart's precision, then band.
HALF_UP: list[tuple[str, float, int]] = [
    ("resp_rate", 8.49, 3), ("resp_rate", 8.5, 1), ("resp_rate", 20.4, 0), ("resp_rate", 20.5, 2),
    ("resp_rate", 24.49, 2), ("resp_rate", 24.5, 3),
    ("spo2", 91.49, 3), ("spo2", 91.5, 2), ("spo2", 95.49, 1), ("spo2", 95.5, 0),
    ("sbp", 90.49, 3), ("sbp", 90.5, 2), ("sbp", 110.5, 0), ("sbp", 219.49, 0), ("sbp", 219.5, 3),
    ("heart_rate", 40.49, 3), ("heart_rate", 40.5, 1), ("heart_rate", 90.49, 0), ("heart_rate", 90.5, 1),
    ("heart_rate", 130.49, 2), ("heart_rate", 130.5, 3),
    ("temperature", 35.04, 3), ("temperature", 35.05, 1), ("temperature", 36.04, 1), ("temperature", 36.05, 0),
    ("temperature", 38.04, 0), ("temperature", 38.05, 1), ("temperature", 39.04, 1), ("temperature", 39.05, 2),
]


def batch(rows: list[dict[str, float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[B, V]`` in catalogue order, NaN where a row does not name a variable."""
    values = torch.full((len(rows), len(VARIABLES)), math.nan, dtype=dtype)
    for i, row in enumerate(rows):
        for name, value in row.items():
            values[i, VARIABLE_INDEX[name]] = value
    return values


@pytest.mark.parametrize(("name", "value", "points"), EDGES + HALF_UP)
def test_single_parameter_scores_its_band(name: str, value: float, points: int) -> None:
    result = news2({name: value})
    assert result.components == {c: points if c == name else 0 for c in NEWS2_COMPONENTS}
    assert result.total == points
    assert result.any_single_3 is (points == 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_batched_path_scores_every_edge_like_the_single_patient_path(dtype: torch.dtype) -> None:
    cases = EDGES + HALF_UP
    components = news2_components(batch([{name: value} for name, value, _ in cases], dtype))
    column = [NEWS2_COMPONENTS.index(name) for name, _, _ in cases]
    assert components[torch.arange(len(cases)), column].tolist() == [points for _, _, points in cases]
    assert news2_total(components).tolist() == [points for _, _, points in cases]


def test_a_hand_worked_aggregate() -> None:
    # RR 22 (2), SpO2 93 (2), on oxygen (2), SBP 105 (1), pulse 115 (2), alert (0), 38.5 °C (1).
    result = news2({
        "resp_rate": 22, "spo2": 93, "on_oxygen": 1, "sbp": 105, "heart_rate": 115, "consciousness": 0,
        "temperature": 38.5, "dbp": 60, "lactate": 4.0,
    })
    assert result.components == {
        "resp_rate": 2, "spo2": 2, "on_oxygen": 2, "sbp": 1, "heart_rate": 2, "consciousness": 0, "temperature": 1,
    }
    assert (result.total, result.any_single_3, result.risk_band) == (10, False, "high")


@pytest.mark.parametrize(
    ("values", "total", "single_3", "band"),
    [
        ({"resp_rate": 16, "spo2": 97, "on_oxygen": 0, "sbp": 125, "heart_rate": 72, "consciousness": 0, "temperature": 36.8},
         0, False, "low"),
        ({"resp_rate": 22, "heart_rate": 95, "temperature": 38.2}, 4, False, "low"),  # 2 + 1 + 1
        ({"consciousness": 1}, 3, True, "low-medium"),  # new confusion alone: single-parameter trigger
        ({"resp_rate": 7, "heart_rate": 95}, 4, True, "low-medium"),  # 3 + 1
        ({"spo2": 93, "sbp": 95, "heart_rate": 95}, 5, False, "medium"),  # 2 + 2 + 1
        ({"sbp": 85, "on_oxygen": 1}, 5, True, "medium"),  # a single 3 inside an aggregate of 5
        ({"spo2": 93, "on_oxygen": 1, "heart_rate": 115}, 6, False, "medium"),  # 2 + 2 + 2
        ({"resp_rate": 25, "spo2": 93, "sbp": 105, "temperature": 38.5}, 7, True, "high"),  # 3 + 2 + 1 + 1
        ({"resp_rate": 30, "spo2": 85, "on_oxygen": 1, "sbp": 80, "heart_rate": 140, "consciousness": 4,
          "temperature": 34.0}, 20, True, "high"),  # the maximum: 3 + 3 + 2 + 3 + 3 + 3 + 3
    ],
)
def test_aggregate_single_parameter_trigger_and_risk_band(values: dict[str, float], total: int, single_3: bool, band: str) -> None:
    result = news2(values)
    assert (result.total, result.any_single_3, result.risk_band) == (total, single_3, band)
    components = news2_components(batch([values]))
    assert RISK_BANDS[int(news2_risk_band(components)[0])] == band


def test_unmeasured_parameters_score_zero_points() -> None:
    assert news2({}).total == 0 and news2({}).risk_band == "low"
    assert news2({"heart_rate": None, "resp_rate": math.nan, "temperature": 39.5}).components == {
        c: 2 if c == "temperature" else 0 for c in NEWS2_COMPONENTS
    }
    assert news2_components(batch([{}, {"sodium": 150.0}])).sum().item() == 0


def test_a_batch_scores_each_patient_independently() -> None:
    rows = [{"resp_rate": 26}, {}, {"spo2": 94, "on_oxygen": 1}, {"heart_rate": 45, "sbp": 95}]
    components = news2_components(batch(rows))
    assert news2_total(components).tolist() == [3, 0, 3, 3]
    assert [RISK_BANDS[int(b)] for b in news2_risk_band(components)] == ["low-medium", "low", "low", "low"]
    assert components.shape == (4, len(NEWS2_COMPONENTS)) and components.dtype == torch.int64
