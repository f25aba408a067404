"""The sepsis evaluation's targets, its caveat, and its report as rows of text for a table.

The figures come from ``models.evaluation.sepsis`` (definitions there); this module says what
they are held to (the targets of the issue that trained the model on set A, each met or not on
its point estimate, the interval beside it) and lays them out: one column per operating point,
one row per measure, every figure with its 95 % interval. The command line renders the rows
(``vitalwatch evaluate --dataset physionet2019``); nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

#: Why the figures are not a verdict on the model at another hospital, printed with every report.
CAVEAT = (
    "One hospital system, ICU stays only, a retrospective label (the challenge's Sepsis-3 onset computed from "
    "charted data, not a bedside diagnosis), and PhysioNet 2019 training set A alone: the other hospital's stays "
    "are kept by the project's reviewers for external validation and never read here. These figures say how the "
    "model does on patients of this one hospital, not at a new site; the ICU-type split (--transfer) is the "
    "nearest imitation of a new site this data allows."
)

#: Operating points in column order, and the measures shown per row: (key, label, digits, from).
COLUMNS: tuple[str, ...] = ("model_medium", "model_high", "trees_medium", "trees_high", "news2_5", "news2_7", "qsofa_2", "sirs_2")
MEASURES: tuple[tuple[str, str, int, str], ...] = (
    ("auroc", "AUROC per hour", 3, "scorer"),
    ("auprc", "AUPRC per hour", 3, "scorer"),
    ("ece", "calibration error (ECE, 10 bins)", 3, "scorer"),
    ("thresholds", "threshold / cut-off", 3, "point"),
    ("utility", "normalized utility (challenge)", 3, "point"),
    ("alerts_per_patient_day", "alerts per patient-day", 2, "point"),
    ("false_per_true", "false alerts per true alert", 2, "point"),
    ("alerted_share", "septic stays alerted 12 h before to 3 h after onset", 3, "point"),
    ("median_lead_alerted_h", "median lead time, alerted septic stays (h)", 1, "point"),
    ("median_lead_h", "median lead time, all septic stays, unalerted = 0 (h)", 1, "point"),
)


@dataclass(frozen=True, slots=True)
class Target:
    """A bar the report is held to: the figure at ``path`` in the report, at least or at most ``bound``."""

    text: str
    path: tuple[str, ...]
    bound: float
    at_least: bool = True

    def judge(self, report: dict[str, Any]) -> dict[str, Any]:
        """{"target", "value", "ci95", "met"} (met None when the figure could not be computed)."""
        block = report
        for key in self.path[:-1]:
            block = block[key]
        value = block.get(self.path[-1])
        met = None if value is None else (value >= self.bound if self.at_least else value <= self.bound)
        return {"target": self.text, "value": value, "ci95": block.get(f"{self.path[-1]}_ci95"), "met": met}


TARGETS: tuple[Target, ...] = (
    Target("model AUROC >= 0.85 per hour", ("scorers", "model", "auroc"), 0.85),
    Target("model AUROC >= NEWS2 + 0.10", ("differences", "model - news2", "auroc"), 0.10),
    Target("model AUROC >= trees", ("differences", "model - trees", "auroc"), 0.0),
    Target("normalized utility >= 0.40 (model, medium threshold)", ("operating_points", "model_medium", "utility"), 0.40),
    Target("ECE <= 0.05", ("scorers", "model", "ece"), 0.05, at_least=False),
    Target("high threshold: <= 2 false alerts per true one", ("operating_points", "model_high", "false_per_true"), 2.0, at_least=False),
    Target(
        "high threshold: median sepsis patient alerted >= 4 h before onset (unalerted = 0)",
        ("operating_points", "model_high", "median_lead_h"), 4.0,
    ),
)


def transfer_targets(direction: str) -> tuple[Target, ...]:
    """The ICU-type split's bars for one direction ("MICU -> SICU")."""
    base = ("transfer", "directions", direction, "differences")
    return (
        Target(f"ICU-type split {direction}: model AUROC >= NEWS2 + 0.05", (*base, "model - news2", "auroc"), 0.05),
        Target(f"ICU-type split {direction}: model AUROC >= trees", (*base, "model - trees", "auroc"), 0.0),
    )


