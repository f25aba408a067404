"""Labelling the worker's own scores as the patients' courses become known.

Every score the engine publishes joins its patient's history (worker.state.history); every
event moves the patient's event-time clock; an outcome (outcomes.v1, a discharge that died, a
ward or step-down -> ICU transfer) is the stay's first outcome, or ignored if one came before.
Once a block of the batch is applied, the rule of models.evaluation.outcome_labels decides for
all its patients' pending scores at once which are now positive, negative or excluded; those
leave the history and go out on ``scored-outcomes`` in the batch's publish, so they are
acknowledged before the state without them is written (a redelivered batch labels the same
scores again, with the same ids, and nothing twice once persisted).

A discharge ends the stay: every pending score is decided then (a death by its outcome, an
alive discharge as the rule says), and the patient's next stay starts with an empty history.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from models.evaluation.outcome_labels import EXCLUDED, PENDING, POSITIVE, RESOLUTIONS, Labels, resolve
from schemas.encounter import Encounter, unit_code
from schemas.observation import Observation
from schemas.outcome import Outcome
from schemas.scored_outcome import OUTCOME_KINDS, OutcomeKind, Resolution
from worker.scoring.alert_policy import LEVELS
from worker.scoring.events import InputEvent
from worker.state.history import ScoreEntry, ScoreHistory

#: Units a transfer to intensive care counts as an outcome from (an ICU -> ICU move does not).
_WARD_UNITS = frozenset((unit_code("ward"), unit_code("step_down")))
_ICU = unit_code("icu")
_LEVEL_CODE = {name: code for code, name in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class LabelledScore:
    """A score and its label, ready for ``scored-outcomes``."""

    patient_id: str
    score: ScoreEntry
    label: bool
    resolution: Resolution
    outcome_kind: OutcomeKind | None
    outcome_ts: float  # NaN for negatives


@dataclass(frozen=True, slots=True)
class OutcomeSeen:
    """A stay's first outcome as it labelled the scores before it: whether a score within the
    horizon alerted, and how long before the outcome the first such alert came."""

    kind: OutcomeKind
    alerted: bool
    lead_s: float  # NaN without an alert


@dataclass(slots=True)
class Labelling:
    """What one batch labelled: the scores, the outcomes, the scores dropped at the cap, and the
    event time the batch covered over its patients (for alerts per patient-day)."""

    scores: list[LabelledScore] = field(default_factory=list)
    outcomes: list[OutcomeSeen] = field(default_factory=list)
    dropped: int = 0
    patient_s: float = 0.0


class Labeller:
    """Folds a block's events into the histories and labels what the rule settles."""

    def __init__(self, *, horizon_s: float, delay_s: float, cap: int) -> None:
        self.horizon_s = horizon_s
        self.delay_s = delay_s
        self.cap = cap

    def fold(
        self,
        histories: dict[str, ScoreHistory],
        rows: dict[str, list[int]],
        events: Sequence[InputEvent],
        scored: Sequence[tuple[float, int, str, bool] | None],
        units: dict[str, int],
        model_version: str,
        into: Labelling,
    ) -> None:
        """Apply each patient's ``rows`` of ``events`` (in order) to its history: a scored row
        (``scored[row]`` = risk, NEWS2, level, alerted) joins it, outcomes and encounters set
        the stay's facts (``units``: each patient's unit before the block); then label."""
        ended: set[str] = set()
        for pid, patient_rows in rows.items():
            history, unit = histories[pid], units[pid]
            before = history.clock
            for row in patient_rows:
                item = events[row].item
                if isinstance(item, Observation):
                    history.clock = _later(history.clock, item.observed_ts)
                    score = scored[row]
                    if score is not None and not item.observed_ts > history.outcome_ts:
                        risk, news2, level, alerted = score
                        bisect.insort(history.entries, ScoreEntry(  # in time order: a late event's score among its own
                            item.observed_ts, risk, _LEVEL_CODE[level], news2, item.event_id, model_version, alerted,
                        ), key=_observed_ts)
                elif isinstance(item, Outcome):
                    history.clock = _later(history.clock, item.occurred_ts)
                    _first_outcome(history, item.occurred_ts, item.kind)
                elif isinstance(item, Encounter):
                    history.clock = _later(history.clock, item.occurred_ts)
                    unit = self._encounter(history, item, unit, ended)
            if not math.isnan(before):
                into.patient_s += max(0.0, history.clock - before)
        self._label(histories, list(rows), ended, into)

    @staticmethod
    def _encounter(history: ScoreHistory, encounter: Encounter, unit: int, ended: set[str]) -> int:
        """The stay's facts an encounter sets; returns the patient's unit after it."""
        if encounter.kind == "discharge":
            ended.add(encounter.patient_id)
            if encounter.disposition == "died":
                _first_outcome(history, encounter.occurred_ts, "death")
            else:
                history.discharged_alive_ts = encounter.occurred_ts
            return unit
        now = unit_code(encounter.unit)
        if encounter.kind == "transfer" and now == _ICU and unit in _WARD_UNITS:
            _first_outcome(history, encounter.occurred_ts, "icu_transfer")
        return now

    def _label(self, histories: dict[str, ScoreHistory], patients: list[str], ended: set[str], into: Labelling) -> None:
        """The rule over every score of ``patients`` it may settle now, all at once; the
        settled leave. Only a stay that ended or had its outcome is looked at whole; otherwise
        just the scores whose horizon + delay the patient's clock has passed (a prefix: the
        history is kept in time order), so a batch costs what it settles, not what waits."""
        spans = [(pid, histories[pid], self._settleable(histories[pid], pid in ended)) for pid in patients]
        spans = [(pid, history, n) for pid, history, n in spans if n]
        if spans:
            counts = np.array([n for _, _, n in spans])
            ts = np.fromiter((e.observed_ts for _, h, n in spans for e in h.entries[:n]), dtype=np.float64, count=int(counts.sum()))
            labels = resolve(
                ts,
                np.repeat([h.outcome_ts for _, h, _ in spans], counts),
                np.repeat([h.outcome_kind for _, h, _ in spans], counts),
                np.repeat([h.discharged_alive_ts for _, h, _ in spans], counts),
                self.horizon_s,
                clock_ts=np.repeat([math.inf if pid in ended else h.clock for pid, h, _ in spans], counts),
                delay_s=self.delay_s,
            )
            columns = _Columns(labels)
            start = 0
            for pid, history, n in spans:
                self._settle(pid, history, columns, start, n, into)
                start += n
        for pid in patients:
            history = histories[pid]
            if pid in ended:
                history.clear()
            elif len(history.entries) > self.cap:
                into.dropped += len(history.entries) - self.cap
                history.entries = history.entries[-self.cap :]

    def _settleable(self, history: ScoreHistory, ended: bool) -> int:
        """How many of the history's first scores the rule may settle now."""
        if ended or not math.isnan(history.outcome_ts):
            return len(history.entries)
        return bisect.bisect_left(history.entries, history.clock - self.horizon_s - self.delay_s, key=_observed_ts)

    @staticmethod
    def _settle(pid: str, history: ScoreHistory, labels: _Columns, start: int, n: int, into: Labelling) -> None:
        """Publish the settled scores among the first ``n`` of a patient's history (``labels``
        from ``start``); the pending ones stay, in order."""
        kept: list[ScoreEntry] = []
        positives: list[ScoreEntry] = []
        for i, entry in enumerate(history.entries[:n], start):
            label = labels.label[i]
            if label == PENDING:
                kept.append(entry)
            elif label != EXCLUDED:
                positive = label == POSITIVE
                into.scores.append(LabelledScore(
                    pid, entry, positive, RESOLUTIONS[labels.resolution[i]],
                    OUTCOME_KINDS[labels.outcome_kind[i]] if positive else None, labels.outcome_ts[i],
                ))
                if positive:
                    positives.append(entry)
        if positives:
            alerts = [e.observed_ts for e in positives if e.alerted]
            first = OUTCOME_KINDS[history.outcome_kind]
            into.outcomes.append(OutcomeSeen(first, bool(alerts), history.outcome_ts - min(alerts) if alerts else math.nan))
        history.entries[:n] = kept


def _observed_ts(entry: ScoreEntry) -> float:
    return entry.observed_ts


class _Columns:
    """``Labels`` as host lists, converted once per batch rather than per patient."""

    def __init__(self, labels: Labels) -> None:
        self.label: list[int] = labels.label.tolist()
        self.resolution: list[int] = labels.resolution.tolist()
        self.outcome_kind: list[int] = labels.outcome_kind.tolist()
        self.outcome_ts: list[float] = labels.outcome_ts.tolist()


def _later(clock: float, ts: float) -> float:
    """The event-time clock after an event at ``ts`` (NaN: nothing seen yet)."""
    return ts if math.isnan(clock) or ts > clock else clock


def _first_outcome(history: ScoreHistory, ts: float, kind: OutcomeKind) -> None:
    """Record an outcome if it is the stay's first (an earlier one reported late replaces a later)."""
    if math.isnan(history.outcome_ts) or ts < history.outcome_ts:
        history.outcome_ts, history.outcome_kind = ts, OUTCOME_KINDS.index(kind)
