"""What `vitalwatch dev` shows: a ward board folded from the output topics, and its renderings.

The board is built only from what the worker publishes (risk-scores, alerts, dead-letters) and
what reached the input topics, read back with a kafka-python follower — the same view any
downstream consumer has, so the demo proves the contracts rather than peeking into the worker.
The encounters topic says where each patient is (ward, step-down, ICU) and who has left: a
discharged patient leaves the board's table, as from a ward's.
The end-to-end latency comes from the worker's own Prometheus histogram, because only the
worker knows when a batch's outputs were acknowledged.

Two renderings: a rich table redrawn in place on a terminal, and plain periodic summary lines
when stdout is a pipe (CI logs, ``make demo | tee``), where cursor tricks would be garbage. The
board names the model the worker runs under its status line (worker.tools.running_model); on a
pipe, `vitalwatch dev` prints that line before the plain lines start, and in its summary.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from models.evaluation.metrics import auroc
from schemas.outputs import LEVELS
from worker.tools.alert_text import MalformedAlert, format_alert, read_alert

Role = Literal["input", "encounter", "outcome", "score", "alert", "dead_letter", "labelled"]
ENCOUNTER_KINDS: tuple[str, ...] = ("admission", "transfer", "discharge")

#: Rows of the board on a terminal: the sickest patients first.
BOARD_ROWS = 15
#: Alert lines kept under the board.
RECENT_ALERTS = 6
LEVEL_STYLE = {"none": "green", "medium": "yellow", "high": "bold red"}
#: Seconds between scrapes of the worker's /metrics, and between plain summary lines.
SCRAPE_EVERY_S = 2.0
PLAIN_EVERY_S = 5.0
#: Histogram the latency figures come from (worker.operations.metrics.Metrics.end_to_end_seconds).
LATENCY_METRIC = "vitalwatch_end_to_end_seconds"


@dataclass
class PatientRow:
    """The latest score of one patient, as a nurse's board shows it."""

    patient_id: str
    risk: float = 0.0
    level: str = "none"
    news2: int = 0
    events: int = 0
    observed_at: str = ""
    last_alert: str = ""
    unit: str = ""  # ward, step_down or icu, as the encounters say; "" while unknown
    left: str = ""  # after a discharge: its disposition ("home", "died", ...) or "discharged"


