"""A site's own data in the PhysioNet/CinC Challenge 2019 hourly PSV format, as PatientSeries.

The format: one pipe-separated file per ICU stay (``p000001.psv``), a header row naming the
columns (HR|O2Sat|Temp|...|ICULOS|SepsisLabel), one row per hour of the stay, ``NaN`` where
nothing was measured. Many sites can export this shape, and public data exist in it, so it
is the route by which a hospital trains (or fine-tunes) the model on its own patients.

How a file becomes a PatientSeries, and why:

* Columns are mapped onto the catalogue (``schemas.variables``). The challenge already uses
  the catalogue's canonical units for every column read here (Temp °C, blood pressures mmHg,
  Creatinine/Glucose/Bilirubin_total mg/dL, Lactate mmol/L, Potassium mmol/L, Hgb g/dL,
  WBC and Platelets 10^3/uL), so no conversion is applied. The challenge's variable table
  labels lactate mg/dL, but its values sit on the mmol/L scale (normal about 1–2), which
  is how they are read. FiO2 becomes ``on_oxygen`` (1 above room air, 0.21; 0 at it; not
  measured when FiO2 is missing); a FiO2 written as a percentage (21–100) is read as one.
  Sodium and consciousness are not in the format and stay never-measured; the other columns
  (EtCO2, blood gases, demographics, ...) have no catalogue variable and are ignored.
* A value outside the catalogue's plausible range is dropped, as the worker's contracts
  reject it on the stream, and counted per PSV column: the counts are logged as a warning
  naming the columns, so a unit mix-up in an export shows up instead of vanishing.
* ICULOS (hours since ICU admission) becomes a timestamp ``PSV_EPOCH + ICULOS h``: every stay
  starts at the same fixed, fictitious instant, because the model only sees time differences.
* An hour in which no catalogue variable was measured is not an event (the worker never
  scores an empty observation) and is left out.
* Labels. The challenge shifts SepsisLabel 6 h early: it is 1 from ``t_sepsis - 6 h`` on. The
  clinical event is therefore the first hour with SepsisLabel = 1 plus
  ``SEPSIS_LABEL_LEAD_HOURS``, and the series' labels are recomputed from that event for the
  requested horizon (``models.datasets.series.horizon_labels``), so a 12 h model is trained on a 12 h
  target; with ``horizon_hours=6`` they reproduce SepsisLabel.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.datasets.series import PatientSeries, horizon_labels
from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLES

log = logging.getLogger(__name__)

#: The instant ICULOS counts from, the same for every stay (the format carries no dates).
PSV_EPOCH = datetime(2019, 1, 1, tzinfo=timezone.utc)
#: How far the challenge's SepsisLabel runs ahead of the onset of sepsis.
SEPSIS_LABEL_LEAD_HOURS = 6.0
#: FiO2 of room air; anything above means supplemental oxygen.
ROOM_AIR_FIO2 = 0.21

TIME_COLUMN = "ICULOS"
LABEL_COLUMN = "SepsisLabel"
FIO2_COLUMN = "FiO2"
#: PSV columns whose values are already in the catalogue variable's canonical unit.
COLUMN_VARIABLES: dict[str, str] = {
    "HR": "heart_rate",
    "O2Sat": "spo2",
    "Temp": "temperature",
    "SBP": "sbp",
    "MAP": "map",
    "DBP": "dbp",
    "Resp": "resp_rate",
    "Lactate": "lactate",
    "WBC": "wbc",
    "Creatinine": "creatinine",
    "Platelets": "platelets",
    "Bilirubin_total": "bilirubin",
    "Potassium": "potassium",
    "Glucose": "glucose",
    "Hgb": "hemoglobin",
}
#: Every column the loader reads; a file without one of them is refused.
REQUIRED_COLUMNS: tuple[str, ...] = (*COLUMN_VARIABLES, FIO2_COLUMN, TIME_COLUMN, LABEL_COLUMN)


class PsvFormatError(ValueError):
    """A file that is not in the PhysioNet/CinC 2019 PSV format; the message names file and column."""


@dataclass(frozen=True, slots=True)
class _ParsedStay:
    """One file's stay and its dropped values per PSV column, kept apart so a directory load
    can report all files' counts at once."""

    series: PatientSeries
    rejected: Counter[str]


def load_psv_file(path: Path | str, *, horizon_hours: float = 12.0) -> PatientSeries:
    """One stay from one PSV file; values outside the plausible range are dropped and logged."""
    stay = _parse(Path(path), horizon_hours)
    _report_rejected(stay.rejected, files_with_rejections=1 if stay.rejected else 0, files=1)
    return stay.series


