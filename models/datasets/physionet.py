"""A site's own data in the PhysioNet/CinC Challenge 2019 hourly PSV format, as PatientSeries,
and as the vitals.v1 / labs.v1 / encounters.v1 events a replay publishes.

The format: one pipe-separated file per ICU stay (``p000001.psv``), a header row naming the
columns (HR|O2Sat|Temp|...|ICULOS|SepsisLabel), one row per hour of the stay, ``NaN`` where
nothing was measured. Many sites can export this shape, and public data exist in it (the
challenge's training set A, CC BY 4.0), so it is the route by which a hospital trains (or
fine-tunes) the model on its own patients. docs/training.md tables every column's mapping.

How a file becomes a PatientSeries, and why:

* Columns are mapped onto the catalogue (``schemas.variables``): the 8 vital-sign columns, the
  26 laboratory columns and FiO2, every one but nothing else. The challenge already uses the
  catalogue's canonical units for each (Temp °C, pressures and PaCO2 mmHg, BUN, Calcium,
  Phosphate mg/dL, HCO3, Chloride, BaseExcess mmol/L, AST, Alkalinephos U/L, TroponinI ng/mL,
  Hct and SaO2 %, PTT s, Fibrinogen mg/dL, WBC and Platelets 10^3/uL), so no conversion is
  applied. The challenge's variable table labels lactate mg/dL and magnesium mmol/dL, but their
  values sit on the mmol/L (normal about 1–2) and mg/dL (about 2) scales, which is how they
  are read. FiO2 is a fraction; a value in 21–100 is a percentage and divided by 100 (the rule
  vitals.v1 applies); it also gives ``on_oxygen`` (1 above room air, 0.21; 0 at it; not
  measured when FiO2 is missing). Sodium and consciousness are not in the format and stay
  never-measured. Set A charts no EtCO2; a site's export that does gets it mapped.
* A value outside the catalogue's plausible range (FiO2: neither a fraction 0.21–1 nor a
  percentage 21–100) is dropped, as the worker's contracts reject it on the stream, and
  counted per PSV column: the counts are logged as a warning naming the columns, so a unit
  mix-up in an export shows up instead of vanishing.
* ICULOS (hours since ICU admission) becomes a timestamp ``PSV_EPOCH + ICULOS h``: every stay
  starts at the same fixed, fictitious instant, because the model only sees time differences.
* An hour in which no catalogue variable was measured is not an event (the worker never
  scores an empty observation) and is left out.
* Labels. The challenge shifts SepsisLabel 6 h early: it is 1 from ``t_sepsis - 6 h`` on. The
  clinical event is therefore the first hour with SepsisLabel = 1 plus
  ``SEPSIS_LABEL_LEAD_HOURS``, and the series' labels are recomputed from that event for the
  requested horizon (``models.datasets.series.horizon_labels``), so a 12 h model is trained on a 12 h
  target; with ``horizon_hours=6`` they reproduce SepsisLabel.

The stay's context, an encounter per stay (``_encounter_payloads``). Every file is an ICU stay,
admitted to the ICU at ``PSV_EPOCH`` (ICULOS 0). HospAdmTime is the hospital admission's offset
from it in hours, negative when before: more than ``DIRECT_ADMISSION_HOURS`` before, the stay
is an admission at the hospital admission time (unit unknown: the file does not say whether
the patient came from a ward, the emergency department or theatre) and a transfer to the ICU
at ICU start; otherwise (set A's -0.01 to -0.05 h are the minutes of registration, a positive
offset cannot precede the stay, a missing one says nothing) an admission to the ICU at ICU
start. The admission carries Age (years) and Gender (0 female, 1 male). Unit1 (medical) and
Unit2 (surgical ICU) become the series' ``icu_type``. No discharge is sent: the file does not
say whether its last hour ends the ICU stay, nor where the patient went. Demographic values
that are not a plausible age, a 0/1 code or a number are dropped and counted like the others.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection

import numpy as np
import orjson

from models.datasets import encounters as adt
from models.datasets.series import IcuType, PatientSeries, context_until, horizon_labels
from models.datasets.events import SimEvent, side_by_side
from schemas.canonical import FIO2_PERCENT_HIGH, FIO2_PERCENT_LOW, ROOM_AIR_FIO2
from schemas.decode import decode
from schemas.encounter import AGE_HIGH, AGE_LOW, Encounter, Sex
from schemas.errors import ContractError
from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLES

log = logging.getLogger(__name__)

#: The instant ICULOS counts from, the same for every stay (the format carries no dates).
PSV_EPOCH = datetime(2019, 1, 1, tzinfo=timezone.utc)
#: How far the challenge's SepsisLabel runs ahead of the onset of sepsis.
SEPSIS_LABEL_LEAD_HOURS = 6.0
#: A hospital admission at most this many hours before ICU admission is the ICU admission.
DIRECT_ADMISSION_HOURS = 1.0
#: The ``source`` of every payload, and the first part of every event id.
SOURCE = "physionet2019"

TIME_COLUMN = "ICULOS"
LABEL_COLUMN = "SepsisLabel"
FIO2_COLUMN = "FiO2"
AGE_COLUMN = "Age"
GENDER_COLUMN = "Gender"
HOSPITAL_ADMISSION_COLUMN = "HospAdmTime"
#: PSV columns whose values are already in the catalogue variable's canonical unit.
COLUMN_VARIABLES: dict[str, str] = {
    "HR": "heart_rate",
    "O2Sat": "spo2",
    "Temp": "temperature",
    "SBP": "sbp",
    "MAP": "map",
    "DBP": "dbp",
    "Resp": "resp_rate",
    "EtCO2": "etco2",
    "BaseExcess": "base_excess",
    "HCO3": "bicarbonate",
    "pH": "ph",
    "PaCO2": "paco2",
    "SaO2": "sao2",
    "AST": "ast",
    "BUN": "bun",
    "Alkalinephos": "alkaline_phosphatase",
    "Calcium": "calcium",
    "Chloride": "chloride",
    "Creatinine": "creatinine",
    "Bilirubin_direct": "bilirubin_direct",
    "Glucose": "glucose",
    "Lactate": "lactate",
    "Magnesium": "magnesium",
    "Phosphate": "phosphate",
    "Potassium": "potassium",
    "Bilirubin_total": "bilirubin",
    "TroponinI": "troponin_i",
    "Hct": "hematocrit",
    "Hgb": "hemoglobin",
    "PTT": "ptt",
    "WBC": "wbc",
    "Fibrinogen": "fibrinogen",
    "Platelets": "platelets",
}
#: The challenge's Gender codes.
GENDERS: dict[float, Sex] = {0.0: "female", 1.0: "male"}
#: The challenge's ICU columns (1 = the stay was in that ICU).
ICU_COLUMNS: dict[str, IcuType] = {"Unit1": "MICU", "Unit2": "SICU"}
#: Every column the loader reads; a file without one of them is refused.
REQUIRED_COLUMNS: tuple[str, ...] = (
    *COLUMN_VARIABLES, FIO2_COLUMN, AGE_COLUMN, GENDER_COLUMN, *ICU_COLUMNS, HOSPITAL_ADMISSION_COLUMN,
    TIME_COLUMN, LABEL_COLUMN,
)
#: Catalogue columns a vitals.v1 payload carries (on_oxygen follows from FiO2 in the contract).
_VITAL_FIELDS = tuple(name for name in (*COLUMN_VARIABLES.values(), "fio2") if BY_NAME[name].kind == "vital")
_LAB_CODES = tuple(name for name in COLUMN_VARIABLES.values() if BY_NAME[name].kind == "lab")


class PsvFormatError(ValueError):
    """A file that is not in the PhysioNet/CinC 2019 PSV format; the message names file and column."""


@dataclass(frozen=True, slots=True)
class _Context:
    """A stay's demographics and admission, as read from its file."""

    age: float | None
    sex: Sex | None
    icu_type: IcuType | None
    hospital_admission_h: float | None


