"""A physiological ward-patient simulator: the training data, the demo feed and the benchmark load.

Two profiles: ``profile="ward"`` (this module, the default everywhere a seed was chosen on it:
tests, bench, fault tests, the simulator-trained model) and ``profile="icu"``, ICU stays that
resemble PhysioNet 2019 set A (models.datasets.icu_simulator), which the demo feeds the set-A
model. What follows describes the ward profile; its output for a seed is pinned byte for byte
(tests/test_simulator.py).

Each patient is a latent physiology on a 15-minute grid — a personal baseline (some chronically
abnormal: COPD, chronic tachycardia, hypertension, kidney disease, home oxygen, dementia),
circadian swings, slow Ornstein-Uhlenbeck wander, self-resolving blips (fever, pain,
desaturation, hypotension, fast AF) and, for deteriorating patients, a pattern-specific drift
that starts 4–16 h before the labelled clinical event: subtle for hours (heart rate 75 -> 90,
lactate 1.0 -> 2.5, still NEWS2 0–2), overt in the last hours. Observations are samples of
that physiology at irregular times with measurement noise, missing fields and monitor
artefacts, emitted as vitals.v1 / labs.v1 payloads exactly as a hospital would publish them.
Each stay also sends its encounters.v1 events, as a ward's ADT feed would: an admission to the
ward (age, sex), and at the end of the stay a discharge (stable patients: home, or another
facility) or, for a deteriorating patient, what followed the clinical event: a transfer to the
ICU, or (one in six) death on the ward.

Why it is built this way:

* NEWS2 must stay a fair baseline (AUROC about 0.7–0.8) and the LSTM must be able to beat
  it honestly: early drift relative to the patient's own baseline and labs move before the
  NEWS2 thresholds are crossed, while chronic abnormalities and blips make NEWS2 alarm on
  stable patients. Nothing in the payloads names the pattern or the patient's fate.
* Nurses escalate observation frequency with the NEWS2 they chart, not with the hidden
  outcome, and with patient-specific diligence, so sampling density is a weak signal that
  stable-but-abnormal patients share.
* Everything is vectorised per patient with numpy (2000 patients in seconds) and driven by
  one ``numpy.random.Generator`` seeded from (seed, patient_id): the same seed gives the same
  events on every machine.
* The encounter context (age, sex, where the patient goes) is drawn from a second generator
  of its own, so the observations of a seed are the same with or without encounters, and
  as they were before the simulator had encounters: the shipped model's evaluation and every
  test's chosen seed stay valid. Age and sex do not shape the physiology (yet).
"""

from __future__ import annotations

import heapq
from itertools import compress, repeat
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch

from models.datasets import encounters as adt
from models.datasets.events import SimEvent
from models.datasets.icu_simulator import simulate_icu_cohort, simulate_icu_patient
from models.datasets.profiles import PROFILES
from models.datasets.set_a_summary import STAYS
from models.datasets.simulated_stay import (
    ADT_SOURCE,
    DEFAULT_START,
    HOUR_S,
    LAB_OFFSET_S,
    SimulatedPatient,
    context_rng,
    ou_paths,
    patient_rng,
    stamps,
)
from models.news2 import news2_components, news2_total
from schemas.encounter import Sex
from schemas.variables import ACVPU, BY_NAME, VARIABLE_INDEX, VARIABLES

Pattern = Literal["stable", "sepsis", "respiratory", "haemorrhage"]
PATTERNS: tuple[str, ...] = ("stable", "sepsis", "respiratory", "haemorrhage")
DETERIORATION_PATTERNS: tuple[str, ...] = PATTERNS[1:]
#: The share of a profile's cohort that deteriorates unless told otherwise: a quarter of ward
#: patients, and set A's share of septic ICU stays.
DETERIORATING_FRACTION: dict[str, float] = {"ward": 0.25, "icu": STAYS.septic_share}

_GRID_H = 0.25  # latent physiology resolution; observations interpolate between grid points

# Latent channels: the continuous vitals, then the labs the simulated ward orders (catalogue
# order). A fixed list, not the whole catalogue: a variable added to the catalogue changes no
# simulated patient until the simulator learns how it behaves.
_LATENT: tuple[str, ...] = ("heart_rate", "resp_rate", "spo2", "temperature", "sbp", "dbp") + (
    "lactate", "wbc", "creatinine", "platelets", "bilirubin", "potassium", "sodium", "glucose", "hemoglobin",
)
_L = {name: i for i, name in enumerate(_LATENT)}
_N_VITAL_LATENT = 6
_LABS: tuple[str, ...] = _LATENT[_N_VITAL_LATENT:]
# The per-patient state grid: latent channels, then oxygen (0/1), confusion probability,
# late severity (0 until the drift's last hours) and the NEWS2 a nurse would chart.
_OXYGEN, _CONFUSION, _LATE, _NEWS = range(len(_LATENT), len(_LATENT) + 4)


