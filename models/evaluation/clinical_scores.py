"""qSOFA and SIRS, the bedside sepsis screens a ward already uses, as baselines per hour.

Both are counts of criteria met on the patient's current values (NaN = not measured = not
met, as NEWS2 counts a missing parameter as 0 points), over rows ``[N, V]`` laid out in
``schemas.variables`` order. Evaluation feeds them carried-forward values (each parameter's
latest within 24 h, as the worker charts NEWS2).

* qSOFA (Seymour et al., JAMA 2016): respiratory rate >= 22 /min, systolic pressure
  <= 100 mmHg, altered mentation. Mentation is read from ``consciousness`` (ACVPU, anything
  but A); the PhysioNet 2019 PSV format has no GCS or consciousness column, so on PSV stays
  that criterion is never met and qSOFA there scores 0-2.
* SIRS (Bone et al., Chest 1992): temperature > 38 or < 36 degC; heart rate > 90 /min;
  respiratory rate > 20 /min or PaCO2 < 32 mmHg; white cells > 12 or < 4 x10^3/uL (the
  ">10 % bands" alternative has no column in any feed vitalwatch reads).

The usual cut-off for both is 2 criteria (``CUT_OFF``).
"""

from __future__ import annotations

import numpy as np

from schemas.variables import VARIABLE_INDEX

#: Criteria met at which both screens call a patient positive.
CUT_OFF = 2


def _column(values: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[:, VARIABLE_INDEX[name]]


def qsofa_criteria(values: np.ndarray) -> np.ndarray:
    """Bool [N, 3]: respiratory rate >= 22, systolic <= 100, altered mentation (ACVPU not A)."""
    with np.errstate(invalid="ignore"):  # NaN compares False: not measured, not met
        return np.stack(
            [_column(values, "resp_rate") >= 22, _column(values, "sbp") <= 100, _column(values, "consciousness") > 0], axis=1
        )


def sirs_criteria(values: np.ndarray) -> np.ndarray:
    """Bool [N, 4]: temperature, heart rate, respiration (rate or PaCO2), white cells."""
    temperature, wbc = _column(values, "temperature"), _column(values, "wbc")
    with np.errstate(invalid="ignore"):
        return np.stack(
            [
                (temperature > 38.0) | (temperature < 36.0),
                _column(values, "heart_rate") > 90,
                (_column(values, "resp_rate") > 20) | (_column(values, "paco2") < 32),
                (wbc > 12.0) | (wbc < 4.0),
            ],
            axis=1,
        )


def qsofa(values: np.ndarray) -> np.ndarray:
    """qSOFA points (0-3) per row."""
    return qsofa_criteria(values).sum(axis=1)


def sirs(values: np.ndarray) -> np.ndarray:
    """SIRS criteria met (0-4) per row."""
    return sirs_criteria(values).sum(axis=1)