@dataclass(frozen=True, slots=True)
class _ParsedStay:
    """One file's stay, its canonical values (float64, for the payloads) and its encounters'
    payloads; the dropped values per PSV column are kept apart so a directory load can report
    all files' counts at once."""

    path: Path
    series: PatientSeries
    hours: np.ndarray
    values: np.ndarray
    encounters: tuple[dict[str, Any], ...]
    rejected: Counter[str]


@dataclass(frozen=True, slots=True)
class PsvStay:
    """One stay as `vitalwatch replay` publishes it: its series and its events (encounters,
    vitals, labs) in feed order, every payload accepted by ``schemas.decode``. The stay id
    (the file name without ``.psv``) is the patient id and the Kafka key."""

    series: PatientSeries
    events: tuple[SimEvent, ...]

    @property
    def stay_id(self) -> str:
        return self.series.patient_id


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
    return [stay.series for stay in _parse_directory(psv_files(path), horizon_hours)]


def load_psv_stays(
    path: Path | str, *, stay_ids: Collection[str] | None = None, count: int | None = None,
    horizon_hours: float = 12.0,
) -> list[PsvStay]:
    """Stays of a directory with their replay events: those of ``stay_ids`` (each a
    ``<id>.psv`` there), or ``count`` of them (septic stays first, so that a replay of a few
    shows deterioration; each group by stay id), or all. A stay without any event is left
    out, as in load_psv_directory. Events are built for the chosen stays only."""
    files = psv_files(path)
    if stay_ids is not None:
        by_id = {file.stem: file for file in files}
        missing = sorted(set(stay_ids) - set(by_id))
        if missing:
            raise PsvFormatError(f"{path}: no {', '.join(f'{stay}.psv' for stay in missing)}")
        files = [by_id[stay] for stay in sorted(set(stay_ids))]
    stays = _parse_directory(files, horizon_hours)
    if count is not None:
        stays = sorted(stays, key=lambda s: (s.series.event_at is None, s.series.patient_id))[:count]
    return [PsvStay(stay.series, _stay_events(stay)) for stay in stays]