def load_psv_directory(path: Path | str, *, horizon_hours: float = 12.0) -> list[PatientSeries]:
    """Every ``*.psv`` stay in a directory (sorted by file name), with at least one event.

    Dropped out-of-range values are counted per column over the whole directory and logged
    once as a warning; stays with no measured catalogue variable at all are left out and
    counted in a second warning.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise PsvFormatError(f"{directory}: not a directory of PhysioNet/CinC 2019 .psv files")
    files = sorted(directory.glob("*.psv"))
    if not files:
        raise PsvFormatError(f"{directory}: no .psv files")
    rejected: Counter[str] = Counter()
    files_with_rejections = 0
    series = []
    for file in files:
        stay = _parse(file, horizon_hours)
        rejected.update(stay.rejected)
        files_with_rejections += bool(stay.rejected)
        if len(stay.series.ts):
            series.append(stay.series)
    _report_rejected(rejected, files_with_rejections=files_with_rejections, files=len(files))
    if len(series) < len(files):
        log.warning(
            "left out %d of %d PSV stays without any measured catalogue variable",
            len(files) - len(series), len(files), extra={"empty_stays": len(files) - len(series), "files": len(files)},
        )
    log.info("loaded %d PSV stays", len(series), extra={"stays": len(series), "files": len(files)})
    return series


def _parse(path: Path, horizon_hours: float) -> _ParsedStay:
    """Map, range-check and label one file (see the module doc); whole columns at a time."""
    header, rows = _read_table(path)
    column = {name: i for i, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name not in column]
    if missing:
        raise PsvFormatError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"a PhysioNet/CinC 2019 header names {'|'.join(REQUIRED_COLUMNS)} (among others)"
        )
    hours = rows[:, column[TIME_COLUMN]]
    if not np.isfinite(hours).all():
        raise PsvFormatError(f"{path}: column {TIME_COLUMN} must hold a number on every row")
    sepsis = rows[:, column[LABEL_COLUMN]]
    if not np.isin(sepsis, (0.0, 1.0)).all():
        raise PsvFormatError(f"{path}: column {LABEL_COLUMN} must be 0 or 1 on every row")

    values = np.full((len(rows), len(VARIABLES)), np.nan, dtype=np.float32)
    rejected: Counter[str] = Counter()
    for name, variable in COLUMN_VARIABLES.items():
        spec = BY_NAME[variable]
        raw = rows[:, column[name]]
        kept, dropped = _within(raw, spec.low, spec.high)
        values[:, VARIABLE_INDEX[variable]] = kept
        if dropped:
            rejected[name] = dropped
    on_oxygen, dropped = _on_oxygen(rows[:, column[FIO2_COLUMN]])
    values[:, VARIABLE_INDEX["on_oxygen"]] = on_oxygen
    if dropped:
        rejected[FIO2_COLUMN] = dropped

    septic_hours = hours[sepsis == 1.0]
    event_at = float(_timestamp(septic_hours.min() + SEPSIS_LABEL_LEAD_HOURS)) if septic_hours.size else None
    events = np.flatnonzero(~np.isnan(values).all(axis=1))
    events = events[np.argsort(hours[events], kind="stable")]
    ts = _timestamp(hours[events])
    series = PatientSeries(path.stem, ts, values[events], horizon_labels(ts, event_at, horizon_hours), event_at)
    return _ParsedStay(series, rejected)


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Header names and the rows as float64 ``[n, columns]`` (NaN where the file says NaN)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PsvFormatError(f"{path}: not readable ({exc})") from exc
    if not lines or not lines[0].strip():
        raise PsvFormatError(f"{path}: empty; expected a header row naming the columns")
    header = [name.strip() for name in lines[0].split("|")]
    body = [line for line in lines[1:] if line.strip()]
    if not body:
        return header, np.empty((0, len(header)))
    try:
        rows = np.loadtxt(body, delimiter="|", dtype=np.float64, ndmin=2)
    except ValueError:
        rows = None
    if rows is None or rows.shape[1] != len(header):
        raise PsvFormatError(f"{path}: {_first_bad_cell(lines, header)}")
    return header, rows


def _first_bad_cell(lines: list[str], header: list[str]) -> str:
    """Where the table below the header stops being pipe-separated numbers, by file line
    (1-based, the header is line 1) and column name, so a site can fix its export."""
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != len(header):
            return f"line {number}: {len(fields)} fields, but the header names {len(header)} columns"
        for name, field in zip(header, fields):
            try:
                float(field)
            except ValueError:
                return f"line {number}, column {name}: {field.strip()[:40]!r} is not a number (write NaN where nothing was measured)"
    return "not pipe-separated numbers below the header"


def _within(raw: np.ndarray, low: float, high: float) -> tuple[np.ndarray, int]:
    """The column with values outside [low, high] set to NaN, and how many were."""
    out = ~np.isnan(raw) & ~((raw >= low) & (raw <= high))
    return np.where(out, np.nan, raw), int(out.sum())


def _on_oxygen(fio2: np.ndarray) -> tuple[np.ndarray, int]:
    """FiO2 (fraction, or percent when above 1) -> 1.0 above room air, 0.0 at room air, NaN if missing."""
    fraction = np.where(fio2 > 1.0, fio2 / 100.0, fio2)
    fraction, dropped = _within(fraction, ROOM_AIR_FIO2, 1.0)
    return np.where(np.isnan(fraction), np.nan, (fraction > ROOM_AIR_FIO2).astype(np.float64)), dropped


def _timestamp(hours: np.ndarray) -> np.ndarray:
    """ICULOS hours as POSIX seconds from PSV_EPOCH (element-wise, float64)."""
    return PSV_EPOCH.timestamp() + np.asarray(hours, dtype=np.float64) * 3600.0


def _report_rejected(rejected: Counter[str], *, files_with_rejections: int, files: int) -> None:
    """One warning with the per-column counts (never the values: they are patient data)."""
    if not rejected:
        return
    detail = ", ".join(f"{name} {count}" for name, count in sorted(rejected.items()))
    log.warning(
        "dropped %d PSV values outside the plausible range (%s) in %d of %d files",
        sum(rejected.values()), detail, files_with_rejections, files,
        extra={"rejected": dict(rejected), "files": files},
    )