def _column(spec: dict[str, float]) -> np.ndarray:
    """A per-channel constant vector from a {channel: value} table (unlisted channels 0)."""
    out = np.zeros(len(_LATENT))
    for name, value in spec.items():
        out[_L[name]] = value
    return out


# Population baseline: mean, sd and clip range per channel (adult medical ward).
_BASE_MEAN = _column({
    "heart_rate": 78, "resp_rate": 16, "spo2": 96.8, "temperature": 36.8, "sbp": 128, "dbp": 74,
    "lactate": 1.0, "wbc": 7.8, "creatinine": 0.9, "platelets": 250, "bilirubin": 0.6,
    "potassium": 4.2, "sodium": 139, "glucose": 105, "hemoglobin": 12.8,
})
_BASE_SD = _column({
    "heart_rate": 9, "resp_rate": 1.5, "spo2": 1.1, "temperature": 0.25, "sbp": 14, "dbp": 8,
    "lactate": 0.25, "wbc": 1.8, "creatinine": 0.18, "platelets": 55, "bilirubin": 0.2,
    "potassium": 0.3, "sodium": 2.3, "glucose": 15, "hemoglobin": 1.4,
})
_BASE_LOW = _column({
    "heart_rate": 55, "resp_rate": 12, "spo2": 94.5, "temperature": 36.2, "sbp": 105, "dbp": 55,
    "lactate": 0.5, "wbc": 4, "creatinine": 0.5, "platelets": 140, "bilirubin": 0.2,
    "potassium": 3.5, "sodium": 134, "glucose": 75, "hemoglobin": 10,
})
_BASE_HIGH = _column({
    "heart_rate": 100, "resp_rate": 20, "spo2": 99.5, "temperature": 37.4, "sbp": 165, "dbp": 95,
    "lactate": 1.9, "wbc": 12, "creatinine": 1.4, "platelets": 420, "bilirubin": 1.4,
    "potassium": 5.0, "sodium": 145, "glucose": 140, "hemoglobin": 16.5,
})
# Slow physiological wander (Ornstein-Uhlenbeck): stationary sd and time constant in hours.
_OU_SD: tuple[float, ...] = tuple(_column({
    "heart_rate": 5, "resp_rate": 1.3, "spo2": 0.9, "temperature": 0.2, "sbp": 7, "dbp": 4.5,
    "lactate": 0.15, "wbc": 0.7, "creatinine": 0.05, "platelets": 12, "bilirubin": 0.08,
    "potassium": 0.15, "sodium": 1.0, "glucose": 15, "hemoglobin": 0.25,
}).tolist())
_OU_TAU_H = np.where(np.arange(len(_LATENT)) < _N_VITAL_LATENT, 2.0, 18.0)
_OU_PHI: tuple[float, ...] = tuple(np.exp(-_GRID_H / _OU_TAU_H).tolist())  # per grid step
# Per-observation measurement error: absolute sd for vitals, coefficient of variation for labs.
_VITAL_NOISE_SD = np.array([2.0, 1.0, 0.8, 0.12, 5.0, 4.0])
_LAB_NOISE_CV = np.array([0.08, 0.05, 0.05, 0.05, 0.08, 0.03, 0.01, 0.05, 0.02])
# Hard physiological limits for the latent state (inside the catalogue's plausible ranges).
_LATENT_LOW = _column({
    "heart_rate": 30, "resp_rate": 5, "spo2": 60, "temperature": 33.5, "sbp": 60, "dbp": 30,
    "lactate": 0.3, "wbc": 0.5, "creatinine": 0.2, "platelets": 10, "bilirubin": 0.1,
    "potassium": 2.5, "sodium": 115, "glucose": 40, "hemoglobin": 4,
})
_LATENT_HIGH = _column({
    "heart_rate": 200, "resp_rate": 50, "spo2": 100, "temperature": 41.5, "sbp": 240, "dbp": 140,
    "lactate": 15, "wbc": 60, "creatinine": 12, "platelets": 900, "bilirubin": 25,
    "potassium": 7.5, "sodium": 170, "glucose": 600, "hemoglobin": 20,
})

