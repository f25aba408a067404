"""The model against NEWS2 on real CLIF stays, with bootstrap confidence intervals, and the
patient-level split for fine-tuning on them.

Point estimates, operating points, alerts per patient-day and lead times are
``models.evaluation.cohort``'s, computed exactly as for the simulator. What real data adds is
uncertainty: a hundred patients with a few dozen deteriorations give AUROCs whose intervals
span tenths, so every headline number comes with a 95 % percentile interval from resampling
whole hospitalisations (events of one stay are correlated; resampling events would pretend
there are thousands of independent observations), and the model-minus-NEWS2 difference gets
its own paired interval (both scorers on the same resampled stays).

Splits are by person (CLIF ``patient_id``), never by hospitalisation: a patient admitted
twice would otherwise teach the model on one stay and test it on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from models.checkpoint import LoadedModel
from models.datasets.clif import ClifCohort, ClifStay, load_clif, stay_series
from models.datasets.clif_demo import ATTRIBUTION, LICENCE, MIMIC_IV_DEMO, dataset_location
from models.evaluation.cohort import CohortScores, evaluate, score_cohort
from models.evaluation.metrics import auprc, auroc
from models.datasets.series import PatientSeries
from models.datasets.splits import assign_parts
from models.training.train import scored_mask

#: Why the numbers cannot be read as a verdict, printed with every report.
CAVEAT = (
    "Read the 95 % intervals before any point estimate: with a few dozen deteriorations they "
    "span tenths and hold both 'the model beats NEWS2' and 'it does not'. Such numbers show that "
    "real data flows end to end, not how well the model performs; a site needs thousands of its "
    "own stays to judge it."
)
#: What is particular to the MIMIC-IV demo, added to CAVEAT for it.
DEMO_CAVEAT = (
    "The MIMIC-IV demo's 100 patients cannot settle whether the model beats NEWS2. Its vital "
    "signs come almost only from ICU stays "
    "(MIMIC-IV keeps ward vitals elsewhere), so ward-to-ICU transfers are predicted mostly from "
    "labs, and the shipped model was trained on simulated ward patients."
)

DEFAULT_REPLICATES = 1000
_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"auroc": auroc, "auprc": auprc}


@dataclass(frozen=True, slots=True)
class StaySplit:
    """Hospitalisations split by person into training, validation and test."""

    train: list[ClifStay]
    val: list[ClifStay]
    test: list[ClifStay]

    def persons(self, part: str) -> list[str]:
        return sorted({s.patient_id for s in getattr(self, part)})


def split_by_patient(stays: Sequence[ClifStay], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0) -> StaySplit:
    """A seeded shuffle of the persons, cut at ``fractions``; each person's stays follow them."""
    part = assign_parts((s.patient_id for s in stays), fractions, seed)
    buckets: tuple[list[ClifStay], ...] = ([], [], [])
    for stay in stays:
        buckets[part[stay.patient_id]].append(stay)
    return StaySplit(*buckets)


def series_of(stays: Sequence[ClifStay], horizon_hours: float) -> list[PatientSeries]:
    """The stays that have something observed before their clinical event, as series."""
    return [s for s in (stay_series(stay, horizon_hours) for stay in stays) if s is not None]


def training_data(
    cohort: ClifCohort, dataset: str, horizon_hours: float, seed: int
) -> tuple[list[PatientSeries], list[PatientSeries], dict[str, Any]]:
    """Training and validation series for fine-tuning, and the provenance for the manifest.

    The test persons are held out of both and listed in the provenance, so evaluating the
    fine-tuned checkpoint on this dataset scores only them (see ``held_out_persons``).
    """
    split = split_by_patient(cohort.stays, seed=seed)
    train, val = series_of(split.train, horizon_hours), series_of(split.val, horizon_hours)
    for part, series in (("training", train), ("validation", val)):
        if not any(s.labels.any() for s in series):
            raise ValueError(
                f"{dataset}: the {part} persons (split seed {seed}) have no event within {horizon_hours:g} h of a "
                f"deterioration; {len(cohort.stays)} stays of {len(split.persons('train') + split.persons('val') + split.persons('test'))} "
                "persons are too few to fine-tune on, or try another --seed"
            )
    provenance = {
        # The file or directory name only: a shared checkpoint must not reveal a site's paths.
        "provenance": f"CLIF dataset {dataset} ({Path(cohort.report.source).name})",
        "licence": f"{LICENCE}: {ATTRIBUTION}" if dataset == MIMIC_IV_DEMO else "as licensed by the site that exported it",
        "dataset": dataset,
        "split_seed": seed,
        "held_out_patients": split.persons("test"),
        "n_patients": {part: len(split.persons(part)) for part in ("train", "val", "test")},
        "n_stays": {part: len(getattr(split, part)) for part in ("train", "val", "test")},
    }
    return train, val, provenance


