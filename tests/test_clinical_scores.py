"""qSOFA and SIRS points on hand-made rows: each criterion at and beside its limit, and a
parameter not measured never meets one."""

from __future__ import annotations

import math

import numpy as np

from models.evaluation.clinical_scores import qsofa, qsofa_criteria, sirs, sirs_criteria
from schemas.variables import VARIABLE_INDEX, VARIABLES

nan = math.nan


def rows(**columns: list[float]) -> np.ndarray:
    n = len(next(iter(columns.values())))
    values = np.full((n, len(VARIABLES)), nan)
    for name, column in columns.items():
        values[:, VARIABLE_INDEX[name]] = column
    return values


def test_qsofa_criteria_at_their_limits() -> None:
    values = rows(
        resp_rate=[22, 21.9, nan, 30, 16],
        sbp=[nan, 100, 100.1, 90, 120],
        consciousness=[nan, nan, nan, 1, 0],  # ACVPU: C is altered, A is not
    )
    assert qsofa_criteria(values).tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, False],
        [True, True, True],
        [False, False, False],
    ]
    assert qsofa(values).tolist() == [1, 1, 0, 3, 0]


def test_sirs_criteria_at_their_limits() -> None:
    values = rows(
        temperature=[38.1, 38.0, 35.9, 36.0, nan],
        heart_rate=[91, 90, nan, 120, nan],
        resp_rate=[21, 20, 12, nan, nan],
        paco2=[nan, 32, 31.9, nan, nan],
        wbc=[12.1, 12.0, 3.9, 4.0, nan],
    )
    assert sirs_criteria(values).tolist() == [
        [True, True, True, True],
        [False, False, False, False],
        [True, False, True, True],  # hypothermia, PaCO2 below 32 with a normal rate, leucopenia
        [False, True, False, False],
        [False, False, False, False],
    ]
    assert sirs(values).tolist() == [4, 0, 3, 1, 0]
