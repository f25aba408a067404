"""ROC, precision-recall and calibration curves as PNG files: the model against NEWS2.

The same event-level labels and scores as the evaluation report, drawn so a clinical reader
sees at a glance where the model stands against the score they already use: NEWS2 as a curve
over all its thresholds, with its RCP triggers (>= 5, >= 7) and the model's alert threshold
marked as points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from models.evaluation.metrics import Curve, calibration_bins, operating_point, pr_curve, roc_curve  # noqa: E402

_NEWS2_TRIGGERS = (5, 7)


def write_plots(
    directory: Path | str, labels: np.ndarray, risk: np.ndarray, news2: np.ndarray, thresholds: Mapping[str, float]
) -> list[Path]:
    """Write roc.png, pr.png and calibration.png into ``directory``; return their paths.

    ``thresholds`` are the model's alert thresholds by level ({"medium": p, "high": p})."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels).astype(bool)
    points = {
        **{f"model {level} (risk >= {t:.3f})": risk >= t for level, t in thresholds.items()},
        **{f"NEWS2 >= {t}": news2 >= t for t in _NEWS2_TRIGGERS},
    }
    paths = [
        _curves(directory / "roc.png", "ROC", "false-positive rate", "sensitivity", roc_curve(labels, risk), roc_curve(labels, news2),
                {name: _roc_point(labels, flagged) for name, flagged in points.items()}, diagonal=True),
        _curves(directory / "pr.png", "Precision-recall", "recall (sensitivity)", "precision", pr_curve(labels, risk), pr_curve(labels, news2),
                {name: _pr_point(labels, flagged) for name, flagged in points.items()}, baseline=float(labels.mean())),
        _calibration(directory / "calibration.png", labels, risk),
    ]
    return paths


def _roc_point(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    point = operating_point(labels, flagged)
    return 1.0 - point.specificity, point.sensitivity


def _pr_point(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    point = operating_point(labels, flagged)
    return point.sensitivity, point.precision


def _curves(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    model: Curve,
    news2: Curve,
    points: dict[str, tuple[float, float]],
    *,
    diagonal: bool = False,
    baseline: float | None = None,
) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(model.x, model.y, label="LSTM risk model", color="tab:blue", lw=2)
    ax.plot(news2.x, news2.y, label="NEWS2 (all thresholds)", color="tab:orange", lw=2)
    for name, (x, y) in points.items():
        model_point = name.startswith("model")
        marker = ("o" if "medium" in name else "D") if model_point else ("s" if name.endswith("5") else "^")
        ax.scatter([x], [y], marker=marker, s=50, zorder=3, label=name, color="black" if model_point else "tab:red")
    if diagonal:
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    if baseline is not None:
        ax.axhline(baseline, ls=":", color="grey", lw=1, label=f"prevalence {baseline:.3f}")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if diagonal else "upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _calibration(path: Path, labels: np.ndarray, risk: np.ndarray, bins: int = 10) -> Path:
    predicted, observed, count = calibration_bins(labels, risk, bins)
    used = count > 0
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    ax.plot(predicted[used], observed[used], marker="o", color="tab:blue", label="LSTM risk model")
    ax.set(title="Calibration (10 equal-width bins)", ylabel="observed deterioration rate", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.hist(risk, bins=np.linspace(0, 1, 41), color="tab:blue", alpha=0.7)
    hist.set(xlabel="predicted risk", ylabel="events", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