def dataset_training_data(
    dataset: str, clif_dir: Path | None, horizon_hours: float, seed: int
) -> tuple[list[PatientSeries], list[PatientSeries], dict[str, Any]]:
    """``training_data`` for a dataset named on the command line (``--dataset``, ``--clif-dir``)."""
    return training_data(load_clif(dataset_location(dataset, clif_dir)), dataset, horizon_hours, seed)


def held_out_persons(manifest: dict[str, Any], dataset: str) -> set[str] | None:
    """The persons a checkpoint kept out of training on ``dataset`` (fine-tuning and
    distillation parents included); None when it never trained on it. Raises ValueError when it trained on it
    without holding anyone out: no stay of that dataset would be fresh."""
    for data in training_lineage(manifest):
        if data.get("dataset") == dataset:
            if not data.get("held_out_patients"):
                raise ValueError(f"the checkpoint was trained on {dataset} without a held-out test set")
            return set(data["held_out_patients"])
    return None


def training_lineage(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The checkpoint's training data, then its parent's (the checkpoint it was fine-tuned
    from or distilled from), and so on: data any ancestor learned from is not fresh for it."""
    data = manifest.get("training", {}).get("data")
    while isinstance(data, dict):
        yield data
        data = (data.get("fine_tuned_from") or data.get("distilled_from") or {}).get("training_data")


def bootstrap_intervals(
    scores: CohortScores, *, replicates: int = DEFAULT_REPLICATES, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Percentile intervals of AUROC and AUPRC for the model, NEWS2 and their paired
    difference, resampling stays with replacement. Replicates that draw no positive (or no
    negative) event cannot be scored and are counted, not silently dropped."""
    per_stay = [
        (s.labels[m].astype(bool), risk[m], news2[m])
        for s, risk, news2 in zip(scores.series, scores.risk, scores.news2)
        if (m := scored_mask(s)).any()
    ]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {f"{who}_{name}": [] for who in ("model", "news2", "difference") for name in _METRICS}
    unscorable = 0
    for _ in range(replicates):
        chosen = [per_stay[i] for i in rng.integers(0, len(per_stay), len(per_stay))]
        labels = np.concatenate([c[0] for c in chosen])
        if labels.all() or not labels.any():
            unscorable += 1
            continue
        risk = np.concatenate([c[1] for c in chosen])
        news2 = np.concatenate([c[2] for c in chosen])
        for name, metric in _METRICS.items():
            model_value, news2_value = metric(labels, risk), metric(labels, news2)
            draws[f"model_{name}"].append(model_value)
            draws[f"news2_{name}"].append(news2_value)
            draws[f"difference_{name}"].append(model_value - news2_value)
    tail = (1.0 - level) / 2.0 * 100.0
    intervals = {
        key: [float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))] if values else None
        for key, values in draws.items()
    }
    return {"replicates": replicates, "unscorable_replicates": unscorable, "seed": seed, "level": level, "unit": "hospitalisation", "intervals": intervals}


@dataclass(frozen=True, slots=True)
class ClifEvaluation:
    """The JSON-ready report and the per-event scores it was computed from (for plots)."""

    report: dict[str, Any]
    scores: CohortScores


