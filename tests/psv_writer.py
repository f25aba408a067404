"""PSV files written by the tests: hand-made stays, and a small seeded cohort in which septic
stays drift (heart and breathing rate, temperature, lactate, white cells) in the hours before
onset, so a model and the trees have something to learn. CI has no set A; its header is taken
from a committed fixture, so these files have exactly set A's columns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "physionet2019"
HEADER = (FIXTURES / "p001183.psv").read_text().splitlines()[0].split("|")


def write_psv(
    directory: Path,
    stay_id: str,
    hours: Sequence[float],
    sepsis: Sequence[int],
    columns: Mapping[str, Sequence[float]] | None = None,
    *,
    unit: int | None = 1,
    age: float = 60.0,
    gender: int = 1,
    admission_h: float = -0.02,
) -> Path:
    """One stay's file: ``columns`` by PSV name (NaN where not given), the demographics on every row."""
    columns = dict(columns or {})
    fixed = {
        "Age": age, "Gender": gender, "HospAdmTime": admission_h,
        "Unit1": math.nan if unit is None else float(unit == 1), "Unit2": math.nan if unit is None else float(unit == 2),
    }
    lines = ["|".join(HEADER)]
    for k, hour in enumerate(hours):
        row = {**fixed, "ICULOS": hour, "SepsisLabel": sepsis[k], **{name: values[k] for name, values in columns.items()}}
        lines.append("|".join(_cell(row.get(name, math.nan)) for name in HEADER))
    path = directory / f"{stay_id}.psv"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _cell(value: float) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:g}"


def write_cohort(directory: Path, stays: int, *, seed: int = 0, septic_every: int = 3) -> list[str]:
    """``stays`` stays of 24-40 hours (every ``septic_every``-th septic, label from a random
    hour past 10), medical and surgical ICUs in turns of two; returns the stay ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for k in range(stays):
        n = int(rng.integers(24, 41))
        hours = np.arange(1, n + 1, dtype=float)
        first_label = int(rng.integers(10, n - 4)) if k % septic_every == 0 else None
        sepsis = np.zeros(n, dtype=int) if first_label is None else (hours >= first_label).astype(int)
        drift = np.zeros(n) if first_label is None else np.clip((hours - first_label + 10) / 10, 0, 2)
        noise = rng.normal(0, 1, (6, n))
        columns = {
            "HR": 80 + 25 * drift + 5 * noise[0],
            "Resp": 16 + 8 * drift + 2 * noise[1],
            "Temp": 37 + 1.2 * drift + 0.3 * noise[2],
            "SBP": 125 - 20 * drift + 8 * noise[3],
            "O2Sat": np.clip(97 - 3 * drift + noise[4], 80, 100),
            "MAP": 85 - 10 * drift + 5 * noise[5],
        }
        every_fourth = np.where(hours % 4 == 0, 1.0, math.nan)
        columns["Lactate"] = every_fourth * (1.2 + 1.5 * drift)
        columns["WBC"] = every_fourth * (8 + 5 * drift)
        stay_id = f"p9{k:05d}"
        write_psv(directory, stay_id, hours, sepsis, columns, unit=1 + (k // 2) % 2, age=float(rng.integers(20, 90)), gender=k % 2)
        ids.append(stay_id)
    return ids