# Deterioration drift at the clinical event, per pattern: (shift, timing). "early" grows
# linearly from onset (labs that lead), "mid" stays subtle then accelerates, "late" is the
# square of "mid" (blood pressure holds until compensation fails).
_Drift = dict[str, tuple[float, str]]
_DRIFTS: dict[str, _Drift] = {
    "sepsis": {
        "heart_rate": (38, "mid"), "resp_rate": (10, "mid"), "temperature": (2.0, "mid"),
        "sbp": (-35, "late"), "dbp": (-20, "late"), "spo2": (-3, "mid"),
        "lactate": (3.2, "early"), "wbc": (9, "early"), "creatinine": (0.9, "mid"),
        "platelets": (-90, "mid"), "bilirubin": (0.9, "mid"), "glucose": (45, "mid"),
    },
    "respiratory": {
        "resp_rate": (14, "mid"), "spo2": (-11, "mid"), "heart_rate": (28, "mid"),
        "temperature": (1.0, "mid"), "sbp": (6, "mid"), "lactate": (1.2, "late"),
        "wbc": (6, "early"), "creatinine": (0.2, "mid"),
    },
    "haemorrhage": {
        "hemoglobin": (-4.0, "early"), "heart_rate": (42, "mid"), "sbp": (-42, "late"),
        "dbp": (-22, "late"), "resp_rate": (7, "mid"), "lactate": (3.0, "mid"),
        "spo2": (-1.5, "mid"), "temperature": (-0.4, "mid"), "platelets": (-60, "mid"),
        "creatinine": (0.4, "late"),
    },
}
# Chance of the confusion a pattern brings by the event (new "C", later "V"/"P").
_CONFUSION_AT_EVENT = {"stable": 0.0, "sepsis": 0.6, "respiratory": 0.35, "haemorrhage": 0.5}

# Self-resolving blips any patient can have: peak shifts, Gaussian in time.
_BLIPS: tuple[np.ndarray, ...] = (
    _column({"temperature": 1.6, "heart_rate": 14, "resp_rate": 3}),  # transient fever
    _column({"heart_rate": 22, "resp_rate": 4, "sbp": 18, "dbp": 8}),  # pain / anxiety
    _column({"spo2": -6, "resp_rate": 5, "heart_rate": 8}),  # desaturation (mucus plug)
    _column({"sbp": -28, "dbp": -14, "heart_rate": 12}),  # hypotension after a dose
    _column({"heart_rate": 40}),  # paroxysmal fast AF
)

# Lab panel: probability each test is on a panel; lactate is ordered more when NEWS2 is high.
_LAB_ORDER_P = np.array([0.3, 0.9, 0.9, 0.85, 0.4, 0.85, 0.9, 0.6, 0.9])
_LAB_DECIMALS = (1, 1, 2, 0, 1, 1, 0, 0, 1)
_ALT_UNIT_P = 0.15  # creatinine in umol/L, glucose in mmol/L
_LOINC_CODE_P = 0.15  # result coded by LOINC instead of the canonical name
_MONITORED_P = 0.05
_PARTIAL_SET_P = 0.2  # a ward set that lacks some measurements
_NEWS2_BATCH = 256  # stays scored per NEWS2 call: amortises the call, bounds the memory
_WARD_FIELDS: tuple[str, ...] = (
    "heart_rate", "resp_rate", "spo2", "temperature", "sbp", "dbp", "map", "consciousness",
    "on_oxygen",
)
# The encounter context: adult medical ward ages (years), and where stays end.
_AGE_MEAN, _AGE_SD, _AGE_LOW, _AGE_HIGH = 67.0, 16.0, 18, 99
_SEXES: tuple[Sex, ...] = ("female", "male", "unknown")
_SEX_P = (0.49, 0.49, 0.02)
_OTHER_FACILITY_P = 0.12  # stable patients discharged to rehabilitation or a care home
_WARD_DEATH_P = 1 / 6  # deteriorating patients who die on the ward instead of reaching the ICU


@dataclass(frozen=True, slots=True)
class _Course:
    """The hidden story of one stay, in hours since admission."""

    stay_h: float
    event_h: float | None
    lead_h: float


@dataclass(slots=True)
class _Stay:
    """A stay between drawing its physiology and observing it: grid times and state rows."""

    patient_id: str
    seed: int
    pattern: str
    start: datetime
    course: _Course
    rng: np.random.Generator
    t_h: np.ndarray  # grid times, hours since admission
    state: np.ndarray  # [grid, _NEWS + 1]: latent channels, oxygen, confusion, late, NEWS2


