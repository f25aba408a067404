"""Prometheus metrics of the worker.

The metrics live in their own CollectorRegistry (not prometheus_client's global one) so a test
can build several pipelines in one process and read each one's numbers. Labels are bounded
sets — topic, partition, outcome, level, stage, unit kind, disposition, model version and
role, risk bin — never a patient or event id: an unbounded label would grow Prometheus' memory with every admission.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Micro-batch sizes are powers of two up to the largest MAX_BATCH worth batching.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
#: Inference and Redis round trips: sub-millisecond on a GPU, tens of ms on a loaded CPU.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Kafka timestamp -> outputs acknowledged: includes producer clocks, batching and any backlog.
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Alert lead time before an outcome, hours: the shipped horizon is 6 h.
LEAD_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 24.0)


class Metrics:
    """Every metric the worker exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry
        self.events = Counter(
            "vitalwatch_events",
            "Input events by topic and outcome: scored (an observation), applied (an encounter, folded into the "
            "patient's context), invalid, duplicate.",
            ["topic", "outcome"], registry=r,
        )
        self.admissions = Counter(
            "vitalwatch_admissions", "Admissions applied, by unit kind admitted to (ward, step_down, icu, unknown).",
            ["unit"], registry=r,
        )
        self.transfers = Counter(
            "vitalwatch_transfers", "Transfers applied, by destination unit kind (ward, step_down, icu).",
            ["unit"], registry=r,
        )
        self.discharges = Counter(
            "vitalwatch_discharges",
            "Discharges applied, by disposition (home, other_facility, died, unknown: not stated); "
            "died counts deaths.",
            ["disposition"], registry=r,
        )
        self.batch_size = Histogram(
            "vitalwatch_batch_size", "Kafka messages per micro-batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "vitalwatch_inference_seconds", "RiskEngine.score per micro-batch (state restore included).",
            buckets=FAST_BUCKETS, registry=r,
        )
        self.shadow_inference_seconds = Histogram(
            "vitalwatch_shadow_inference_seconds",
            "The shadow model's RiskEngine.score per micro-batch (VITALWATCH_SHADOW_CHECKPOINT; state restore included).",
            buckets=FAST_BUCKETS, registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "vitalwatch_end_to_end_seconds", "Kafka record timestamp to outputs acknowledged by the broker.",
            buckets=E2E_BUCKETS, registry=r,
        )
        self.redis_seconds = Histogram(
            "vitalwatch_redis_seconds", "Redis write-behind of a micro-batch's state.",
            ["operation"], buckets=FAST_BUCKETS, registry=r,
        )
        self.redis_errors = Counter(
            "vitalwatch_redis_errors", "Failed Redis operations (each one retried).", ["operation"], registry=r
        )
        self.publish_seconds = Histogram(
            "vitalwatch_publish_seconds", "Publishing a micro-batch's outputs until the broker acknowledged them.",
            buckets=FAST_BUCKETS, registry=r,
        )
        self.batch_retries = Counter(
            "vitalwatch_batch_retries", "Micro-batch steps retried after a failure, by stage.", ["stage"], registry=r
        )
        self.alerts = Counter("vitalwatch_alerts", "Alerts published, by new level.", ["level"], registry=r)
        self.resident_patients = Gauge(
            "vitalwatch_resident_patients", "Patients whose state is resident on the model's device.", registry=r
        )
        self.consumer_lag = Gauge(
            "vitalwatch_consumer_lag", "Messages behind the partition's high watermark after the last batch.",
            ["topic", "partition"], registry=r,
        )
        self.model_info = Gauge(
            "vitalwatch_model_info",
            "Loaded models (value is always 1): role live (scores and alerts) or shadow (scores beside it, never alerts).",
            ["version", "device", "role"], registry=r,
        )
        self._model_labels: dict[str, tuple[str, str, str]] = {}
        self.model_reloads = Counter(
            "vitalwatch_model_reloads",
            "Checkpoint reloads asked for by SIGHUP, by outcome: kept_state (same weights), reset_state (other weights), refused (did not verify or load; the old model still serves).",
            ["outcome"], registry=r,
        )
        self.dependency_up = Gauge(
            "vitalwatch_dependency_up", "1 when the last health check reached the dependency.", ["dependency"],
            registry=r,
        )

        self._live_accuracy(r)

    def _live_accuracy(self, r: CollectorRegistry) -> None:
        """The model's accuracy on the site's own patients, from its labelled scores
        (worker.operations.live_accuracy), per model version and role (live or shadow), never
        per patient. AUROC is the sum over risk bins of negatives times the positives ranked
        above them (ties half), over negatives times positives: docs/operations.md gives the PromQL."""
        version_role = ["model_version", "role"]
        self.labelled_scores = Counter(
            "vitalwatch_labelled_scores", "Scores labelled (published on scored-outcomes), by label (positive, negative).",
            [*version_role, "label"], registry=r,
        )
        self.labelled_negatives = Counter(
            "vitalwatch_labelled_negatives", "Negative labelled scores by risk bin (logit-spaced, `bin` its index).",
            [*version_role, "bin"], registry=r,
        )
        self.labelled_positives_ranked = Counter(
            "vitalwatch_labelled_positives_ranked",
            "Positive labelled scores in a higher risk bin than `bin`, plus half of those in it: times the negatives "
            "of the same bin, summed, the pairs the model ranks right (AUROC's numerator).",
            [*version_role, "bin"], registry=r,
        )
        self.news2_negatives = Counter(
            "vitalwatch_labelled_news2_negatives", "Negative labelled scores by the NEWS2 total of the same event.",
            [*version_role, "news2"], registry=r,
        )
        self.news2_positives_ranked = Counter(
            "vitalwatch_labelled_news2_positives_ranked",
            "Positive labelled scores with a higher NEWS2 total than `news2`, plus half of those with it (NEWS2's "
            "AUROC on the same scores).",
            [*version_role, "news2"], registry=r,
        )
        self.labelled_alerts = Counter(
            "vitalwatch_labelled_alerts",
            "Labelled scores that raised or escalated an alert, by label: positive / all is the PPV.",
            [*version_role, "label"], registry=r,
        )
        self.outcomes_seen = Counter(
            "vitalwatch_outcomes",
            "Stays' first outcomes that labelled scores, by kind and whether one of those scores alerted "
            "(alerted=true / all is the sensitivity).",
            [*version_role, "kind", "alerted"], registry=r,
        )
        self.alert_lead_hours = Histogram(
            "vitalwatch_alert_lead_hours", "Hours from the first alert within the horizon to the outcome.",
            version_role, buckets=LEAD_BUCKETS, registry=r,
        )
        self.patient_hours = Counter(
            "vitalwatch_patient_hours",
            "Event-time hours the patients' streams covered: labelled alerts per 24 of these is the alert burden.",
            version_role, registry=r,
        )
        self.calibration_scores = Counter(
            "vitalwatch_calibration_scores", "Labelled scores by risk band (`band`: its upper edge).",
            [*version_role, "band"], registry=r,
        )
        self.calibration_predicted = Counter(
            "vitalwatch_calibration_predicted", "Sum of the labelled scores' risks by risk band (mean predicted).",
            [*version_role, "band"], registry=r,
        )
        self.calibration_observed = Counter(
            "vitalwatch_calibration_observed", "Positive labelled scores by risk band (observed rate).",
            [*version_role, "band"], registry=r,
        )
        self.unlabelled_scores = Counter(
            "vitalwatch_unlabelled_scores",
            "Scores that left a patient's history unlabelled: more pending than VITALWATCH_SCORE_HISTORY_CAP.",
            version_role, registry=r,
        )

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)`` (values in the metric's label order), remembered: labels()
        checks its arguments and takes a lock on every call (~3 µs), and a batch's accounting
        touches up to a few hundred children (one per risk bin of its labelled scores). Not
        for ``model_info``, whose children are removed."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def set_model(self, version: str, device: str, role: str = "live") -> None:
        """The model now loaded in ``role``: a reload replaces that role's series, the other role's stays."""
        previous = self._model_labels.pop(role, None)
        if previous is not None:
            self.model_info.remove(*previous)
        self._model_labels[role] = (version, device, role)
        self.model_info.labels(version=version, device=device, role=role).set(1)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format and its content type, for the /metrics view."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe every one of ``values`` in ``histogram``, exactly as ``observe`` one by one would
    (tests/test_metrics.py holds the two equal), with one bucket search for all of them and one
    increment per bucket touched. Why: a batch's end-to-end latencies were observed event by
    event, a lock and a bucket scan each; per batch is what the hot path may cost. It reads
    prometheus_client's bucket bounds and values, which that test pins."""
    if not values:
        return
    observed = np.asarray(values, dtype=np.float64)
    buckets = np.searchsorted(np.asarray(histogram._upper_bounds), observed, side="left")
    histogram._sum.inc(float(observed.sum()))
    for bucket, count in zip(*np.unique(buckets, return_counts=True)):
        histogram._buckets[int(bucket)].inc(int(count))


def metrics_markdown() -> str:
    """Every exported metric as a Markdown table (name, type, labels, help) for docs/operations.md.

    Read from the metric objects rather than a scrape: a labelled metric exports no sample
    until it is first used, and the table must list it anyway."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in vars(Metrics()).values():
        if not isinstance(metric, (Counter, Gauge, Histogram)):
            continue
        name = metric._name + ("_total" if metric._type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "—"
        rows.append(f"| `{name}` | {metric._type} | {labels} | {metric._documentation} |")
    return "\n".join(rows)
