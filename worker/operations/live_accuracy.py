"""Live accuracy: a batch's labelled scores into the Prometheus counters PromQL turns into AUROC,
PPV, sensitivity, lead time, alert burden and calibration.

AUROC is the probability that a positive outranks a negative (ties half). Counting negatives
per risk bin and, per bin, the positives ranked above it (those in higher bins plus half of
those in it), the sum over bins of their product is the number of correctly ranked pairs:
``sum(negatives * on(bin) positives_ranked) / (negatives * positives)``, which PromQL computes
from counters over any range (docs/operations.md). The only error is within a bin, where two
scores count as a tie: with ``RISK_BINS`` logit-spaced bins it stays below 0.005 on realistic
low-prevalence samples (tests/test_live_accuracy.py). NEWS2 totals (0-20) are their own bins.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
from prometheus_client import Counter as PromCounter

from schemas.outputs import NEWS2_MAX
from worker.operations.metrics import Metrics
from worker.scoring.labelling import LabelledScore, Labelling

#: Logit-spaced risk bins: RISK_BINS bins between logit -8 (risk 3.4e-4) and +4 (0.982), the
#: ends open, 0.05 logit each. The shipped model's risks lie around 0.003-0.3, where one
#: patient's successive scores often differ by less than 0.1 logit: coarser bins tie them.
RISK_BINS = 240
_LOGIT_LOW, _LOGIT_HIGH = -8.0, 4.0
#: Upper edges of the calibration bands (predicted vs observed), spread where risks lie.
CALIBRATION_EDGES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.4, 1.0)
_BIN_NAMES = [f"{b:03d}" for b in range(RISK_BINS)]
_BAND_NAMES = [f"{edge:g}" for edge in CALIBRATION_EDGES]
_NEWS2_NAMES = [str(n) for n in range(NEWS2_MAX + 1)]


def risk_bins(risk: Sequence[float] | np.ndarray) -> np.ndarray:
    """The bin index (0 .. RISK_BINS-1) of each risk."""
    p = np.clip(np.asarray(risk, dtype=np.float64), 1e-12, 1 - 1e-12)
    logit = np.log(p) - np.log1p(-p)
    scaled = (logit - _LOGIT_LOW) / (_LOGIT_HIGH - _LOGIT_LOW) * RISK_BINS
    return np.clip(np.floor(scaled), 0, RISK_BINS - 1).astype(np.int64)


def ranked_above(positives: np.ndarray) -> np.ndarray:
    """Per bin, the positives in higher bins plus half of those in it (``positives``: per bin)."""
    above = np.cumsum(positives[::-1])[::-1] - positives
    return above + 0.5 * positives


def auroc_from_bins(negatives: np.ndarray, positives_ranked: np.ndarray, n_negative: float, n_positive: float) -> float:
    """What the PromQL computes: correctly ranked pairs over all pairs (NaN without both)."""
    if n_negative <= 0 or n_positive <= 0:
        return math.nan
    return float(np.dot(negatives, positives_ranked) / (n_negative * n_positive))


def account(metrics: Metrics, labelling: Labelling, *, model_version: str, role: str) -> None:
    """Count one safe batch's labelled scores (once the batch is acknowledged and persisted):
    each under the version that made it; the outcomes and the hours covered under the engine's."""
    child = metrics.child
    if labelling.patient_s > 0:
        child(metrics.patient_hours, model_version, role).inc(labelling.patient_s / 3600.0)
    if labelling.dropped:
        child(metrics.unlabelled_scores, model_version, role).inc(labelling.dropped)
    by_version: dict[str, list[LabelledScore]] = {}
    for scored in labelling.scores:
        by_version.setdefault(scored.score.model_version, []).append(scored)
    for version, scores in by_version.items():
        _account_version(metrics, scores, version, role)
    for seen in labelling.outcomes:
        child(metrics.outcomes_seen, model_version, role, seen.kind, str(seen.alerted).lower()).inc()
        if not math.isnan(seen.lead_s):
            child(metrics.alert_lead_hours, model_version, role).observe(seen.lead_s / 3600.0)


def _account_version(metrics: Metrics, scores: list[LabelledScore], version: str, role: str) -> None:
    risk = np.array([s.score.risk for s in scores])
    news2 = np.array([s.score.news2 for s in scores], dtype=np.int64)
    label = np.array([s.label for s in scores], dtype=bool)
    alerted = np.array([s.score.alerted for s in scores], dtype=bool)
    child = metrics.child
    for name, count in (("positive", int(label.sum())), ("negative", int((~label).sum()))):
        if count:
            child(metrics.labelled_scores, version, role, name).inc(count)
        alerts = int((alerted & (label if name == "positive" else ~label)).sum())
        if alerts:
            child(metrics.labelled_alerts, version, role, name).inc(alerts)
    ranked = (version, role)
    _ranking(metrics, metrics.labelled_negatives, metrics.labelled_positives_ranked, ranked, _BIN_NAMES, risk_bins(risk), label)
    _ranking(
        metrics, metrics.news2_negatives, metrics.news2_positives_ranked, ranked, _NEWS2_NAMES,
        np.clip(news2, 0, NEWS2_MAX), label,
    )
    band = np.minimum(np.searchsorted(CALIBRATION_EDGES, risk), len(CALIBRATION_EDGES) - 1)
    for b, count in Counter(band.tolist()).items():
        in_band = band == b
        name = _BAND_NAMES[b]
        child(metrics.calibration_scores, version, role, name).inc(count)
        child(metrics.calibration_predicted, version, role, name).inc(float(risk[in_band].sum()))
        child(metrics.calibration_observed, version, role, name).inc(int(label[in_band].sum()))


def _ranking(
    metrics: Metrics, negatives: PromCounter, positives_ranked: PromCounter, tags: tuple[str, str], names: list[str],
    bins: np.ndarray, label: np.ndarray,
) -> None:
    """Negatives per bin, and per bin the positives ranked above it (one inc per bin touched);
    ``tags``: (model version, role), the labels before the bin's."""
    for b, count in Counter(bins[~label].tolist()).items():
        metrics.child(negatives, *tags, names[b]).inc(count)
    if label.any():
        ranked = ranked_above(np.bincount(bins[label], minlength=len(names)).astype(np.float64))
        for b in np.flatnonzero(ranked).tolist():
            metrics.child(positives_ranked, *tags, names[b]).inc(float(ranked[b]))
