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
                        history.entries.append(ScoreEntry(
                            item.observed_ts, risk, _LEVEL_CODE[level], news2, item.event_id, model_version, alerted,
                        ))
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
        """The rule over every pending score of ``patients`` at once; the settled leave."""
        pending = [(pid, histories[pid]) for pid in patients if histories[pid].entries]
        if pending:
            counts = np.array([len(h.entries) for _, h in pending])
            ts = np.fromiter((e.observed_ts for _, h in pending for e in h.entries), dtype=np.float64, count=int(counts.sum()))
            labels = resolve(
                ts,
                np.repeat([h.outcome_ts for _, h in pending], counts),
                np.repeat([h.outcome_kind for _, h in pending], counts),
                np.repeat([h.discharged_alive_ts for _, h in pending], counts),
                self.horizon_s,
                clock_ts=np.repeat([math.inf if pid in ended else h.clock for pid, h in pending], counts),
                delay_s=self.delay_s,
            )
            start = 0
            for (pid, history), n in zip(pending, counts.tolist()):
                self._settle(pid, history, labels, slice(start, start + n), into)
                start += n
        for pid in ended:
            histories[pid].clear()

    def _settle(self, pid: str, history: ScoreHistory, labels: Labels, span: slice, into: Labelling) -> None:
        """Publish the settled scores of one patient (``span`` of ``labels``), keep the pending."""
        label = labels.label[span].tolist()
        resolution, kind, outcome_ts = labels.resolution[span].tolist(), labels.outcome_kind[span].tolist(), labels.outcome_ts[span].tolist()
        kept: list[ScoreEntry] = []
        positives: list[ScoreEntry] = []
        for i, entry in enumerate(history.entries):
            if label[i] == PENDING:
                kept.append(entry)
            elif label[i] != EXCLUDED:
                positive = label[i] == POSITIVE
                into.scores.append(LabelledScore(
                    pid, entry, positive, RESOLUTIONS[resolution[i]], OUTCOME_KINDS[kind[i]] if positive else None,
                    outcome_ts[i],
                ))
                if positive:
                    positives.append(entry)
        if positives:
            alerts = [e.observed_ts for e in positives if e.alerted]
            first = OUTCOME_KINDS[history.outcome_kind]
            into.outcomes.append(OutcomeSeen(first, bool(alerts), history.outcome_ts - min(alerts) if alerts else math.nan))
        if len(kept) > self.cap:
            into.dropped += len(kept) - self.cap
            kept = kept[-self.cap :]
        history.entries = kept


def _later(clock: float, ts: float) -> float:
    """The event-time clock after an event at ``ts`` (NaN: nothing seen yet)."""
    return ts if math.isnan(clock) or ts > clock else clock


def _first_outcome(history: ScoreHistory, ts: float, kind: OutcomeKind) -> None:
    """Record an outcome if it is the stay's first (an earlier one reported late replaces a later)."""
    if math.isnan(history.outcome_ts) or ts < history.outcome_ts:
        history.outcome_ts, history.outcome_kind = ts, OUTCOME_KINDS.index(kind)
