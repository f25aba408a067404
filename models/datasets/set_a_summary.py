"""Summary statistics of PhysioNet/CinC 2019 training set A: what the ICU simulator imitates.

Provenance. Every number below was measured once on training set A (20,336 ICU stays, 790,215
hourly rows; https://physionet.org/content/challenge-2019/1.0.0/, CC BY 4.0; cite Reyna MA et
al., Crit Care Med 2020;48(2):210-217, the data DOI 10.13026/v64v-d857 and PhysioNet's standard
citation, as tests/fixtures/physionet2019/ATTRIBUTION.md spells out). They are aggregates over
thousands of stays — rates, means, quantiles, shares — and hold no row of any stay. Only set A
was read.

How each number was measured (values in the catalogue's units: each PSV column mapped as
models.datasets.physionet maps it, values outside the catalogue's plausible range dropped,
FiO2 given in percent divided by 100):

* ``Marginal.rate``: rows of set A with a value of the variable / all rows (each row is one
  hour of one stay), i.e. the probability that an ICU hour charts it.
* ``Marginal.quantiles``: of all values of the variable, pooled over stays, at
  ``QUANTILE_LEVELS``; ``mean`` and ``sd`` of the same values.
* ``Marginal.between``: the share of the variance of the values' normal scores (rank -> normal
  quantile) that lies between stays: 1 - var(score - its stay's mean score) / var(score), over
  stays with at least three values.
* ``Marginal.septic_offset``, ``Marginal.septic_late``: in normal-score units, the mean score of
  septic stays' hours at least 18 h before onset, and of their hours from 6 h before onset to 3 h
  after (the hours -5 ... +3), each minus the mean score of all hours of non-septic stays. Onset
  is the challenge's: the first hour with SepsisLabel = 1 plus 6 h.
* ``Panel``: the variables of a panel are charted together. ``share`` and ``share_septic``: the
  shares of non-septic and septic stays that chart the panel's ``flag`` variable (any member
  when None) at least once; ``rate``: rows with any member charted / all rows.
* ``LOADINGS``: one latent factor per group of related variables, loadings chosen so that their
  products approximate the measured correlations of the normal scores of values charted in the
  same hour (SBP-MAP 0.78, MAP-DBP 0.84, SBP-DBP 0.53; Hct-Hgb 0.96; BUN-creatinine 0.72;
  total-direct bilirubin 0.94; HCO3-base excess 0.85, pH-base excess 0.65).
* ``STAYS``: per stay, from its rows: the mean number of rows of non-septic and septic stays;
  the hours of its last row (ICULOS) for non-septic stays;
  the onset hour for septic stays and how many hours its file runs on after onset; the hour of
  its first row; the share admitted to hospital more than 1 h before the ICU (HospAdmTime <
  -1) and how long before; Age; Gender; Unit1 (MICU) and Unit2 (SICU) among septic and
  non-septic stays; the share of septic stays.

Observed in passing: set A's septic stays differ from the others mostly in level, and only a
little in trend, with a wide spread between stays: over the last hours before onset heart rate
(+5/min against non-septic hours), respiratory rate (+2/min), temperature (+0.2 °C, fever above
38.3 °C three times as common), WBC and creatinine rise; pressures fall by 1-2 mmHg from the
septic stays' own earlier level; lactate does not rise on average but is drawn twice as often
(66 % of septic stays against 35 %), and septic stays are more often ventilated (FiO2 charted
in 80 % against 57 %).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Levels of ``Marginal.quantiles`` and of the stay-level quantile tables.
QUANTILE_LEVELS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 0.999)


@dataclass(frozen=True, slots=True)
class Marginal:
    """One variable's hourly charting rate, distribution, spread between stays and septic shift."""

    rate: float
    quantiles: tuple[float, ...]
    mean: float
    sd: float
    between: float
    septic_offset: float
    septic_late: float


