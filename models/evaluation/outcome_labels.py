"""The labelling rule: which scores an outcome makes positives, and when a score is a negative.

One definition, used by the worker as outcomes arrive (worker.scoring.labelling) and by the
offline evaluation of the same events, so a site's live figures and an offline run over its
stream cannot disagree on what counts as a hit. For one stay, a score observed at t is

* POSITIVE when an outcome o has t <= o <= t + horizon (the first such outcome is named);
* EXCLUDED (never labelled) when observed after the stay's first outcome: the event it was to
  predict has happened, and scoring the aftermath would flatter the model;
* otherwise NEGATIVE, resolved "discharged_alive" when the patient left alive before
  t + horizon, else "horizon_passed".

Because scores after the first outcome are excluded, only the stay's first outcome can make a
score positive. The live worker does not know the future, so ``resolve`` also takes a clock
(the patient's latest event time) and the longest outcome delay: a score stays PENDING until
an outcome makes it positive, the patient is discharged alive, or the clock passes
t + horizon + delay. With outcomes reported within that delay the live labels equal the
offline ones (``clock`` = +inf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from schemas.scored_outcome import OUTCOME_KINDS, Resolution

POSITIVE, NEGATIVE, EXCLUDED, PENDING = 1, 0, -1, -2
#: Codes of ``Labels.resolution`` (index here; -1 for scores not labelled).
RESOLUTIONS: tuple[Resolution, ...] = ("outcome", "horizon_passed", "discharged_alive")


@dataclass(frozen=True, slots=True)
class Labels:
    """Per score: its label (POSITIVE, NEGATIVE, EXCLUDED or PENDING), the resolution code
    (index in RESOLUTIONS, -1 unless labelled), and for positives the outcome (index in
    OUTCOME_KINDS, else -1) and its time (POSIX s, else NaN)."""

    label: np.ndarray  # [n] int8
    resolution: np.ndarray  # [n] int8
    outcome_kind: np.ndarray  # [n] int8
    outcome_ts: np.ndarray  # [n] float64


def resolve(
    score_ts: np.ndarray,
    first_outcome_ts: np.ndarray,
    first_outcome_kind: np.ndarray,
    discharged_alive_ts: np.ndarray,
    horizon_s: float,
    *,
    clock_ts: np.ndarray | float = math.inf,
    delay_s: float = 0.0,
) -> Labels:
    """The rule over any number of scores at once, each with its stay's facts broadcast beside
    it: the stay's first outcome (time, NaN none; kind index, -1 none), its alive discharge
    (NaN none), and what is known so far (``clock_ts``, ``delay_s``; the defaults: everything)."""
    score_ts = np.asarray(score_ts, dtype=np.float64)
    first = np.asarray(first_outcome_ts, dtype=np.float64)
    left = np.asarray(discharged_alive_ts, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        excluded = score_ts > first
        positive = ~excluded & (first - score_ts <= horizon_s)
        settled = (np.asarray(clock_ts) > score_ts + horizon_s + delay_s) | ~np.isnan(left)
        negative = ~excluded & ~positive & settled
        early_exit = left < score_ts + horizon_s
    label = np.full(score_ts.shape, PENDING, dtype=np.int8)
    label[excluded] = EXCLUDED
    label[positive] = POSITIVE
    label[negative] = NEGATIVE
    resolution = np.full(score_ts.shape, -1, dtype=np.int8)
    resolution[positive] = RESOLUTIONS.index("outcome")
    resolution[negative] = np.where(early_exit, RESOLUTIONS.index("discharged_alive"), RESOLUTIONS.index("horizon_passed"))[negative]
    kind = np.where(positive, np.asarray(first_outcome_kind, dtype=np.int8), -1).astype(np.int8)
    return Labels(label, resolution, kind, np.where(positive, first, math.nan))


def label_scores(
    score_times: Sequence[float] | np.ndarray,
    outcome_times: Sequence[float] | np.ndarray,
    outcome_kinds: Sequence[str],
    horizon_h: float,
    discharged_alive_at: float | None = None,
) -> Labels:
    """Offline: the labels of one stay's scores (POSIX s) once its course is known: its outcomes
    (times, kinds from OUTCOME_KINDS, any order) and, if the patient left alive, when."""
    scores = np.asarray(score_times, dtype=np.float64)
    times = np.asarray(outcome_times, dtype=np.float64)
    first_ts, first_kind = math.nan, -1
    if len(times):
        first = int(np.argmin(times))
        first_ts, first_kind = float(times[first]), OUTCOME_KINDS.index(outcome_kinds[first])  # type: ignore[arg-type]
    left = math.nan if discharged_alive_at is None else discharged_alive_at
    n = len(scores)
    return resolve(scores, np.full(n, first_ts), np.full(n, first_kind), np.full(n, left), horizon_h * 3600.0)