def aligned_psv_events(stays: Collection[PsvStay]) -> list[SimEvent]:
    """The stays' events side by side (models.datasets.events.side_by_side): each stay's first
    observation at one instant (stays start charting at different ICULOS hours)."""
    return side_by_side((stay.stay_id, stay.events) for stay in stays)


def psv_files(path: Path | str) -> list[Path]:
    """The ``*.psv`` files of a directory, sorted by name; PsvFormatError when there are none,
    or the directory cannot be read."""
    directory = Path(path)
    if not directory.is_dir():
        raise PsvFormatError(f"{directory}: not a directory of PhysioNet/CinC 2019 .psv files")
    try:
        files = sorted(directory.glob("*.psv"))
    except OSError as exc:
        raise PsvFormatError(f"{directory}: not readable ({exc})") from exc
    if not files:
        raise PsvFormatError(f"{directory}: no .psv files")
    return files


def _parse_directory(files: list[Path], horizon_hours: float) -> list[_ParsedStay]:
    """Parse ``files``, report their dropped values once, and keep the stays with events."""
    rejected: Counter[str] = Counter()
    files_with_rejections = 0
    stays = []
    for file in files:
        stay = _parse(file, horizon_hours)
        rejected.update(stay.rejected)
        files_with_rejections += bool(stay.rejected)
        if len(stay.series.ts):
            stays.append(stay)
    _report_rejected(rejected, files_with_rejections=files_with_rejections, files=len(files))
    if len(stays) < len(files):
        log.warning(
            "left out %d of %d PSV stays without any measured catalogue variable",
            len(files) - len(stays), len(files), extra={"empty_stays": len(files) - len(stays), "files": len(files)},
        )
    log.info("loaded %d PSV stays", len(stays), extra={"stays": len(stays), "files": len(files)})
    return stays