@dataclass(frozen=True, slots=True)
class Panel:
    """Variables charted together, in which share of stays, and how often."""

    members: tuple[str, ...]
    share: float
    share_septic: float
    rate: float
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Stays:
    """Stay-level facts: length, onset, charting start, admission, demographics, ICU type."""

    septic_share: float
    rows_non_septic: float  # mean rows (charted hours) per stay
    rows_septic: float
    last_hour_non_septic: tuple[float, ...]  # quantiles at QUANTILE_LEVELS
    onset_hour: tuple[float, ...]  # quantiles at QUANTILE_LEVELS
    hours_after_onset: dict[int, float]  # probability of each
    first_hour: dict[int, float]  # probability of each hour of the first row (12: 12 or later)
    hospital_before_icu_share: float
    hospital_before_icu_hours: tuple[float, ...]  # quantiles at QUANTILE_LEVELS
    age: tuple[float, ...]  # quantiles at QUANTILE_LEVELS
    male_share: float
    icu_type_non_septic: dict[str, float]  # MICU, SICU; the rest neither
    icu_type_septic: dict[str, float]


MARGINALS: dict[str, Marginal] = {
    "heart_rate": Marginal(0.9226, (41.0, 51.0, 60.0, 64.0, 73.0, 84.0, 96.0, 107.0, 114.0, 129.5, 149.0), 84.99, 16.94, 0.69, 0.16, 0.34),
    "spo2": Marginal(0.8796, (73.5, 89.0, 93.0, 94.0, 96.0, 98.0, 99.5, 100.0, 100.0, 100.0, 100.0), 97.27, 2.816, 0.43, 0.10, -0.04),
    "temperature": Marginal(0.3378, (33.5, 35.11, 35.78, 36.1, 36.56, 37.06, 37.55, 38.0, 38.22, 38.83, 39.72), 37.03, 0.7782, 0.48, 0.15, 0.35),
    "sbp": Marginal(0.8479, (64.0, 81.0, 91.0, 95.5, 105.0, 118.5, 134.0, 150.0, 160.0, 179.0, 200.0), 121.0, 21.52, 0.56, 0.11, -0.05),
    "map": Marginal(0.8976, (37.04, 50.67, 58.0, 62.0, 68.0, 77.0, 87.33, 98.0, 105.0, 120.0, 146.0), 78.74, 14.87, 0.52, 0.11, -0.05),
    "dbp": Marginal(0.5187, (29.0, 36.0, 42.5, 46.0, 51.0, 58.5, 67.0, 76.0, 82.0, 96.0, 124.0), 59.98, 12.53, 0.59, 0.11, 0.04),
    "resp_rate": Marginal(0.9022, (6.0, 9.0, 11.0, 12.25, 15.0, 18.0, 22.0, 26.0, 28.0, 35.0, 44.0), 18.77, 5.395, 0.45, 0.22, 0.38),
    "fio2": Marginal(0.1415, (0.21, 0.3, 0.35, 0.4, 0.4, 0.5, 0.55, 0.8, 1.0, 1.0, 1.0), 0.5274, 0.1812, 0.54, -0.10, 0.07),
    "base_excess": Marginal(0.1042, (-22.0, -13.0, -7.0, -5.0, -3.0, 0.0, 1.0, 4.0, 6.0, 11.0, 18.62), -0.6499, 4.266, 0.72, 0.13, 0.14),
    "bicarbonate": Marginal(0.0805, (7.0, 13.0, 17.0, 19.0, 22.0, 24.0, 27.0, 29.0, 31.0, 36.0, 44.0), 24.1, 4.394, 0.79, -0.03, -0.10),
    "ph": Marginal(0.1147, (6.996, 7.16, 7.26, 7.3, 7.34, 7.39, 7.43, 7.46, 7.48, 7.53, 7.59), 7.38, 0.07188, 0.54, 0.13, 0.06),
    "paco2": Marginal(0.0877, (18.0, 24.0, 29.0, 32.0, 36.0, 40.0, 45.0, 51.0, 57.0, 74.0, 94.0), 41.17, 8.997, 0.60, -0.00, 0.07),
    "sao2": Marginal(0.0496, (39.0, 52.0, 62.0, 69.0, 93.0, 97.0, 98.0, 98.0, 99.0, 99.0, 100.0), 91.22, 12.23, 0.40, -0.01, -0.09),
    "ast": Marginal(0.0150, (6.819, 10.0, 15.0, 18.0, 28.0, 57.0, 180.0, 734.0, 1728.0, 6126.0, 9235.0), 356.2, 1026.0, 0.90, 0.09, 0.08),
    "bun": Marginal(0.0816, (2.0, 4.0, 7.0, 9.0, 12.0, 18.0, 29.0, 49.0, 66.0, 103.0, 146.5), 24.35, 20.15, 0.92, 0.34, 0.36),
    "alkaline_phosphatase": Marginal(0.0146, (17.0, 27.0, 37.0, 43.0, 56.0, 78.0, 119.0, 204.9, 300.0, 628.1, 1919.0), 114.2, 147.4, 0.91, -0.03, 0.14),
    "calcium": Marginal(0.0498, (5.2, 6.4, 7.1, 7.4, 7.8, 8.3, 8.8, 9.2, 9.5, 10.6, 13.3), 8.316, 0.813, 0.73, -0.03, -0.10),
    "chloride": Marginal(0.0832, (82.0, 90.0, 96.0, 99.0, 102.0, 106.0, 109.0, 113.0, 115.0, 120.0, 132.0), 105.8, 5.926, 0.80, 0.02, -0.05),
    "creatinine": Marginal(0.0664, (0.2, 0.3, 0.5, 0.5, 0.7, 0.9, 1.4, 2.7, 4.4, 8.2, 12.6), 1.402, 1.502, 0.93, 0.12, 0.25),
    "bilirubin_direct": Marginal(0.0015, (0.1, 0.1, 0.2, 0.2, 0.5, 1.4, 3.7, 7.3, 12.0, 22.5, 34.09), 3.114, 4.629, 0.92, 0.50, 0.44),
    "glucose": Marginal(0.1223, (38.0, 61.0, 79.0, 88.0, 104.0, 124.0, 150.0, 186.0, 218.0, 319.0, 620.7), 133.6, 51.58, 0.38, 0.06, 0.05),
    "lactate": Marginal(0.0343, (0.4, 0.6, 0.8, 0.9, 1.2, 1.8, 2.8, 4.5, 6.4, 12.9, 22.79), 2.468, 2.323, 0.70, 0.03, -0.06),
    "magnesium": Marginal(0.0778, (1.0, 1.2, 1.5, 1.6, 1.8, 2.0, 2.2, 2.5, 2.7, 3.2, 4.3), 2.041, 0.39, 0.53, 0.12, 0.06),
    "phosphate": Marginal(0.0505, (0.6, 1.2, 1.8, 2.1, 2.7, 3.4, 4.2, 5.3, 6.2, 8.7, 12.4), 3.589, 1.446, 0.73, 0.02, 0.07),
    "potassium": Marginal(0.1086, (2.4, 2.9, 3.3, 3.5, 3.8, 4.1, 4.5, 4.9, 5.2, 6.1, 7.8), 4.161, 0.627, 0.53, -0.14, -0.07),
    "bilirubin": Marginal(0.0123, (0.1, 0.1, 0.2, 0.3, 0.5, 0.9, 2.2, 6.4, 11.6, 29.32, 43.29), 2.694, 5.243, 0.93, 0.34, 0.28),
    "troponin_i": Marginal(0.0012, (0.3, 0.3, 0.4, 0.5, 1.0, 4.3, 12.9, 27.0, 35.98, 46.24, 49.01), 9.288, 11.41, 0.83, 0.17, -0.40),
    "hematocrit": Marginal(0.1178, (16.31, 20.7, 23.5, 25.0, 27.4, 30.2, 33.5, 37.1, 39.3, 44.0, 50.19), 30.68, 4.872, 0.67, -0.12, -0.10),
    "hemoglobin": Marginal(0.0884, (5.5, 7.0, 8.0, 8.5, 9.4, 10.4, 11.6, 12.9, 13.7, 15.2, 17.12), 10.58, 1.744, 0.69, -0.15, -0.16),
    "ptt": Marginal(0.0485, (18.7, 21.0, 23.4, 24.8, 27.7, 32.4, 42.9, 67.2, 90.88, 150.0, 150.0), 40.78, 23.96, 0.70, 0.08, 0.20),
    "wbc": Marginal(0.0751, (0.3, 2.5, 4.7, 5.9, 8.0, 10.8, 14.3, 18.7, 22.1, 32.0, 73.8), 11.94, 7.563, 0.82, 0.05, 0.16),
    "fibrinogen": Marginal(0.0076, (56.0, 78.09, 114.0, 137.9, 184.0, 250.0, 356.8, 512.0, 621.0, 839.4, 1075.0), 292.3, 158.6, 0.75, -0.09, 0.26),
    "platelets": Marginal(0.0652, (11.0, 37.0, 67.9, 87.0, 127.0, 181.0, 247.0, 328.0, 395.0, 580.0, 902.5), 199.6, 109.2, 0.90, -0.12, -0.14),
}