@dataclass
class WardBoard:
    """Everything read back from the topics so far."""

    patients: dict[str, PatientRow] = field(default_factory=dict)
    published: int = 0  # observations (input events the worker scores); encounters are counted apart
    encounters: Counter = field(default_factory=Counter)
    scored: int = 0
    dead_letters: int = 0
    unreadable: int = 0
    alerts: Counter = field(default_factory=Counter)
    recent_alerts: deque = field(default_factory=lambda: deque(maxlen=RECENT_ALERTS))
    outcomes: int = 0  # outcomes.v1 records sent
    accuracy: LiveAccuracy = field(default_factory=lambda: LiveAccuracy())

    def fold(self, role: Role, value: bytes | None) -> None:
        """Take one record of the given role into account."""
        if role == "input":
            self.published += 1
        elif role == "encounter":
            self._encounter(value)
        elif role == "outcome":
            self.outcomes += 1
        elif role == "labelled":
            if not self.accuracy.fold(value):
                self.unreadable += 1
        elif role == "dead_letter":
            self.dead_letters += 1
        elif role == "score":
            self._score(value)
        else:
            self._alert(value)

    def _score(self, value: bytes | None) -> None:
        try:
            record = orjson.loads(value or b"")
            row = self.patients.setdefault(record["patient_id"], PatientRow(record["patient_id"]))
            row.risk, row.level, row.news2 = float(record["risk"]), record["level"], int(record["news2"])
            row.observed_at = record["observed_at"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.unreadable += 1
            return
        row.events += 1
        self.scored += 1

    def _encounter(self, value: bytes | None) -> None:
        """Where the patient is now, or that they left (the worker validates; this only reads)."""
        try:
            record = orjson.loads(value or b"")
            kind, patient_id = record["kind"], record["patient_id"]
            if kind not in ENCOUNTER_KINDS or not isinstance(patient_id, str):
                raise ValueError(kind)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.unreadable += 1
            return
        self.encounters[kind] += 1
        row = self.patients.setdefault(patient_id, PatientRow(patient_id))
        if kind == "discharge":
            row.left = record.get("disposition") or "discharged"
        else:
            row.unit, row.left = record.get("unit") or row.unit, ""

    def _alert(self, value: bytes | None) -> None:
        try:
            alert = read_alert(value)
        except MalformedAlert:
            self.unreadable += 1
            return
        self.alerts[alert.level] += 1
        self.recent_alerts.append(format_alert(alert))
        row = self.patients.setdefault(alert.patient_id, PatientRow(alert.patient_id))
        row.last_alert = f"{alert.previous_level} → {alert.level}"

    def in_hospital(self) -> list[PatientRow]:
        """Every patient not discharged."""
        return [row for row in self.patients.values() if not row.left]

    def sickest(self, n: int) -> list[PatientRow]:
        return sorted(self.in_hospital(), key=lambda r: (-LEVELS.index(r.level), -r.risk))[:n]


@dataclass
class LiveAccuracy:
    """The live model's labelled scores as scored-outcomes carries them (duplicates dropped by
    label_id): how its accuracy on these patients builds up, NEWS2 beside."""

    seen: set = field(default_factory=set)
    risk: list = field(default_factory=list)
    news2: list = field(default_factory=list)
    label: list = field(default_factory=list)

    def fold(self, value: bytes | None) -> bool:
        """Take one scored-outcomes record; False when it is unreadable."""
        try:
            record = orjson.loads(value or b"")
            key, role = record["label_id"], record["role"]
            score = (float(record["risk"]), int(record["news2"]), bool(record["label"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return False
        if role == "live" and key not in self.seen:
            self.seen.add(key)
            for column, value_ in zip((self.risk, self.news2, self.label), score):
                column.append(value_)
        return True

    def text(self) -> str:
        positives = sum(self.label)
        head = f"live accuracy: {len(self.label)} scores labelled ({positives} positive)"
        if not positives or positives == len(self.label):
            return head + "; AUROC once both labels are in"
        labels = np.array(self.label, dtype=int)
        return f"{head}; AUROC {auroc(labels, np.array(self.risk)):.3f}, NEWS2 {auroc(labels, np.array(self.news2)):.3f}"


@dataclass(frozen=True)
class Latency:
    """End-to-end latency quantiles, seconds (None until the worker has scored anything)."""

    p50: float | None = None
    p95: float | None = None

    def text(self) -> str:
        if self.p50 is None or self.p95 is None:
            return "end-to-end latency n/a"
        return f"end-to-end latency p50 {_seconds(self.p50)}, p95 {_seconds(self.p95)}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile on cumulative (upper bound, count) pairs, sorted by bound.

    Linear interpolation inside the bucket that holds the q-th observation; the +Inf bucket
    answers with the highest finite bound, as Prometheus does.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_from_exposition(text: str) -> Latency:
    """The p50/p95 of LATENCY_METRIC from a /metrics page."""
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name == LATENCY_METRIC:
            buckets = sorted(
                (float(s.labels["le"]), s.value) for s in family.samples if s.name == f"{LATENCY_METRIC}_bucket"
            )
    return Latency(histogram_quantile(buckets, 0.5), histogram_quantile(buckets, 0.95))


def scrape_latency(metrics_url: str, timeout_s: float = 2.0) -> Latency | None:
    """Read the worker's /metrics; None when it does not answer (starting, stopping)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
            return latency_from_exposition(response.read().decode("utf-8"))
    except OSError:
        return None


def _alert_counts(alerts: Mapping[str, int]) -> str:
    parts = ", ".join(f"→{level} {alerts[level]}" for level in reversed(LEVELS) if alerts.get(level))
    return f"{sum(alerts.values())} alerts" + (f" ({parts})" if parts else "")


def _encounter_counts(encounters: Mapping[str, int]) -> str:
    if not encounters:
        return ""
    parts = ", ".join(f"{encounters[kind]} {kind}s" for kind in ENCOUNTER_KINDS if encounters.get(kind))
    return f"{sum(encounters.values())} encounters ({parts}), "


def summary_line(board: WardBoard, latency: Latency) -> str:
    """One line with the counters: the plain-output progress line and the closing summary."""
    unreadable = f", {board.unreadable} unreadable" if board.unreadable else ""
    left = len(board.patients) - len(board.in_hospital())
    discharged = f" ({left} discharged)" if left else ""
    return (
        f"{board.published} events published, {board.scored} scored, {_alert_counts(board.alerts)}, "
        f"{board.dead_letters} dead letters, {_encounter_counts(board.encounters)}"
        f"{len(board.patients)} patients{discharged}{unreadable}; {latency.text()}"
    )


def _clock(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%m-%d %H:%M")
    except ValueError:
        return stamp


def render(board: WardBoard, latency: Latency, status: str, model: str) -> RenderableType:
    """The terminal view: status, the model, counters, the sickest patients, the latest alerts."""
    table = Table(title=f"Sickest {BOARD_ROWS} of {len(board.in_hospital())} patients in hospital", expand=True)
    for column, justify in (("patient", "left"), ("unit", "left"), ("risk", "right"), ("level", "left"),
                            ("NEWS2", "right"), ("events", "right"), ("observed (UTC)", "left"), ("last alert", "left")):
        table.add_column(column, justify=justify)
    for row in board.sickest(BOARD_ROWS):
        style = LEVEL_STYLE.get(row.level, "")
        table.add_row(
            row.patient_id, row.unit or "?", f"{row.risk:.2f}", Text(row.level, style=style), str(row.news2),
            str(row.events), _clock(row.observed_at), row.last_alert,
        )
    alerts = Text("\n".join(board.recent_alerts) or "no alerts yet", style="" if board.recent_alerts else "dim")
    return Group(
        Text(status, style="bold"), Text(f"model: {model}"), Text(summary_line(board, latency)),
        Text(board.accuracy.text()), table,
        Text("Latest alerts", style="bold"), alerts,
    )


class BoardFeed:
    """Keeps a WardBoard and the latency figures current from the topics and the worker's /metrics."""

    def __init__(self, consumer: Any, roles: Mapping[str, Role], metrics_url: str) -> None:
        self.consumer = consumer
        self.roles = roles
        self.metrics_url = metrics_url
        self.board = WardBoard()
        self.latency = Latency()
        self._next_scrape = 0.0

    def read(self, timeout_ms: int) -> None:
        """Fold whatever arrived within ``timeout_ms``; refresh the latency every SCRAPE_EVERY_S."""
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms, max_records=10_000).items():
            for record in records:
                self.board.fold(self.roles[tp.topic], record.value)
        if time.monotonic() >= self._next_scrape:
            self.scrape()

    def scrape(self) -> None:
        self.latency = scrape_latency(self.metrics_url) or self.latency
        self._next_scrape = time.monotonic() + SCRAPE_EVERY_S

    def drain(self, timeout_s: float) -> None:
        """Read until every published input has an outcome (scored or dead-lettered) or time is up."""
        deadline = time.monotonic() + timeout_s
        board = self.board
        while board.scored + board.dead_letters < board.published and time.monotonic() < deadline:
            self.read(250)
        self.scrape()


class TerminalDisplay:
    """The board redrawn in place (rich Live) on a terminal."""

    def __init__(self, console: Console, model: str) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=False)
        self._model = model

    def __enter__(self) -> "TerminalDisplay":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def update(self, feed: BoardFeed, status: str, elapsed_s: float) -> None:
        self._live.update(render(feed.board, feed.latency, status, self._model))


class PlainDisplay:
    """Each new alert as it arrives and a summary line every PLAIN_EVERY_S, for pipes and CI logs
    (`vitalwatch dev` prints the model's line before it, and again in its closing summary)."""

    def __init__(self) -> None:
        self._next_line = 0.0
        self._alerts_shown = 0

    def __enter__(self) -> "PlainDisplay":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, feed: BoardFeed, status: str, elapsed_s: float) -> None:
        board = feed.board
        total = sum(board.alerts.values())
        new = min(total - self._alerts_shown, len(board.recent_alerts))
        for line in list(board.recent_alerts)[len(board.recent_alerts) - new:]:
            print(f"alert: {line}", flush=True)
        self._alerts_shown = total
        if elapsed_s >= self._next_line:
            print(f"[{elapsed_s:5.0f} s] {summary_line(board, feed.latency)}", flush=True)
            if board.accuracy.label:
                print(f"[{elapsed_s:5.0f} s] {board.accuracy.text()}", flush=True)
            self._next_line = elapsed_s + PLAIN_EVERY_S


def display_for(console: Console, model: str) -> TerminalDisplay | PlainDisplay:
    return TerminalDisplay(console, model) if console.is_terminal else PlainDisplay()
