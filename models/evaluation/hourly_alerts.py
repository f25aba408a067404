"""Alerts on the hour grid: how many a scorer raises, which are true, and how early.

An alert is the start of a run of alerting hours: a run starts when the score reaches the
threshold and ends when it falls below the clearing level (the worker's hysteresis for the
model, ``models.evaluation.cohort.alert_state``; the cut-off itself for the integer scores).
An hour without a prediction (before the stay's first event) is not alerting. A **true**
alert is one raised in a septic stay within ``[t_sepsis - 12 h, t_sepsis + 3 h]`` (the
challenge's window of useful predictions); every other alert is false. The **lead time** of a
septic stay is ``t_sepsis`` minus the hour of its first true alert.

Per stay so that a bootstrap can resample stays (``StayAlerts``); cohort figures are sums and
medians over them (``models.evaluation.sepsis``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.evaluation.cohort import alert_state
from models.evaluation.hour_grid import StayHours
from models.evaluation.utility import DT_EARLY, DT_LATE


@dataclass(frozen=True, slots=True)
class StayAlerts:
    """One stay's alerting hours (bool [H]), its alert count, true alerts and lead time (h, NaN
    when no true alert)."""

    alerting: np.ndarray
    alerts: int
    true_alerts: int
    lead_h: float


def stay_alerts(stay: StayHours, scores: np.ndarray, threshold: float, clear_below: float) -> StayAlerts:
    """Alert runs of ``scores`` (per hour, NaN = no prediction) at ``threshold``, cleared under ``clear_below``."""
    known = np.where(np.isnan(scores), -np.inf, scores)
    alerting = alert_state(known, threshold, clear_below)
    raised = alerting & ~np.r_[False, alerting[:-1]]
    onset = stay.onset_hour
    if onset is None:
        return StayAlerts(alerting, int(raised.sum()), 0, float("nan"))
    true = raised & (stay.hours >= onset + DT_EARLY) & (stay.hours <= onset + DT_LATE)
    lead = float(onset - stay.hours[np.argmax(true)]) if true.any() else float("nan")
    return StayAlerts(alerting, int(raised.sum()), int(true.sum()), lead)