def _parse(path: Path, horizon_hours: float) -> _ParsedStay:
    """Map, range-check and label one file (see the module doc); whole columns at a time."""
    header, rows = _read_table(path)
    column = {name: i for i, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name not in column]
    if missing:
        raise PsvFormatError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"a PhysioNet/CinC 2019 header names {'|'.join(REQUIRED_COLUMNS)}"
        )
    hours = rows[:, column[TIME_COLUMN]]
    if not np.isfinite(hours).all():
        raise PsvFormatError(f"{path}: column {TIME_COLUMN} must hold a number on every row")
    sepsis = rows[:, column[LABEL_COLUMN]]
    if not np.isin(sepsis, (0.0, 1.0)).all():
        raise PsvFormatError(f"{path}: column {LABEL_COLUMN} must be 0 or 1 on every row")

    values = np.full((len(rows), len(VARIABLES)), np.nan)
    rejected: Counter[str] = Counter()
    for name, variable in COLUMN_VARIABLES.items():
        spec = BY_NAME[variable]
        kept, dropped = _within(rows[:, column[name]], spec.low, spec.high)
        values[:, VARIABLE_INDEX[variable]] = kept
        if dropped:
            rejected[name] = dropped
    fio2, dropped = _fio2(rows[:, column[FIO2_COLUMN]])
    values[:, VARIABLE_INDEX["fio2"]] = fio2
    values[:, VARIABLE_INDEX["on_oxygen"]] = np.where(np.isnan(fio2), np.nan, (fio2 > ROOM_AIR_FIO2).astype(np.float64))
    if dropped:
        rejected[FIO2_COLUMN] = dropped
    context = _context(rows, column, rejected)

    septic_hours = hours[sepsis == 1.0]
    event_at = float(_timestamp(septic_hours.min() + SEPSIS_LABEL_LEAD_HOURS)) if septic_hours.size else None
    event_hours, event_values = _events(hours, values)
    ts = _timestamp(event_hours)
    payloads = _encounter_payloads(path.stem, context)
    context_events = context_until([_decoded_encounter(path, p) for p in payloads], ts)
    series = PatientSeries(
        path.stem, ts, event_values.astype(np.float32), horizon_labels(ts, event_at, horizon_hours), event_at,
        context_events, context.icu_type,
    )
    return _ParsedStay(path, series, event_hours, event_values, tuple(payloads), rejected)