PANELS: dict[str, Panel] = {
    "vitals": Panel(("heart_rate", "spo2", "map", "resp_rate", "sbp", "temperature"), 1.0, 1.0, 0.9276),
    "diastolic": Panel(("dbp",), 0.628, 0.724, 0.5187),
    "ventilation": Panel(("fio2", "ph", "paco2", "base_excess", "sao2"), 0.569, 0.803, 0.2140, flag="fio2"),
    "chemistry": Panel(
        ("bun", "creatinine", "chloride", "bicarbonate", "potassium", "glucose", "magnesium", "calcium", "phosphate"),
        0.988, 0.960, 0.1522,
    ),
    "blood_count": Panel(("hematocrit", "hemoglobin", "wbc", "platelets"), 0.987, 0.939, 0.1207),
    "coagulation": Panel(("ptt", "fibrinogen"), 0.776, 0.824, 0.0502),
    "liver": Panel(("ast", "alkaline_phosphatase", "bilirubin", "bilirubin_direct"), 0.283, 0.501, 0.0158),
    "lactate": Panel(("lactate",), 0.353, 0.659, 0.0343),
    "troponin": Panel(("troponin_i",), 0.025, 0.015, 0.0012),
}

LOADINGS: dict[str, dict[str, float]] = {
    "pressure": {"sbp": 0.81, "map": 0.96, "dbp": 0.87},
    "blood_count": {"hematocrit": 0.98, "hemoglobin": 0.98},
    "renal": {"bun": 0.85, "creatinine": 0.85},
    "bilirubin": {"bilirubin": 0.97, "bilirubin_direct": 0.97},
    "acid_base": {"base_excess": 0.95, "bicarbonate": 0.90, "ph": 0.68},
}

