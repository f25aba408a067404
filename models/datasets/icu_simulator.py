"""The ICU profile of the simulator: adult ICU stays that resemble PhysioNet 2019 set A.

The shipped model learns from set A (ICU stays charted by the hour, the whole 34-column panel,
sepsis as the outcome); this profile feeds the demo, and anything else that wants plausible
patients for it, with stays drawn to match set A's summary statistics
(models.datasets.set_a_summary, where each number's measurement is described): how often each
variable is charted, its distribution, how much of its spread lies between patients, ICU length
of stay, when charting starts, age, sex, MICU/SICU, admission through another unit, and a
septic course in set A's share of stays, with set A's onset times and its septic stays' shifts.

How a stay is drawn, and why:

* **Values** live in normal-score space: each variable's score is a stay-level draw (its
  ``between`` share of the variance) plus a within-stay process (the rest): an Ornstein-
  Uhlenbeck wander plus charting noise, with time constants of hours for vital signs and a
  day for labs (set A's heart-rate scores correlate 0.68 an hour apart and 0.23 six hours
  apart). Related variables share a latent factor (``LOADINGS``: pressures, blood count, renal,
  bilirubin, acid-base). A score becomes a value through set A's quantiles of the variable
  (linear between the quantile knots in normal-score space), so every marginal, skew and
  heavy tail included, is set A's by construction, in the catalogue's units; then the
  pressures are kept in order (DBP < MAP < SBP), direct bilirubin within total, and values are
  rounded as a chart records them.
* **Charting** goes by panels (vital signs, diastolic pressure, ventilation with blood gases,
  chemistry, blood count, coagulation, liver, lactate, troponin): a stay charts a panel at all
  with set A's share (septic stays with theirs: more often ventilated, twice as often a
  lactate), then in each hour with a rate that gives set A's hourly rate, and each member of a
  fired panel with its own share, so each variable's rate is set A's.
* **Sepsis**: a septic stay's scores sit ``septic_offset`` from the others' for the whole stay
  and drift towards ``septic_late`` over the 24 h before onset (quadratic ramp), scaled by a
  severity drawn per stay (exponential, mean 1: most septic stays drift a little, a few a
  lot), so that the mean over the hours -5 ... +3 around onset is set A's. The record ends 1-3
  h after onset, as set A's septic files do.
* **Timing**: the stay is charted hour by hour from its first hour (set A's ICULOS of the first
  row) to its last, vital signs a few minutes after the hour, the hour's labs drawn in the 20
  minutes before it (stamped by the lab system in local time, +01:00), so each hour reaches the
  worker as a labs.v1 then a vitals.v1 message, as a replay of set A sends them. FiO2 goes with
  the vital signs (the contract derives on_oxygen from it); a lab result is coded by LOINC now
  and then. Set A charts no consciousness, sodium or EtCO2, and neither does this profile.
* **Encounters** come from the context's own generator (models.datasets.simulated_stay), so the
  physiology of a seed never depends on them: an admission to the ICU, or (set A's share) to a
  ward that long before, then a transfer to the ICU; age and sex as in set A. A stay that does
  not turn septic ends with a discharge after its last hour (set A records no disposition:
  home, or another facility for one in four, is this profile's choice). A septic stay is still
  in the ICU when its record ends, and no encounter ends it (a replay of set A sends none
  either).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import repeat
from statistics import NormalDist
from typing import Any

import numpy as np

from models.datasets import encounters as adt
from models.datasets.events import SimEvent
from models.datasets.set_a_summary import LOADINGS, MARGINALS, PANELS, QUANTILE_LEVELS, STAYS
from models.datasets.simulated_stay import (
    ADT_SOURCE,
    HOUR_S,
    LAB_OFFSET_S,
    SimulatedPatient,
    context_rng,
    ou_paths,
    patient_rng,
    stamps,
)
from schemas.encounter import Sex
from schemas.variables import BY_NAME

ICU_PATTERNS: tuple[str, ...] = ("stable", "sepsis")

_NAMES: tuple[str, ...] = tuple(MARGINALS)
_COLUMN = {name: i for i, name in enumerate(_NAMES)}
_IS_LAB = np.array([BY_NAME[name].kind == "lab" for name in _NAMES])
_VITAL_COLUMNS = [i for i in range(len(_NAMES)) if not _IS_LAB[i]]  # a vitals.v1 message's
_LAB_COLUMNS = [i for i in range(len(_NAMES)) if _IS_LAB[i]]  # a labs.v1 message's
_FACTORS: tuple[str, ...] = tuple(LOADINGS)
# Within-stay wander: time constant (hours) and the share of the within-stay variance it holds
# (the rest is hour-to-hour charting noise), for vital signs and for labs.
_VITAL_TAU_H, _LAB_TAU_H, _PERSISTENCE = 4.0, 24.0, 0.8
# Sepsis: the drift ramps up over this many hours before onset.
_LEAD_H = 24.0
# Hour-to-hour correlation of each within-stay channel: every variable, then every factor (a
# factor is a lab's when all its variables are labs).
_WITHIN_PHI: tuple[float, ...] = tuple(np.exp(-1.0 / np.where(
    np.concatenate((_IS_LAB, [all(_IS_LAB[_COLUMN[m]] for m in LOADINGS[f]) for f in _FACTORS])), _LAB_TAU_H, _VITAL_TAU_H,
)).tolist())
_KNOTS_Z = np.array([NormalDist().inv_cdf(level) for level in QUANTILE_LEVELS])
_QUANTILES = np.array([MARGINALS[name].quantiles for name in _NAMES])
_BETWEEN = np.array([MARGINALS[name].between for name in _NAMES])
_OFFSET = np.array([MARGINALS[name].septic_offset for name in _NAMES])
_LATE = np.array([MARGINALS[name].septic_late for name in _NAMES])
_LOW = np.array([BY_NAME[name].low for name in _NAMES])
_HIGH = np.array([BY_NAME[name].high for name in _NAMES])
# Decimals as a chart records each value (set A's precision, roughly).
_DECIMALS: dict[str, int] = {
    "temperature": 1, "fio2": 2, "ph": 2, "lactate": 1, "wbc": 1, "creatinine": 1, "bilirubin": 1,
    "bilirubin_direct": 1, "potassium": 1, "hemoglobin": 1, "hematocrit": 1, "calcium": 1, "magnesium": 1,
    "phosphate": 1, "ptt": 1, "troponin_i": 2,
}
_INTEGER = [name not in _DECIMALS for name in _NAMES]  # charted as whole numbers
_VITAL_JITTER_S = (0, 300)  # vital signs charted this long after the hour
_LAB_JITTER_S = (60, 1200)  # the hour's labs drawn this long before it
_LOINC_CODE_P = 0.15
_OTHER_FACILITY_P = 0.25
_DISCHARGE_AFTER_H = (0.5, 1.0)  # after the last charted hour
_VITALS_SOURCE = "icu-monitor"
_LABS_SOURCE = "lis"


@dataclass(frozen=True, slots=True)
class _Course:
    """The hidden story of one ICU stay, in hours since ICU admission (set A's ICULOS)."""

    first_h: int
    last_h: int
    onset_h: float | None


def _ramp(hours: np.ndarray, onset_h: float) -> np.ndarray:
    """0 until _LEAD_H before onset, rising quadratically to 1 at onset, 1 after."""
    return np.clip(1.0 + (hours - onset_h) / _LEAD_H, 0.0, 1.0) ** 2


#: The ramp's mean over the hours set A's ``septic_late`` was measured on (-5 ... +3).
_RAMP_WINDOW_MEAN = float(_ramp(np.arange(-5.0, 4.0), 0.0).mean())


def _panel_chances() -> list[tuple[tuple[int, ...], np.ndarray, float, float, float]]:
    """Per panel: its member columns, each member's chance in a fired panel, the shares of
    non-septic and septic stays that chart it, and its hourly rate in those stays (so that it
    fires in set A's share of all hours, septic stays' longer records weighed in)."""
    non_septic = (1.0 - STAYS.septic_share) * STAYS.rows_non_septic
    septic = STAYS.septic_share * STAYS.rows_septic
    chances = []
    for panel in PANELS.values():
        share = (non_septic * panel.share + septic * panel.share_septic) / (non_septic + septic)  # of all hours
        members = np.array([min(1.0, MARGINALS[m].rate / panel.rate) for m in panel.members])
        columns = tuple(_COLUMN[m] for m in panel.members)
        chances.append((columns, members, panel.share, panel.share_septic, min(1.0, panel.rate / share)))
    return chances


_PANELS = _panel_chances()


def _from_quantiles(levels: tuple[float, ...] | np.ndarray, u: float) -> float:
    """A draw from a quantile table: linear between the quantiles, at ``u`` in [0, 1]."""
    return float(np.interp(u, QUANTILE_LEVELS, levels))


def _choice(rng: np.random.Generator, table: dict[int, float]) -> int:
    keys = list(table)
    p = np.array([table[k] for k in keys])
    return int(keys[rng.choice(len(keys), p=p / p.sum())])


def _draw_course(rng: np.random.Generator, septic: bool) -> _Course:
    """First and last charted hour and, for a septic stay, the onset (set A's distributions)."""
    if septic:
        onset = _from_quantiles(STAYS.onset_hour, rng.random())
        last = int(np.floor(onset)) + _choice(rng, STAYS.hours_after_onset)
    else:
        onset = None
        last = int(round(_from_quantiles(STAYS.last_hour_non_septic, rng.random())))
    first = min(_choice(rng, STAYS.first_hour), last - 1)
    return _Course(first_h=first, last_h=last, onset_h=onset)


def _within(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance within-stay processes ``[n, channels]`` (every variable, then every
    factor) on the hourly grid: OU wander plus charting noise."""
    wander = ou_paths(rng, n, _WITHIN_PHI, (1.0,) * len(_WITHIN_PHI))
    noise = rng.standard_normal(wander.shape)
    return np.sqrt(_PERSISTENCE) * wander + np.sqrt(1 - _PERSISTENCE) * noise


def _scores(rng: np.random.Generator, course: _Course, hours: np.ndarray) -> np.ndarray:
    """Normal scores ``[hours, variables]``: stay level + within-stay process, related variables
    through their shared factor, and a septic stay's offset and drift."""
    n_vars, n_factors = len(_NAMES), len(_FACTORS)
    between = rng.standard_normal(n_vars + n_factors)
    within = _within(rng, hours.size)
    level, wander = between[:n_vars].copy(), within[:, :n_vars].copy()
    for f, factor in enumerate(_FACTORS):
        for name, loading in LOADINGS[factor].items():
            i, own = _COLUMN[name], np.sqrt(1 - loading**2)
            level[i] = loading * between[n_vars + f] + own * level[i]
            wander[:, i] = loading * within[:, n_vars + f] + own * wander[:, i]
    scores = np.sqrt(_BETWEEN) * level + np.sqrt(1 - _BETWEEN) * wander
    if course.onset_h is not None:
        severity = rng.exponential(1.0)
        drift = (_LATE - _OFFSET) * severity / _RAMP_WINDOW_MEAN
        scores += _OFFSET + _ramp(hours, course.onset_h)[:, None] * drift
    return scores


def _values(scores: np.ndarray) -> np.ndarray:
    """Scores through set A's quantiles into values, kept consistent, rounded, in range."""
    values = np.empty_like(scores)
    for i in range(len(_NAMES)):
        values[:, i] = np.interp(scores[:, i], _KNOTS_Z, _QUANTILES[i])
    sbp, mean, dbp = (_COLUMN[name] for name in ("sbp", "map", "dbp"))
    values[:, dbp] = np.minimum(values[:, dbp], values[:, mean] - 2)
    values[:, sbp] = np.maximum(values[:, sbp], values[:, mean] + 2)
    direct, total = _COLUMN["bilirubin_direct"], _COLUMN["bilirubin"]
    values[:, direct] = np.minimum(values[:, direct], values[:, total])
    for name in _NAMES:
        i = _COLUMN[name]
        values[:, i] = np.round(values[:, i], _DECIMALS.get(name, 0))
    return np.clip(values, _LOW, _HIGH)


def _charted(rng: np.random.Generator, septic: bool, n_hours: int) -> np.ndarray:
    """Which variable each hour charts ``[hours, variables]``, panel by panel."""
    charted = np.zeros((n_hours, len(_NAMES)), dtype=bool)
    for columns, members, share, share_septic, rate in _PANELS:
        flagged = rng.random() < (share_septic if septic else share)
        fired = rng.random(n_hours) < rate
        drawn = rng.random((n_hours, len(columns))) < members
        if flagged:
            charted[:, columns] = fired[:, None] & drawn
    return charted


def _charted_number(column: int, value: float) -> int | float:
    """A value as the chart writes it: whole numbers without a decimal point."""
    return int(value) if _INTEGER[column] else value


def _vitals_payloads(patient_id: str, ts: np.ndarray, values: np.ndarray, charted: np.ndarray) -> list[dict[str, Any]]:
    """vitals.v1 payloads of the hours that chart a vital sign (event_id filled in later)."""
    columns = _VITAL_COLUMNS
    payloads = []
    for stamp, row, mask in zip(stamps(ts, offset_s=0), values[:, columns].tolist(), charted[:, columns].tolist()):
        payload: dict[str, Any] = {"event_id": "", "patient_id": patient_id, "observed_at": stamp}
        payload.update((_NAMES[i], _charted_number(i, value)) for i, value, seen in zip(columns, row, mask) if seen)
        payload["source"] = _VITALS_SOURCE
        payloads.append(payload)
    return payloads


def _lab_payloads(
    rng: np.random.Generator, patient_id: str, ts: np.ndarray, values: np.ndarray, charted: np.ndarray
) -> list[dict[str, Any]]:
    """labs.v1 payloads of the hours that chart a lab, some results coded by LOINC."""
    columns = _LAB_COLUMNS
    by_loinc = (rng.random((len(ts), len(columns))) < _LOINC_CODE_P).tolist()
    payloads = []
    for stamp, row, mask, loinc in zip(
        stamps(ts, offset_s=LAB_OFFSET_S), values[:, columns].tolist(), charted[:, columns].tolist(), by_loinc
    ):
        results = []
        for i, value, seen, coded in zip(columns, row, mask, loinc):
            if seen:
                var = BY_NAME[_NAMES[i]]
                code = var.loinc[0] if coded else var.name
                results.append({"code": code, "value": _charted_number(i, value), "unit": var.unit})
        payloads.append({
            "event_id": "", "patient_id": patient_id, "observed_at": stamp, "results": results, "source": _LABS_SOURCE,
        })
    return payloads


def _observations(rng: np.random.Generator, patient_id: str, course: _Course, t_icu: float, septic: bool) -> list[SimEvent]:
    """The stay's labs.v1 and vitals.v1 events, hour by hour, in time order with their ids."""
    hours = np.arange(course.first_h, course.last_h + 1, dtype=np.float64)
    values = _values(_scores(rng, course, hours))
    charted = _charted(rng, septic, hours.size)
    hour_ts = t_icu + hours * HOUR_S
    vitals_ts = np.floor(hour_ts + rng.uniform(*_VITAL_JITTER_S, hours.size))
    labs_ts = np.floor(hour_ts - rng.uniform(*_LAB_JITTER_S, hours.size))
    vital_hours = (charted & ~_IS_LAB).any(axis=1)
    lab_hours = (charted & _IS_LAB).any(axis=1)
    events = list(map(SimEvent, repeat("vitals"), _vitals_payloads(
        patient_id, vitals_ts[vital_hours], values[vital_hours], charted[vital_hours]
    ), vitals_ts[vital_hours].tolist()))
    events += map(SimEvent, repeat("labs"), _lab_payloads(
        rng, patient_id, labs_ts[lab_hours], values[lab_hours], charted[lab_hours]
    ), labs_ts[lab_hours].tolist())
    events.sort(key=lambda e: (e.observed_ts, e.topic))
    for n, event in enumerate(events):
        event.payload["event_id"] = f"{patient_id}-{n:05d}"
    return events


def _context(
    seed: int, patient_id: str, septic: bool, t_icu: float, course: _Course
) -> tuple[list[SimEvent], str | None]:
    """The stay's encounters and its ICU type, from the context's own generator."""
    rng = context_rng(seed, patient_id)
    age = int(round(_from_quantiles(STAYS.age, rng.random())))
    sex: Sex = "male" if rng.random() < STAYS.male_share else "female"
    shares = STAYS.icu_type_septic if septic else STAYS.icu_type_non_septic
    icu_types = [*shares, None]
    icu_type = icu_types[rng.choice(len(icu_types), p=[*shares.values(), 1 - sum(shares.values())])]
    who = {"age": age, "sex": sex, "source": ADT_SOURCE}
    if rng.random() < STAYS.hospital_before_icu_share:
        admitted = t_icu - round(_from_quantiles(STAYS.hospital_before_icu_hours, rng.random()) * HOUR_S)
        opening = [
            adt.admission(f"{patient_id}-admission", patient_id, admitted, unit="ward", **who),
            adt.transfer(f"{patient_id}-transfer", patient_id, t_icu, "icu", source=ADT_SOURCE),
        ]
    else:
        opening = [adt.admission(f"{patient_id}-admission", patient_id, t_icu, unit="icu", **who)]
    events = [SimEvent("encounters", payload, adt.decoded(payload).occurred_ts) for payload in opening]
    if not septic:
        disposition = "other_facility" if rng.random() < _OTHER_FACILITY_P else "home"
        ended = float(np.floor(t_icu + (course.last_h + rng.uniform(*_DISCHARGE_AFTER_H)) * HOUR_S))
        ending = adt.discharge(f"{patient_id}-discharge", patient_id, ended, source=ADT_SOURCE, disposition=disposition)
        events.append(SimEvent("encounters", ending, ended))
    return events, icu_type


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def simulate_icu_patient(patient_id: str, *, seed: int, pattern: str | None, start: datetime) -> SimulatedPatient:
    """One ICU stay admitted to the ICU at ``start``; ``pattern`` "sepsis" or "stable", or None
    to draw one (set A's septic share). Depends only on (seed, patient_id, pattern, start)."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = patient_rng(seed, patient_id)
    if pattern is None:
        pattern = "sepsis" if rng.random() < STAYS.septic_share else "stable"
    if pattern not in ICU_PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r} for the ICU profile; expected one of {ICU_PATTERNS}")
    septic = pattern == "sepsis"
    course = _draw_course(rng, septic)
    t_icu = float(np.floor(start.timestamp()))
    events = _observations(rng, patient_id, course, t_icu, septic)
    encounters, icu_type = _context(seed, patient_id, septic, t_icu, course)
    ended = encounters[-1].observed_ts if not septic else events[-1].observed_ts
    return SimulatedPatient(
        patient_id=patient_id,
        pattern=pattern,
        admitted_at=_at(encounters[0].observed_ts),
        discharged_at=_at(ended),
        deterioration_at=None if course.onset_h is None else _at(t_icu) + timedelta(hours=course.onset_h),
        events=events,
        encounters=encounters,
        icu_type=icu_type,
    )


def simulate_icu_cohort(
    n_patients: int, *, seed: int, septic_fraction: float, start: datetime, admission_window_hours: float
) -> list[SimulatedPatient]:
    """An ICU's worth of overlapping stays, ICU admissions spread over ``admission_window_hours``;
    exactly round(n * septic_fraction) of them septic, shuffled across patient ids
    (models.datasets.simulator.simulate_cohort checks the fraction)."""
    rng = np.random.default_rng([seed, 0x5EED, 0x1C0])
    n_septic = round(n_patients * septic_fraction)
    patterns = np.array(["stable"] * (n_patients - n_septic) + ["sepsis"] * n_septic)[rng.permutation(n_patients)]
    offsets = np.floor(rng.uniform(0, admission_window_hours * HOUR_S, n_patients))
    return [
        simulate_icu_patient(f"icu{seed}-{i:05d}", seed=seed, pattern=str(patterns[i]), start=start + timedelta(seconds=float(offsets[i])))
        for i in range(n_patients)
    ]