def _events(hours: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The events of a stay as the worker receives them from a replay: per hour, in time
    order, the labs.v1 message of the hour's laboratory values, then the vitals.v1 message of
    its vital signs, each only when it measured something. A model trained on these rows takes
    the steps it takes in the worker (an hour with both is two steps, the second 0 h later)."""
    order = np.argsort(hours, kind="stable")
    hours, values = hours[order], values[order]
    is_lab = np.array([v.kind == "lab" for v in VARIABLES])
    parts = np.stack([np.where(is_lab, values, np.nan), np.where(is_lab, np.nan, values)], axis=1)  # [H, 2, V]
    parts = parts.reshape(-1, values.shape[1])
    kept = ~np.isnan(parts).all(axis=1)
    return np.repeat(hours, 2)[kept], parts[kept]


def _context(rows: np.ndarray, column: dict[str, int], rejected: Counter[str]) -> _Context:
    """Age, sex, ICU and hospital admission from the stay's first value of each column (the
    challenge repeats them on every row); implausible ones dropped and counted in ``rejected``."""
    def first(name: str) -> float:
        given = rows[:, column[name]][~np.isnan(rows[:, column[name]])]
        return float(given[0]) if given.size else math.nan

    def usable(name: str, value: float, plausible: bool) -> bool:
        """Whether ``value`` was given and is plausible; a given, implausible one is counted."""
        if math.isnan(value):
            return False
        if not plausible:
            rejected[name] += 1
        return plausible

    age, gender, admission = first(AGE_COLUMN), first(GENDER_COLUMN), first(HOSPITAL_ADMISSION_COLUMN)
    flags = {name: first(name) for name in ICU_COLUMNS}
    in_icu = [ICU_COLUMNS[name] for name, flag in flags.items() if usable(name, flag, flag in (0.0, 1.0)) and flag == 1.0]
    return _Context(
        age=age if usable(AGE_COLUMN, age, AGE_LOW <= age <= AGE_HIGH) else None,
        sex=GENDERS[gender] if usable(GENDER_COLUMN, gender, gender in GENDERS) else None,
        icu_type=in_icu[0] if len(in_icu) == 1 else None,
        hospital_admission_h=None if math.isnan(admission) else admission,
    )


def _encounter_payloads(stay_id: str, context: _Context) -> list[dict[str, Any]]:
    """The stay's admission (and transfer to the ICU when the hospital admission came earlier);
    see the module notes."""
    icu_start = PSV_EPOCH.timestamp()
    offset_h = context.hospital_admission_h
    who = {"age": context.age, "sex": context.sex}
    if offset_h is not None and offset_h < -DIRECT_ADMISSION_HOURS:
        admitted = icu_start + round(offset_h * 3600.0)
        return [
            adt.admission(f"{SOURCE}:{stay_id}:admission", stay_id, admitted, source=SOURCE, **who),
            adt.transfer(f"{SOURCE}:{stay_id}:transfer", stay_id, icu_start, "icu", source=SOURCE),
        ]
    return [adt.admission(f"{SOURCE}:{stay_id}:admission", stay_id, icu_start, source=SOURCE, unit="icu", **who)]


def _stay_events(stay: _ParsedStay) -> tuple[SimEvent, ...]:
    """The stay's encounters, then per event row (an hour's labs, then its vital signs) its
    labs.v1 or vitals.v1 payload, each accepted by ``schemas.decode`` (the loader's range checks are the contract's:
    a refusal here is a loader bug, reported as a PsvFormatError naming file and hour); a
    septic stay's sepsis onset as an outcomes.v1 record, in time order."""
    stay_id = stay.series.patient_id
    events = [SimEvent("encounters", payload, adt.decoded(payload).occurred_ts) for payload in stay.encounters]
    columns = {name: VARIABLE_INDEX[name] for name in (*_VITAL_FIELDS, *_LAB_CODES)}
    for hour, ts, row in zip(stay.hours.tolist(), stay.series.ts.tolist(), stay.values.tolist()):
        measured = {name: row[i] for name, i in columns.items() if not math.isnan(row[i])}
        header = {"patient_id": stay_id, "observed_at": adt.rfc3339(ts)}
        results = [{"code": code, "value": measured[code], "unit": BY_NAME[code].unit} for code in _LAB_CODES if code in measured]
        if results:  # a lab row (see _events: each row is one message's values)
            events.append(_checked(stay.path, hour, "labs", {"event_id": f"{SOURCE}:{stay_id}:labs:{hour:g}", **header, "results": results, "source": SOURCE}, ts))
        else:
            vitals = {name: measured[name] for name in _VITAL_FIELDS if name in measured}
            events.append(_checked(stay.path, hour, "vitals", {"event_id": f"{SOURCE}:{stay_id}:vitals:{hour:g}", **header, **vitals, "source": SOURCE}, ts))
    onset = stay.series.event_at
    if onset is not None:  # the onset the label encodes (first SepsisLabel hour + 6 h), after that hour's rows
        record = adt.outcome(f"{SOURCE}:{stay_id}:sepsis_onset", stay_id, onset, "sepsis_onset", source="site_rule")
        events = sorted([*events, SimEvent("outcomes", record, onset)], key=lambda e: e.observed_ts)
    return tuple(events)


def _checked(path: Path, hour: float, topic: str, payload: dict[str, Any], ts: float) -> SimEvent:
    try:
        decode(topic, orjson.dumps(payload))  # type: ignore[arg-type]
    except ContractError as exc:
        raise PsvFormatError(f"{path}: ICULOS {hour:g}: the {topic} contract refuses the row: {exc}") from exc
    return SimEvent(topic, payload, ts)  # type: ignore[arg-type]


def _decoded_encounter(path: Path, payload: dict[str, Any]) -> Encounter:
    try:
        return adt.decoded(payload)
    except ContractError as exc:
        raise PsvFormatError(f"{path}: the encounters contract refuses the stay's {payload['kind']}: {exc}") from exc


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


def _fio2(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """FiO2 as a fraction: a fraction as it is, a percentage (21–100) divided by 100, anything
    else dropped (vitals.v1's rule), and how many were."""
    fio2 = BY_NAME["fio2"]
    percent = (raw >= FIO2_PERCENT_LOW) & (raw <= FIO2_PERCENT_HIGH)
    return _within(np.where(percent, raw / 100.0, raw), fio2.low, fio2.high)


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