def _draw_course(rng: np.random.Generator, pattern: str) -> _Course:
    """Stay length and, for deteriorating patients, event time and drift lead.

    Deteriorating stays are drawn to overlap stable ones (18–94 h before the event, ending
    0.5–2 h after it), so stay length says little. Leads lean long within 4–16 h.
    """
    if pattern == "stable":
        return _Course(stay_h=rng.uniform(24, 96), event_h=None, lead_h=0.0)
    event_h = rng.uniform(18, 94)
    lead_h = 4 + 12 * rng.beta(2.5, 1.0)
    return _Course(stay_h=event_h + rng.uniform(0.5, 2.0), event_h=event_h, lead_h=lead_h)


def _baseline(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """A personal baseline and chronic traits, some of which NEWS2 mistakes for illness."""
    base = np.clip(rng.normal(_BASE_MEAN, _BASE_SD), _BASE_LOW, _BASE_HIGH)
    base[_L["lactate"]] = np.clip(rng.lognormal(0.0, 0.25), 0.5, 1.9)
    traits = {"home_oxygen": 0.0, "dementia": 0.0, "o2_threshold": rng.uniform(91, 93)}
    u = rng.random(11)
    if u[0] < 0.12:  # COPD: lives at SpO2 88–93 % (scale 1 scores it), fast breathing
        base[_L["spo2"]] = rng.uniform(88, 93)
        base[_L["resp_rate"]] = rng.uniform(18, 23)
        traits["o2_threshold"] = 86.0
        traits["home_oxygen"] = float(rng.random() < 0.4)
    if u[1] < 0.08:  # chronic tachycardia (AF, thyrotoxicosis, beta-agonists)
        base[_L["heart_rate"]] = rng.uniform(95, 118)
    if u[2] < 0.12:  # hypertension
        base[_L["sbp"]] = rng.uniform(155, 195)
        base[_L["dbp"]] = rng.uniform(85, 105)
    elif u[3] < 0.06:  # constitutionally low blood pressure
        base[_L["sbp"]] = rng.uniform(92, 106)
        base[_L["dbp"]] = rng.uniform(50, 62)
    if u[4] < 0.08:  # chronic kidney disease
        base[_L["creatinine"]] = rng.uniform(1.8, 4.0)
        base[_L["potassium"]] += 0.4
        base[_L["hemoglobin"]] -= 2.0
    if u[5] < 0.08:  # anaemia
        base[_L["hemoglobin"]] = rng.uniform(7.5, 10)
    if u[6] < 0.15:  # diabetes
        base[_L["glucose"]] = rng.uniform(140, 250)
    if u[7] < 0.03:
        traits["dementia"] = 1.0
    if u[8] < 0.04:  # home oxygen for other reasons (heart failure, fibrosis)
        traits["home_oxygen"] = 1.0
    if u[9] < 0.05:  # steroid leukocytosis
        base[_L["wbc"]] = rng.uniform(12, 17)
    if u[10] < 0.05:  # elderly, runs cold
        base[_L["temperature"]] = rng.uniform(35.6, 36.1)
    return base, traits


def _drift(rng: np.random.Generator, pattern: str, course: _Course, t_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pattern drift ``[n, channels]`` and the late-severity curve that drives confusion."""
    drift = np.zeros((t_h.size, len(_LATENT)))
    if course.event_h is None:
        return drift, np.zeros(t_h.size)
    onset = course.event_h - course.lead_h
    x = np.clip((t_h - onset) / course.lead_h, 0.0, 1.2)
    a = rng.uniform(0.35, 0.5)
    mid = a * x + (1 - a) * x**3
    timing = {"early": x, "mid": mid, "late": mid**2}
    scale = rng.uniform(0.7, 1.3)
    fever_sign = -1.0 if rng.random() < 0.2 else 1.0  # some septic patients turn cold
    wbc_sign = -0.45 if rng.random() < 0.15 else 1.0  # and some leukopenic
    for name, (shift, when) in _DRIFTS[pattern].items():
        if pattern == "sepsis" and name == "temperature":
            shift *= fever_sign
        if name == "wbc":
            shift *= wbc_sign
        drift[:, _L[name]] = shift * scale * rng.uniform(0.7, 1.3) * timing[when]
    return drift, mid**2


def _blips(rng: np.random.Generator, t_h: np.ndarray, stay_h: float) -> np.ndarray:
    """Transient, self-resolving disturbances: NEWS2 false alarms that the model must learn."""
    n = rng.poisson(stay_h / 40.0)
    if n == 0:
        return np.zeros((t_h.size, len(_LATENT)))
    kinds = rng.integers(0, len(_BLIPS), n)
    centres = rng.uniform(0, stay_h, n)
    widths = rng.uniform(0.5, 2.5, n)
    sizes = rng.uniform(0.6, 1.2, n)
    shape = np.exp(-0.5 * ((t_h[:, None] - centres) / widths) ** 2) * sizes
    return shape @ np.stack([_BLIPS[k] for k in kinds])


def _charted_news2(stays: list[_Stay]) -> None:
    """Fill in the NEWS2 a nurse would chart at each grid point, for many stays in one batch.

    The score comes from the same tensor code the worker runs; batching the stays of a cohort
    into one call keeps its fixed per-call cost out of the per-patient budget.
    """
    if not stays:
        return
    state = np.concatenate([stay.state for stay in stays])
    values = np.full((state.shape[0], len(VARIABLES)), np.nan, dtype=np.float32)
    for name in ("heart_rate", "resp_rate", "spo2", "temperature", "sbp"):
        values[:, VARIABLE_INDEX[name]] = state[:, _L[name]]
    values[:, VARIABLE_INDEX["on_oxygen"]] = state[:, _OXYGEN]
    values[:, VARIABLE_INDEX["consciousness"]] = state[:, _CONFUSION] > 0.5
    news = news2_total(news2_components(torch.from_numpy(values))).numpy()
    for stay, chunk in zip(stays, np.split(news, np.cumsum([stay.state.shape[0] for stay in stays])[:-1])):
        stay.state[:, _NEWS] = chunk


def _renewal(
    rng: np.random.Generator, t_h: np.ndarray, rate: np.ndarray, first_h: float, end_h: float, shape: float
) -> np.ndarray:
    """Irregular sample times before ``end_h``: a gamma renewal process on a clock ticking at ``rate``.

    Escalation speeds the clock up instead of switching schedules, so intervals shorten
    smoothly with the charted NEWS2 and keep their jitter.
    """
    clock = np.concatenate(([0.0], np.cumsum(rate[:-1] * _GRID_H)))
    start, end = np.interp([first_h, end_h], t_h, clock)
    n = int((end - start) * 1.5) + 8
    ticks = start + np.concatenate(([0.0], np.cumsum(rng.gamma(shape, 1.0 / shape, n))))
    return np.interp(ticks[ticks < end], clock, t_h)


def _at(grid: np.ndarray, t_h: np.ndarray) -> np.ndarray:
    """Linear interpolation of the state grid's rows at arbitrary times (hours)."""
    pos = t_h / _GRID_H
    i0 = np.minimum(pos.astype(np.int64), grid.shape[0] - 2)
    w = (pos - i0)[:, None]
    return grid[i0] * (1 - w) + grid[i0 + 1] * w


def _vital_sets(rng: np.random.Generator, state: np.ndarray, *, monitor: bool) -> tuple[np.ndarray, np.ndarray]:
    """Measured vitals ``[n, 9]`` in _WARD_FIELDS order from the state at each sample time,
    and which of them were recorded."""
    n = state.shape[0]
    measured = state[:, :_N_VITAL_LATENT] + rng.standard_normal((n, _N_VITAL_LATENT)) * _VITAL_NOISE_SD
    artefact_p = 0.02 if monitor else 0.005
    probe_off = rng.random(n) < artefact_p  # SpO2 probe displaced
    measured[probe_off, 2] = rng.uniform(65, 88, probe_off.sum())
    motion = rng.random(n) < artefact_p * 0.75  # motion artefact on the ECG
    measured[motion, 0] += rng.uniform(30, 70, motion.sum())
    measured = np.clip(measured, _LATENT_LOW[:_N_VITAL_LATENT], _LATENT_HIGH[:_N_VITAL_LATENT])
    measured[:, 5] = np.minimum(measured[:, 5], measured[:, 4] - 15)
    late = state[:, _LATE]
    confused = rng.random(n) < state[:, _CONFUSION]
    out = np.empty((n, len(_WARD_FIELDS)))
    out[:, :6] = np.rint(measured)
    out[:, 3] = np.round(measured[:, 3], 1)
    out[:, 6] = np.rint((measured[:, 4] + 2 * measured[:, 5]) / 3)
    out[:, 7] = confused * (1 + (rng.random(n) < 0.3 * late) + (rng.random(n) < 0.08 * late))
    out[:, 8] = state[:, _OXYGEN] >= 0.5
    if monitor:  # HR, SpO2, usually RR; a cuff cycle now and then; nurses chart the rest
        present = np.zeros((n, len(_WARD_FIELDS)), dtype=bool)
        present[:, [0, 2]] = True
        present[:, 1] = rng.random(n) < 0.8
        present[:, [4, 5, 6]] = (rng.random(n) < 0.25)[:, None]
        return out, present
    present = np.ones((n, len(_WARD_FIELDS)), dtype=bool)
    present[:, 6] = rng.random(n) < 0.5  # only some cuffs report MAP
    partial = rng.random(n) < _PARTIAL_SET_P
    present[partial] &= rng.random((int(partial.sum()), len(_WARD_FIELDS))) >= 0.4
    present[partial, 0] |= ~present[partial].any(axis=1)
    return out, present


def _lab_panels(rng: np.random.Generator, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measured labs ``[n, 9]`` in _LABS order and which tests each panel carried."""
    n = state.shape[0]
    true = state[:, _N_VITAL_LATENT : len(_LATENT)]
    measured = true * (1 + rng.standard_normal(true.shape) * _LAB_NOISE_CV)
    measured = np.clip(measured, _LATENT_LOW[_N_VITAL_LATENT:], _LATENT_HIGH[_N_VITAL_LATENT:])
    order_p = np.broadcast_to(_LAB_ORDER_P, (n, len(_LABS))).copy()
    order_p[:, 0] += 0.4 * (state[:, _NEWS] >= 5)  # suspicion of sepsis -> lactate
    present = rng.random((n, len(_LABS))) < order_p
    present[:, 1] |= ~present.any(axis=1)
    return measured, present


def _vitals_payloads(
    patient_id: str, ts: np.ndarray, values: np.ndarray, present: np.ndarray, source: str
) -> list[dict[str, Any]]:
    """vitals.v1 payloads (event_id filled in once all events are ordered)."""
    payloads = []
    rows = zip(
        values.astype(np.int64).tolist(),
        values[:, 3].tolist(),
        [ACVPU[level] for level in values[:, 7].astype(np.int64).tolist()],
        values[:, 8].astype(bool).tolist(),
    )
    for stamp, (ints, temperature, consciousness, oxygen), mask in zip(
        stamps(ts, offset_s=0), rows, present.tolist()
    ):
        fields = ints[:3] + [temperature] + ints[4:7] + [consciousness, oxygen]
        payload: dict[str, Any] = {"event_id": "", "patient_id": patient_id, "observed_at": stamp}
        payload.update(compress(zip(_WARD_FIELDS, fields), mask))
        payload["source"] = source
        payloads.append(payload)
    return payloads


def _lab_payloads(
    rng: np.random.Generator, patient_id: str, ts: np.ndarray, values: np.ndarray, present: np.ndarray
) -> list[dict[str, Any]]:
    """labs.v1 payloads, some results in alternative units or coded by LOINC."""
    alt_unit = (rng.random(values.shape) < _ALT_UNIT_P).tolist()
    by_loinc = (rng.random(values.shape) < _LOINC_CODE_P).tolist()
    payloads = []
    for i, stamp in enumerate(stamps(ts, offset_s=LAB_OFFSET_S)):
        results = []
        for j, name in enumerate(_LABS):
            if not present[i, j]:
                continue
            var = BY_NAME[name]
            value, unit = float(values[i, j]), var.unit
            if alt_unit[i][j] and name == "creatinine":
                value, unit = value * 88.42, "umol/L"
            elif alt_unit[i][j] and name == "glucose":
                value, unit = value / 18.016, "mmol/L"
            decimals = 1 if unit == "mmol/L" and name == "glucose" else _LAB_DECIMALS[j]
            decimals = 0 if unit == "umol/L" else decimals
            value = round(value, decimals) if decimals else float(round(value))
            code = var.loinc[0] if by_loinc[i][j] and var.loinc else name
            results.append({"code": code, "value": value, "unit": unit})
        payloads.append({
            "event_id": "", "patient_id": patient_id, "observed_at": stamp,
            "results": results, "source": "lis",
        })
    return payloads


def _physiology(patient_id: str, seed: int, pattern: str | None, start: datetime) -> _Stay:
    """Draw a stay's hidden course and its latent physiology on the grid (NEWS2 still unset)."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = patient_rng(seed, patient_id)
    if pattern is None:
        pattern = str(rng.choice(PATTERNS, p=[0.75, 0.25 / 3, 0.25 / 3, 0.25 / 3]))
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    course = _draw_course(rng, pattern)
    base, traits = _baseline(rng)
    t_h = np.arange(0.0, course.stay_h + 2 * _GRID_H, _GRID_H)
    hour_of_day = (start.timestamp() / HOUR_S + t_h) % 24
    swing = np.zeros(len(_LATENT))
    swing[[_L["heart_rate"], _L["temperature"], _L["sbp"]]] = rng.uniform((2, 0.15, 3), (5, 0.3, 6))
    circadian = np.sin(2 * np.pi * (hour_of_day - 10) / 24)[:, None] * swing
    drift, late = _drift(rng, pattern, course, t_h)
    latent = base + circadian + ou_paths(rng, t_h.size, _OU_PHI, _OU_SD) + drift + _blips(rng, t_h, course.stay_h)
    latent = np.clip(latent, _LATENT_LOW, _LATENT_HIGH)

    # Oxygen goes on when saturation falls below the nurse's threshold and stays on a while.
    hold = max(1, int(rng.uniform(2, 6) / _GRID_H))
    need = np.cumsum(latent[:, _L["spo2"]] < traits["o2_threshold"])
    oxygen = ((need - np.concatenate((np.zeros(hold), need[:-hold]))) > 0) | bool(traits["home_oxygen"])
    latent[:, _L["spo2"]] = np.minimum(latent[:, _L["spo2"]] + oxygen * rng.uniform(3, 6), 100)
    confusion_p = np.clip(0.6 * traits["dementia"] + _CONFUSION_AT_EVENT[pattern] * late, 0, 0.95)
    state = np.column_stack((latent, oxygen, confusion_p, late, np.zeros(t_h.size)))
    return _Stay(patient_id, seed, pattern, start, course, rng, t_h, state)


def _observe(stay: _Stay) -> SimulatedPatient:
    """Sample the stay the way a ward does: nurses' sets, monitors, lab panels, as payloads."""
    rng, t_h, news, stay_h = stay.rng, stay.t_h, stay.state[:, _NEWS], stay.course.stay_h
    # Nurses escalate with charted NEWS2, each with their own diligence: a weak signal.
    diligence = rng.uniform(0.2, 1.0)
    ward_rate = (1 + diligence * 0.35 * np.minimum(news, 7)) / rng.uniform(3, 6)
    lab_rate = (1 + diligence * 0.15 * np.minimum(news, 7)) / rng.uniform(8, 24)
    vitals_t = _renewal(rng, t_h, ward_rate, rng.uniform(0, 0.5), stay_h, shape=4.0)
    labs_t = _renewal(rng, t_h, lab_rate, rng.uniform(0.2, 2.0), stay_h, shape=3.0)
    sets = [(vitals_t, *_vital_sets(rng, _at(stay.state, vitals_t), monitor=False), "ward")]
    if rng.random() < _MONITORED_P:
        monitor_rate = np.full(t_h.size, 60.0 / rng.uniform(5, 15))
        monitor_t = _renewal(rng, t_h, monitor_rate, rng.uniform(0, 0.25), stay_h, shape=6.0)
        sets.append((monitor_t, *_vital_sets(rng, _at(stay.state, monitor_t), monitor=True), "monitor"))

    t0 = stay.start.timestamp()
    events: list[SimEvent] = []
    for times_h, values, present, source in sets:
        ts = np.floor(t0 + times_h * HOUR_S)
        payloads = _vitals_payloads(stay.patient_id, ts, values, present, source)
        events += map(SimEvent, repeat("vitals"), payloads, ts.tolist())
    ts = np.floor(t0 + labs_t * HOUR_S)
    payloads = _lab_payloads(rng, stay.patient_id, ts, *_lab_panels(rng, _at(stay.state, labs_t)))
    events += map(SimEvent, repeat("labs"), payloads, ts.tolist())
    events.sort(key=lambda e: (e.observed_ts, e.topic))
    for n, event in enumerate(events):
        event.payload["event_id"] = f"{stay.patient_id}-{n:05d}"

    event_h = stay.course.event_h
    return SimulatedPatient(
        patient_id=stay.patient_id,
        pattern=stay.pattern,
        admitted_at=stay.start,
        discharged_at=stay.start + timedelta(hours=stay_h),
        deterioration_at=None if event_h is None else stay.start + timedelta(hours=event_h),
        events=events,
        encounters=_encounter_events(stay),
    )


def _encounter_events(stay: _Stay) -> list[SimEvent]:
    """The stay's admission to the ward and the encounter that ends it, from the context's own
    generator (see the module notes): stable patients go home or to another facility, a
    deteriorating one is transferred to the ICU or dies on the ward at the end of the stay,
    0.5–2 h after the clinical event (the time an ICU bed, or the end, takes)."""
    rng = context_rng(stay.seed, stay.patient_id)
    age = int(np.clip(round(rng.normal(_AGE_MEAN, _AGE_SD)), _AGE_LOW, _AGE_HIGH))
    sex = _SEXES[int(rng.choice(len(_SEXES), p=_SEX_P))]
    pid, admitted = stay.patient_id, float(np.floor(stay.start.timestamp()))
    ended = float(np.floor(admitted + stay.course.stay_h * HOUR_S))
    admission = adt.admission(
        f"{pid}-admission", pid, admitted, source=ADT_SOURCE, unit="ward", age=age, sex=sex
    )
    if stay.course.event_h is None:
        disposition = "other_facility" if rng.random() < _OTHER_FACILITY_P else "home"
        ending = adt.discharge(f"{pid}-discharge", pid, ended, source=ADT_SOURCE, disposition=disposition)
    elif rng.random() < _WARD_DEATH_P:
        ending = adt.discharge(f"{pid}-discharge", pid, ended, source=ADT_SOURCE, disposition="died")
    else:
        ending = adt.transfer(f"{pid}-transfer", pid, ended, "icu", source=ADT_SOURCE)
    return [SimEvent("encounters", admission, admitted), SimEvent("encounters", ending, ended)]


def simulate_patient(
    patient_id: str, *, seed: int, pattern: str | None = None, start: datetime = DEFAULT_START,
    profile: str = "ward",
) -> SimulatedPatient:
    """Simulate one stay admitted at ``start``; ``pattern=None`` draws one (ward: 25 % deteriorate;
    icu: set A's share turn septic, see models.datasets.icu_simulator).

    The result depends only on (seed, patient_id, pattern, start, profile): the same patient
    comes out of ``simulate_cohort`` and of this function.
    """
    if _checked(profile) == "icu":
        return simulate_icu_patient(patient_id, seed=seed, pattern=pattern, start=start)
    stay = _physiology(patient_id, seed, pattern, start)
    _charted_news2([stay])
    return _observe(stay)


def simulate_cohort(
    n_patients: int,
    *,
    seed: int,
    deteriorating_fraction: float | None = None,
    start: datetime = DEFAULT_START,
    admission_window_hours: float = 168.0,
    profile: str = "ward",
) -> list[SimulatedPatient]:
    """A ward's (or with ``profile="icu"`` an ICU's) worth of overlapping stays, admitted over
    ``admission_window_hours``.

    Exactly round(n * fraction) patients deteriorate (``None``: the profile's
    ``DETERIORATING_FRACTION``), shuffled across patient ids, so an id says nothing about a
    patient's fate; on the ward their patterns split evenly among the three, in the ICU they
    turn septic.
    """
    fraction = DETERIORATING_FRACTION[_checked(profile)] if deteriorating_fraction is None else deteriorating_fraction
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("deteriorating_fraction must be within [0, 1]")
    if profile == "icu":
        return simulate_icu_cohort(
            n_patients, seed=seed, septic_fraction=fraction, start=start, admission_window_hours=admission_window_hours
        )
    rng = np.random.default_rng([seed, 0x5EED])
    n_det = round(n_patients * fraction)
    patterns = ["stable"] * (n_patients - n_det) + [
        DETERIORATION_PATTERNS[i % len(DETERIORATION_PATTERNS)] for i in range(n_det)
    ]
    patterns = [patterns[i] for i in rng.permutation(n_patients)]
    offsets = np.floor(rng.uniform(0, admission_window_hours * HOUR_S, n_patients))
    stays = [
        _physiology(f"sim{seed}-{i:05d}", seed, patterns[i], start + timedelta(seconds=float(offsets[i])))
        for i in range(n_patients)
    ]
    for first in range(0, n_patients, _NEWS2_BATCH):
        _charted_news2(stays[first : first + _NEWS2_BATCH])
    return [_observe(stay) for stay in stays]


def _checked(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return profile


def interleave(
    patients: Iterable[SimulatedPatient], *, with_encounters: bool = False, with_outcomes: bool = False
) -> Iterator[tuple[SimulatedPatient, SimEvent]]:
    """All patients' observations merged in time order (ties by patient order), as a feed would
    carry them; ``with_encounters`` merges in each stay's admission and ending too
    (``SimulatedPatient.feed``), and ``with_outcomes`` the outcome of each deteriorating stay,
    as `vitalwatch simulate` publishes them."""
    patients = list(patients)
    per_patient = [p.feed(outcomes=with_outcomes) if with_encounters else p.events for p in patients]
    streams = [zip((e.observed_ts for e in events), repeat(k), range(len(events))) for k, events in enumerate(per_patient)]
    for _, k, n in heapq.merge(*streams):
        yield patients[k], per_patient[k][n]