def judged_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target that applies to ``report`` (the transfer ones when it was run), judged."""
    targets = list(TARGETS)
    for direction in report.get("transfer", {}).get("directions", {}):
        targets += transfer_targets(direction)
    return [t.judge(report) for t in targets]


def figure(value: Any, ci: Sequence[float] | None = None, digits: int = 3) -> str:
    """``0.812 (0.790 to 0.833)``; an absent figure is a dash."""
    if value is None:
        return "—"
    if isinstance(value, list):
        return " / ".join(f"{v:.{digits}g}" for v in value)
    text = f"{value:.{digits}f}"
    return text + (f" ({ci[0]:.{digits}f} to {ci[1]:.{digits}f})" if ci else "")


def measure_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column titles and, per measure, its label and one cell per operating point."""
    points = report["operating_points"]
    titles = [points[c]["label"] for c in COLUMNS]
    rows = []
    for key, label, digits, source in MEASURES:
        cells = []
        for column in COLUMNS:
            block = report["scorers"][points[column]["scorer"]] if source == "scorer" else points[column]
            cells.append(figure(block.get(key), block.get(f"{key}_ci95"), digits))
        if any(c != "—" for c in cells):
            rows.append([label, *cells])
    return titles, rows


def difference_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per paired difference: what, the figure, the difference with its interval."""
    labels = {name: block["label"] for name, block in report["operating_points"].items()}
    names = {"model": "model", "trees": "trees", "news2": "NEWS2", "qsofa": "qSOFA", "sirs": "SIRS"}
    rows = []
    for pair, block in report["differences"].items():
        a, b = pair.split(" - ")
        for metric in [k for k in block if not k.endswith("_ci95")]:
            rows.append([f"{names.get(a, labels.get(a, a))} - {names.get(b, labels.get(b, b))}", metric, figure(block[metric], block[f"{metric}_ci95"])])
    return rows


def target_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per target: the target, the figure with its interval, met / not met."""
    verdict = {True: "met", False: "NOT met", None: "not computable"}
    return [[t["target"], figure(t["value"], t["ci95"]), verdict[t["met"]]] for t in report["targets"]]


def transfer_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per ICU-type direction and figure (AUROC, AUPRC, utility): model, trees, NEWS2, qSOFA, SIRS."""
    rows = []
    for direction, block in report.get("transfer", {}).get("directions", {}).items():
        for metric in ("auroc", "auprc"):
            rows.append([direction, metric] + [figure(block["scorers"][s][metric], block["scorers"][s][f"{metric}_ci95"]) for s in ("model", "trees", "news2", "qsofa", "sirs")])
        points = block["operating_points"]
        rows.append([direction, "utility"] + [figure(points[p]["utility"], points[p]["utility_ci95"]) for p in ("model_medium", "trees_medium", "news2_5", "qsofa_2", "sirs_2")])
    return rows


def cohort_line(report: dict[str, Any]) -> str:
    """Who was judged, in one line."""
    c = report["cohort"]
    prevalence = "—" if c["prevalence"] is None else f"{100 * c['prevalence']:.2f} %"
    return (
        f"{report['checkpoint']['version']} on {report['dataset']['name']} ({report['split']['judged']}): {c['stays']} stays "
        f"({c['stays_with_events']} with events), {c['hours']} hours, {c['patient_days']:.0f} patient-days, {c['septic_stays']} septic stays; "
        f"{c['ranked_hours']} ranked hours, {c['positive_hours']} positive (SepsisLabel), prevalence {prevalence}"
    )
