"""The hour grid of the sepsis evaluation: a PSV stay's hours, its label, and what was known
at each hour.

The challenge judges a predictor once per hour of the stay (every ICULOS row of the file),
while the model scores events (``PatientSeries`` rows: per hour its labs, then its vital
signs, and an hour with nothing measured has none). The two meet here:

* ``StayHours`` is one file's grid: its ICULOS hours and SepsisLabel (1 from 6 h before
  onset), read from the file itself, so hours without any measurement are on it too. The onset
  ``t_sepsis`` is the first SepsisLabel hour + 6 h; ``scored`` marks the hours a ranking metric
  judges: every hour of a non-septic stay, a septic stay's up to and including onset (after it
  the event has happened and nobody can be warned).
* ``carry_forward`` gives, at each hour, the last series row at or before it (the risk the
  worker would show then is that row's), and per variable the latest value at or before the
  hour, its age and how many times it was measured so far. Before a stay's first event nothing
  is known: no prediction (``last_row`` -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.datasets.physionet import LABEL_COLUMN, PSV_EPOCH, SEPSIS_LABEL_LEAD_HOURS, TIME_COLUMN, PsvFormatError
from models.datasets.series import PatientSeries

_HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class StayHours:
    """One stay's hourly rows: ICULOS hours (float64 [H], increasing) and SepsisLabel (bool [H])."""

    stay_id: str
    hours: np.ndarray
    sepsis: np.ndarray

    @property
    def ts(self) -> np.ndarray:
        """The hours as the loader's timestamps (``PSV_EPOCH + ICULOS h``), comparable with series rows."""
        return PSV_EPOCH.timestamp() + self.hours * _HOUR_S

    @property
    def onset_hour(self) -> float | None:
        """``t_sepsis``: the first SepsisLabel hour + 6 h; None for a stay that never becomes septic."""
        return float(self.hours[np.argmax(self.sepsis)] + SEPSIS_LABEL_LEAD_HOURS) if self.sepsis.any() else None

    @property
    def scored(self) -> np.ndarray:
        """Hours a ranking metric judges: all of a non-septic stay, a septic one's up to onset."""
        onset = self.onset_hour
        return np.ones(self.hours.shape, dtype=bool) if onset is None else self.hours <= onset


def read_hour_grid(path: Path) -> StayHours:
    """A PSV file's ICULOS and SepsisLabel columns (PsvFormatError naming file, line and column)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PsvFormatError(f"{path}: not readable ({exc})") from exc
    header = [name.strip() for name in lines[0].split("|")] if lines else []
    missing = [name for name in (TIME_COLUMN, LABEL_COLUMN) if name not in header]
    if missing:
        raise PsvFormatError(f"{path}: missing required column(s) {', '.join(missing)}")
    at_hour, at_label = header.index(TIME_COLUMN), header.index(LABEL_COLUMN)
    hours, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("|")
        try:
            hours.append(float(fields[at_hour]))
            labels.append(float(fields[at_label]))
        except (IndexError, ValueError):
            raise PsvFormatError(f"{path}: line {number}: no number in column {TIME_COLUMN} or {LABEL_COLUMN}") from None
    hour_array, label_array = np.array(hours, dtype=np.float64), np.array(labels, dtype=np.float64)
    order = np.argsort(hour_array, kind="stable")
    if not np.isin(label_array, (0.0, 1.0)).all() or not np.isfinite(hour_array).all():
        raise PsvFormatError(f"{path}: {TIME_COLUMN} must be a number and {LABEL_COLUMN} 0 or 1 on every row")
    return StayHours(path.stem, hour_array[order], label_array[order] == 1.0)


@dataclass(frozen=True, slots=True)
class Carried:
    """What was known at each hour of a grid: ``last_row`` (int [H], the last series row at or
    before the hour, -1 before the first), and per variable ``values`` (float64 [H, C], the
    latest value, NaN when never measured), ``age_h`` (hours since it, inf when never) and
    ``counts`` (int [H, C], measurements so far), for the columns asked for."""

    last_row: np.ndarray
    values: np.ndarray
    age_h: np.ndarray
    counts: np.ndarray

    def within(self, max_age_h: float) -> np.ndarray:
        """The values no older than ``max_age_h`` (NaN otherwise), as the worker charts NEWS2."""
        return np.where(self.age_h <= max_age_h, self.values, np.nan)

    def select(self, columns: Sequence[int]) -> "Carried":
        """The same hours for some of the columns (positions in this Carried's columns)."""
        return Carried(self.last_row, self.values[:, columns], self.age_h[:, columns], self.counts[:, columns])


def carry_forward(series: PatientSeries | None, grid_ts: np.ndarray, columns: Sequence[int]) -> Carried:
    """The state of knowledge of ``series`` at each time of ``grid_ts`` (see ``Carried``); a
    stay without a series (nothing ever measured) knows nothing at any hour."""
    columns = np.asarray(columns, dtype=np.int64)
    hours = len(grid_ts)
    if series is None or not len(series.ts):
        return Carried(
            np.full(hours, -1), np.full((hours, columns.size), np.nan), np.full((hours, columns.size), np.inf),
            np.zeros((hours, columns.size), dtype=np.int64),
        )
    values = series.values[:, columns].astype(np.float64)
    seen = ~np.isnan(values)
    rows = np.arange(len(series.ts))
    seen_row = np.maximum.accumulate(np.where(seen, rows[:, None], -1), axis=0)
    counts = np.cumsum(seen, axis=0)
    last_row = np.searchsorted(series.ts, grid_ts, side="right") - 1
    known = last_row >= 0
    at = np.maximum(last_row, 0)
    seen_at = np.where(known[:, None], seen_row[at], -1)
    measured = seen_at >= 0
    source = np.maximum(seen_at, 0)
    return Carried(
        last_row=last_row,
        values=np.where(measured, values[source, np.arange(columns.size)], np.nan),
        age_h=np.where(measured, (grid_ts[:, None] - series.ts[source]) / _HOUR_S, np.inf),
        counts=np.where(known[:, None], counts[at], 0),
    )


def at_hours(row_scores: np.ndarray, last_row: np.ndarray) -> np.ndarray:
    """A per-row score carried to the hours: the last row's at or before each hour, NaN before the first."""
    if not len(row_scores):
        return np.full(last_row.shape, np.nan)
    return np.where(last_row >= 0, np.asarray(row_scores, dtype=np.float64)[np.maximum(last_row, 0)], np.nan)
