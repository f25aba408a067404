"""The labelled-scores report as ``validate`` and ``evaluate --scored`` deliver it: per model, a
line on who was judged, then rich tables of ranking, operating points and calibration by risk
decile, every figure with its 95 % interval over resampled patients; the JSON document and
the plots beside."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from models.evaluation.paired import FIGURES
from models.evaluation.sepsis_report import figure
from schemas.scored_outcome import ScoredOutcomeV1
from worker.tools.console import console
from worker.tools.sepsis_tables import figure_table

_RANKING = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("ece", "calibration error (ECE, 10 bins)"))
_POINT_MEASURES = (
    ("sensitivity", "sensitivity (of positive scores)", 3),
    ("specificity", "specificity", 3),
    ("precision", "precision (PPV)", 3),
    ("alerts_per_patient_day", "alerts per patient-day", 2),
    ("detected_fraction", "patients with an outcome alerted within the horizon", 3),
    ("median_lead_time_h", "median lead time of first alert (h)", 1),
)


def _when(seconds: float | None) -> str:
    return "—" if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="minutes")


def cohort_line(entry: dict[str, Any]) -> str:
    """Who was judged, in one line."""
    c = entry["report"]["cohort"]
    return (
        f"{entry['model_version']} ({entry['role']}): {c['scores']} labelled scores of {c['patients']} patients "
        f"({c['patients_with_outcome']} with an outcome), {c['positive_scores']} positive within {c['horizon_hours']:g} h, "
        f"{c['patient_days']:.1f} patient-days, observed {_when(c['observed_from'])} to {_when(c['observed_until'])}"
    )


def paired_rows(report: dict[str, Any], first: str, second: str, figures: Sequence[tuple[str, str]] = _RANKING) -> list[list[str]]:
    """Per ranking figure: scorer ``first``, scorer ``second`` and their paired difference
    (``first - second``), each with its interval."""
    scorers, difference = report["scorers"], report["differences"][f"{first} - {second}"]
    return [
        [label]
        + [figure(scorers[s].get(key), scorers[s].get(f"{key}_ci95")) for s in (first, second)]
        + [figure(difference.get(key), difference.get(f"{key}_ci95"))]
        for key, label in figures
    ]


def ranking_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per ranking figure: model, NEWS2 and the paired difference, each with its interval."""
    return paired_rows(report, "model", "news2")


def point_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column titles (the operating points) and one row per measure."""
    points = report["operating_points"]
    rows = [
        [label, *(figure(block.get(key), block.get(f"{key}_ci95"), digits) for block in points.values())]
        for key, label, digits in _POINT_MEASURES
    ]
    return [block["label"] for block in points.values()], rows


def calibration_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [f"{b['risk_from']:.4f} to {b['risk_to']:.4f}", f"{b['predicted']:.4f}", f"{b['observed']:.4f}", str(b["count"])]
        for b in report["calibration"]["deciles"]
    ]


def print_labelled_reports(entries: list[dict[str, Any]]) -> None:
    """Every model's report, or the reason it has none."""
    out = console()
    for entry in entries:
        if "report" not in entry:
            out.print(f"{entry['model_version']} ({entry['role']}): {entry['records']} labelled scores, no report: {entry['error']}")
            continue
        report, boot = entry["report"], entry["report"]["bootstrap"]
        out.print(cohort_line(entry))
        resamples = f"95 % intervals, {boot['replicates']} resamples of patients, seed {boot['seed']}"
        out.print(figure_table(f"Ranking ({resamples})", ["figure", "model", "NEWS2", "model - NEWS2 (paired)"], ranking_rows(report)))
        titles, rows = point_rows(report)
        out.print(figure_table("Operating points: the alert levels published, NEWS2 triggers", ["measure", *titles], rows))
        out.print(figure_table("Calibration by risk decile", ["risk", "mean predicted", "observed rate", "scores"], calibration_rows(report)))


def print_comparisons(entries: list[dict[str, Any]]) -> None:
    """Each shadow against the live model on the events both scored, or the reason there is no comparison."""
    out = console()
    for entry in entries:
        who = f"shadow {entry['shadow']} against live {entry['live']}"
        counts = (
            f"{entry['paired_events']} events scored by both ({entry['live_only']} by the live model alone, "
            f"{entry['shadow_only']} by the shadow alone), judged by the live labels ({entry['horizon_h']['live']:g} h; "
            f"the shadow's {entry['horizon_h']['shadow']:g} h labels disagree on {entry['label_disagreements']})"
        )
        if "report" not in entry:
            out.print(f"{who}: {counts}; no comparison: {entry['error']}")
            continue
        boot = entry["report"]["bootstrap"]
        out.print(f"{who}: {counts}")
        out.print(figure_table(
            f"Shadow against live on the same events (95 % intervals, {boot['replicates']} resamples of patients, seed {boot['seed']})",
            ["figure", "shadow", "live", "shadow - live (paired)"],
            paired_rows(entry["report"], "shadow", "live", [r for r in _RANKING if r[0] in FIGURES]),
        ))


def deliver(document: dict[str, Any], records: list[ScoredOutcomeV1], *, json_path: Path | None, plots: Path | None) -> None:
    """Print the document's reports, write it as JSON and each judged model's ROC, PR and
    calibration plots (into ``plots``/<version>-<role>/): what validate and evaluate --scored
    both do with the same document."""
    print_labelled_reports(document["models"])
    print_comparisons(document["comparisons"])
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    if plots:
        from models.evaluation.labelled_report import LabelledScores
        from models.evaluation.plots import write_plots

        for entry in (e for e in document["models"] if "report" in e):
            chosen = [r for r in records if (r.model_version, r.role) == (entry["model_version"], entry["role"])]
            scores = LabelledScores.from_records(chosen)
            for path in write_plots(plots / f"{entry['model_version']}-{entry['role']}", scores.label, scores.risk, scores.news2, {}):
                print(f"wrote {path}")