STAYS = Stays(
    septic_share=0.0880,
    rows_non_septic=36.9,
    rows_septic=58.6,
    last_hour_non_septic=(8.5, 13.0, 17.0, 20.0, 26.0, 40.0, 47.0, 54.0, 57.0, 59.0, 59.0),
    onset_hour=(7.0, 7.0, 7.0, 8.0, 14.0, 35.5, 79.0, 139.2, 186.0, 253.2, 325.6),
    hours_after_onset={1: 0.052, 2: 0.316, 3: 0.632},
    first_hour={1: 0.631, 2: 0.167, 3: 0.083, 4: 0.049, 5: 0.028, 6: 0.018, 7: 0.010, 8: 0.005, 9: 0.003, 10: 0.002, 11: 0.001, 12: 0.003},
    hospital_before_icu_share=0.545,
    hospital_before_icu_hours=(1.03, 1.3, 2.24, 2.99, 6.69, 25.8, 94.81, 221.4, 358.4, 859.1, 2071.0),
    age=(18.44, 20.86, 30.85, 40.0, 52.29, 64.67, 75.66, 82.4, 84.95, 88.06, 88.91),
    male_share=0.582,
    icu_type_non_septic={"MICU": 0.257, "SICU": 0.283},
    icu_type_septic={"MICU": 0.322, "SICU": 0.124},
)