def evaluate_clif(
    loaded: LoadedModel,
    cohort: ClifCohort,
    dataset: str,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> ClifEvaluation:
    """The evaluation of a CLIF dataset: models.evaluation.cohort's report, the bootstrap
    intervals merged beside each point estimate, the cohort, the caveat and the conversion
    report. A checkpoint fine-tuned on ``dataset`` is scored on its held-out persons only."""
    horizon = float(loaded.manifest["horizon_hours"])
    held_out = held_out_persons(loaded.manifest, dataset)
    stays = [s for s in cohort.stays if held_out is None or s.patient_id in held_out]
    series = series_of(stays, horizon)
    if not any(s.labels.any() for s in series):
        raise ValueError(f"{dataset}: no stay has an event within {horizon:g} h of a deterioration; nothing to evaluate")
    scores = score_cohort(loaded, series)
    report = evaluate(scores, loaded.manifest["alert_thresholds"])
    boot = bootstrap_intervals(scores, replicates=replicates, seed=seed)
    for who in ("model", "news2"):
        for name in _METRICS:
            report[who][f"{name}_ci95"] = boot["intervals"][f"{who}_{name}"]
    report["difference"] = {
        name: report["model"][name] - report["news2"][name] for name in _METRICS
    } | {f"{name}_ci95": boot["intervals"][f"difference_{name}"] for name in _METRICS}
    report["cohort"] |= _cohort_counts(stays, dataset, held_out is not None) | {"hospitalisations_scored": len(series)}
    return ClifEvaluation(
        {
            "checkpoint": {"version": loaded.manifest["version"], "weights_sha256": loaded.manifest.get("weights_sha256")},
            **report,
            "bootstrap": {k: v for k, v in boot.items() if k != "intervals"},
            "caveat": CAVEAT + (" " + DEMO_CAVEAT if dataset == MIMIC_IV_DEMO else ""),
            "conversion": cohort.report.to_dict(),
        },
        scores,
    )


def _cohort_counts(stays: Sequence[ClifStay], dataset: str, held_out_only: bool) -> dict[str, Any]:
    """Who was evaluated: persons, stays, how many had vital signs, and their outcomes."""
    return {
        "dataset": dataset,
        "persons": len({s.patient_id for s in stays}),
        "hospitalisations": len(stays),
        "with_vital_signs": sum(any(e.topic == "vitals" for e in s.events) for s in stays),
        "deaths": sum(s.event_kind == "death" for s in stays),
        "ward_to_icu_transfers": sum(s.event_kind == "icu_transfer" for s in stays),
        "held_out_only": held_out_only,
    }


def evaluate_dataset(
    loaded: LoadedModel, dataset: str, clif_dir: Path | None = None, *, replicates: int = DEFAULT_REPLICATES, seed: int = 0
) -> ClifEvaluation:
    """``evaluate_clif`` for a dataset named on the command line (``--dataset``, ``--clif-dir``)."""
    return evaluate_clif(loaded, load_clif(dataset_location(dataset, clif_dir)), dataset, replicates=replicates, seed=seed)


def report_lines(report: dict[str, Any]) -> list[str]:
    """Model vs NEWS2 with intervals, alert behaviour and the caveat, as plain lines."""
    c = report["cohort"]
    boot = report["bootstrap"]

    def ci(block: dict[str, Any], name: str) -> str:
        value, interval = block[name], block.get(f"{name}_ci95")
        return f"{value:.3f}" + (f" (95% CI {interval[0]:.3f} to {interval[1]:.3f})" if interval else "")

    def opt(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    lines = [
        f"{report['checkpoint']['version']} vs NEWS2 on {c['dataset']}: {c['hospitalisations_scored']} of "
        f"{c['hospitalisations']} hospitalisations ({c['persons']} persons{', held-out test persons only' if c['held_out_only'] else ''}; "
        f"{c['with_vital_signs']} with vital signs), {c['deaths']} in-hospital deaths, {c['ward_to_icu_transfers']} ward-to-ICU transfers; "
        f"{c['events']} events, {c['positive_events']} within {c['horizon_hours']:g} h of the event",
        f"  AUROC  model {ci(report['model'], 'auroc')}   NEWS2 {ci(report['news2'], 'auroc')}   model - NEWS2 {ci(report['difference'], 'auroc')}",
        f"  AUPRC  model {ci(report['model'], 'auprc')}   NEWS2 {ci(report['news2'], 'auprc')}   model - NEWS2 {ci(report['difference'], 'auprc')}",
        f"  (bootstrap: {boot['replicates']} resamples of hospitalisations, {boot['unscorable_replicates']} without both classes skipped)",
    ]
    for key, title in (("model", f"model >= {report['model']['threshold']:.3g}"), ("news2_5", "NEWS2 >= 5"), ("news2_7", "NEWS2 >= 7")):
        b = report[key]
        lines.append(
            f"  {title:<16} sensitivity {b['sensitivity']:.3f}  specificity {b['specificity']:.3f}  "
            f"alerts/patient-day {opt(b['alerts_per_patient_day'], '.2f')}  median lead time {opt(b['median_lead_time_h'], '.1f')} h  "
            f"deteriorations alerted {opt(b['detected_fraction'], '.2f')}"
        )
    lines.append(f"  caveat: {report['caveat']}")
    return lines
