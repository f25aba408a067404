"""RiskEngine: a micro-batch of decoded observations in, one risk score per event out.

The engine owns the device-resident state (``StateSlab``) and its durable copy in Redis. A
batch is scored as: restore every patient not resident with one MGET → split the events into
rounds (the k-th event of each patient goes to round k, so one patient's events are applied
in order while different patients share a step) → per round one gather, one
``FeatureEncoder.step``, one ``RiskLSTM.step``, NEWS2, the alert policy and one scatter, all
as tensor ops over the round → occlusion reasons for the rows whose level changed.

Rules the rest of the worker relies on:

* Idempotence — each patient carries a watermark {(topic, partition): last offset applied}.
  An event at or below it is a redelivery: skipped (``BatchOutcome.duplicates``), no state
  change, no output. Together with deterministic alert ids this gives exactly-once state and
  at-least-once outputs across crashes and rebalances.
* A resent event (same event_id at a new offset: a producer retrying after a lost ack) is
  recognised by the hashes of the patient's last ``RECENT_IDS`` applied event ids, kept in the
  slab and in the Redis record: it is skipped like a redelivery (its offset still advances the
  watermark, since it was read), and so is a second copy within the same batch. A copy that
  arrives after ``RECENT_IDS`` newer events of that patient is applied again: that is the bound.
* Time never goes back — an event observed before the patient's previous step (a late lab,
  clock skew between monitors) is still applied, in arrival order, with its time clamped to
  the previous step's time: its values count as of now, and the LSTM never sees a negative
  time delta it was not trained on.
* NEWS2 uses carried-forward vitals: for each variable the patient's latest value if it was
  observed within ``carry_forward_s`` (default 24 h) of the event, else "not measured"
  (0 points). A single monitor message rarely carries all seven parameters, and NEWS2 is
  defined on the patient's current observation set, not on one message.
* Persistence is write-behind and explicit: ``score`` only marks patients dirty; the pipeline
  calls ``persist`` after the outputs are acknowledged, then commits offsets. If publishing
  fails (or ``score`` raises) it calls ``discard_unpersisted`` and those patients are re-read
  from Redis, so a redelivered batch is applied to exactly the state it first saw.
  Patients evicted from a full slab while dirty are packed and written by the next ``persist``.
  One batch at a time: score → publish → persist (or discard) must not interleave with
  another batch on the same engine.
* A stored state written by another model version (or shape) is not loaded into this model:
  the patient starts fresh (keeping its watermark) and a warning is logged. The first step of
  a fresh patient scores from an empty history, so levels may re-alert after a model upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from models.news2 import NEWS2_COMPONENTS, news2_components
from schemas.observation import Observation
from schemas.variables import VARIABLE_INDEX, VARIABLES
from worker.alert_policy import LEVELS, AlertPolicy, alert_id
from worker.reasons import occlusion, top_reasons
from worker.slab import SlotState, StateSlab
from worker.state_codec import (
    ModelMismatchError,
    PatientState,
    StateCodecError,
    Watermark,
    id_hashes,
    pack_many,
    unpack,
)
from worker.state_store import RedisStateStore

if TYPE_CHECKING:
    from models.checkpoint import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_CARRY_FORWARD_S = 24 * 3600.0


@dataclass(slots=True)
class InputEvent:
    """One decoded observation and where it came from."""

    observation: Observation
    topic: str
    partition: int
    offset: int
    kafka_ts: float | None  # broker timestamp, POSIX seconds


@dataclass(slots=True)
class AlertDecision:
    alert_id: str  # sha256(patient|triggered_by event_id|previous|level), hex 32
    level: str
    previous_level: str
    reasons: list[dict]  # [{"variable","value","unit","contribution"}], top 5 by |contribution|
    news2_components: dict[str, int]


@dataclass(slots=True)
class ScoredEvent:
    event: InputEvent
    risk: float
    news2: int
    level: str
    alert: AlertDecision | None  # only when the level changed


@dataclass(slots=True)
class BatchOutcome:
    scored: list[ScoredEvent]
    duplicates: list[InputEvent]  # redelivered (at or below the watermark) or resent (a recent event_id): skipped


class RiskEngine:
    """Scores micro-batches against device-resident per-patient state; see the module doc."""

    def __init__(
        self,
        model: LoadedModel,
        store: RedisStateStore,
        *,
        capacity: int,
        policy: AlertPolicy,
        device: torch.device | str,
        carry_forward_s: float = DEFAULT_CARRY_FORWARD_S,
    ) -> None:
        device = torch.device(device)
        self._model = model.model.eval()
        weights_on = next(self._model.parameters()).device
        if weights_on.type != device.type or (device.index is not None and weights_on.index != device.index):
            raise ValueError(f"model weights are on {weights_on}, the engine's device is {device}: load the checkpoint there")
        self._encoder = model.encoder
        self.model_version = str(model.manifest["version"])
        self._store = store
        self._policy = policy
        self._carry_forward_s = carry_forward_s
        self._shape = dict(num_layers=self._model.num_layers, hidden_size=self._model.hidden_size, n_vars=len(VARIABLES))
        with torch.inference_mode():
            self._slab = StateSlab(capacity, device=device, **self._shape)
        self._dirty: set[str] = set()
        self._evicted: dict[str, bytes] = {}  # packed dirty patients evicted since the last persist
        self._lock = asyncio.Lock()

    @property
    def resident(self) -> int:
        return len(self._slab)

    @property
    def device(self) -> torch.device:
        return self._slab.device

    async def score(self, events: Sequence[InputEvent]) -> BatchOutcome:
        """Apply ``events`` (in order per patient) and score each one that is not a duplicate."""
        outcome = BatchOutcome(scored=[], duplicates=[])
        async with self._lock:
            for chunk in self._chunks(events):
                await self._make_resident(chunk)
                self._score_chunk(chunk, outcome)
        return outcome

    async def persist(self) -> int:
        """Write every patient changed since the last persist in one Redis round trip.

        On error nothing is forgotten: the same patients are written by the next call."""
        async with self._lock:
            return await self._persist()

    async def release_partitions(self, partitions: set[int]) -> None:
        """Persist, then drop resident patients with any watermark entry on ``partitions``.

        Called when the consumer loses partitions: the new owner reads these patients from
        Redis, so this worker must have written them and must not keep a stale copy."""
        async with self._lock:
            await self._persist()
            gone = [p for p in self._slab.patients() if any(part in partitions for _, part in self._slab.watermark(p))]
            self._slab.remove(gone)

    def discard_unpersisted(self) -> None:
        """Forget changes not yet persisted; those patients are re-read from Redis when next seen."""
        self._slab.remove([p for p in self._dirty if p in self._slab])
        self._dirty.clear()
        self._evicted.clear()

    # -- batch steps -------------------------------------------------------------------------

    def _chunks(self, events: Sequence[InputEvent]) -> Iterator[Sequence[InputEvent]]:
        """Consecutive runs of events with at most ``capacity`` distinct patients each (in
        practice the whole batch: capacity is far above the batch size)."""
        start, patients = 0, set()
        for i, event in enumerate(events):
            pid = event.observation.patient_id
            if pid not in patients and len(patients) == self._slab.capacity:
                yield events[start:i]
                start, patients = i, set()
            patients.add(pid)
        if start < len(events):
            yield events[start:]

    async def _make_resident(self, events: Sequence[InputEvent]) -> None:
        """Restore or create every patient of ``events`` not in the slab (one MGET for all)."""
        patients = list(dict.fromkeys(e.observation.patient_id for e in events))
        unseen = [p for p in patients if p not in self._slab]
        self._slab.touch(p for p in patients if p in self._slab)
        if not unseen:
            return
        stored = await self._store.load_many([p for p in unseen if p not in self._evicted])
        for p in unseen:
            if p in self._evicted:  # evicted while dirty, not yet written: its bytes are newest
                stored[p] = self._evicted.pop(p)
                self._dirty.add(p)
        with torch.inference_mode():
            self._admit(unseen, stored)

    def _admit(self, unseen: list[str], stored: dict[str, bytes]) -> None:
        restored: dict[str, PatientState] = {}
        fresh: dict[str, Watermark] = {}
        mismatched: list[str] = []
        for p in unseen:
            if p not in stored:
                fresh[p] = {}
                continue
            try:
                restored[p] = unpack(stored[p], model_version=self.model_version, **self._shape)
            except ModelMismatchError as exc:
                fresh[p] = exc.watermark
                mismatched.append(str(exc))
            except StateCodecError as exc:
                fresh[p] = {}
                log.error("unreadable stored patient state, starting the patient fresh", extra={"error": str(exc)})
        if mismatched:
            log.warning(
                "stored state of another model not loaded: patients start fresh",
                extra={"patients": len(mismatched), "example": mismatched[0]},
            )
        need = len(unseen) - self._slab.free
        if need > 0:
            self._evict(self._slab.least_recent(need))
        if restored:
            states = list(restored.values())
            self._slab.admit(list(restored), SlotState.from_patients(states, self.device), [s.watermark for s in states])
        if fresh:
            state = SlotState.fresh(len(fresh), device=self.device, **self._shape)
            self._slab.admit(list(fresh), state, list(fresh.values()))

    def _evict(self, victims: list[str]) -> None:
        """Make room; a victim with unsaved changes is packed now and written by ``persist``."""
        dirty = [p for p in victims if p in self._dirty]
        self._evicted.update(self._pack(dirty))
        self._dirty.difference_update(dirty)
        self._slab.remove(victims)

    def _pack(self, patients: list[str]) -> dict[str, bytes]:
        if not patients:
            return {}
        state = self._slab.gather(self._slab.index([self._slab.slot(p) for p in patients]))
        records = pack_many(state.to_host(), [self._slab.watermark(p) for p in patients], self.model_version)
        return dict(zip(patients, records))

    async def _persist(self) -> int:
        with torch.inference_mode():
            records = {**self._evicted, **self._pack(list(self._dirty))}
        await self._store.save_many(records)
        self._evicted.clear()
        self._dirty.clear()
        return len(records)

    @torch.inference_mode()
    def _score_chunk(self, events: Sequence[InputEvent], outcome: BatchOutcome) -> None:
        unread = self._past_watermarks(events, outcome.duplicates)
        ids = id_hashes([e.observation.event_id for e in unread])
        applied = self._already_applied(unread, ids)
        outcome.duplicates.extend(e for e, seen in zip(unread, applied) if seen)
        kept = [e for e, seen in zip(unread, applied) if not seen]
        if not kept:
            return
        values, times = self._inputs(kept)
        kept_ids = torch.from_numpy(ids[~applied]).to(self.device)
        results: list[ScoredEvent | None] = [None] * len(kept)
        for rows in _rounds(kept):
            self._step(rows, kept, values, times, kept_ids, results)
        outcome.scored.extend(r for r in results if r is not None)

    def _past_watermarks(self, events: Sequence[InputEvent], duplicates: list[InputEvent]) -> list[InputEvent]:
        """The events past their patient's watermark, which they advance (and so mark the patient
        dirty); a redelivered one, at or below it, goes to ``duplicates``."""
        unread: list[InputEvent] = []
        for event in events:
            pid = event.observation.patient_id
            watermark = self._slab.watermark(pid)
            source = (event.topic, event.partition)
            if event.offset <= watermark.get(source, -1):
                duplicates.append(event)
                continue
            watermark[source] = event.offset
            self._dirty.add(pid)
            unread.append(event)
        return unread

    def _already_applied(self, events: list[InputEvent], ids: np.ndarray) -> np.ndarray:
        """[n] bool: the event's id is among its patient's recent ids, or an earlier event of
        ``events`` for the same patient has the same id (two copies in one batch)."""
        if not events:
            return np.zeros(0, dtype=bool)
        slots = np.fromiter((self._slab.slot(e.observation.patient_id) for e in events), dtype=np.int64, count=len(events))
        in_ring = self._slab.holds_ids(torch.from_numpy(slots).to(self.device), torch.from_numpy(ids).to(self.device))
        _, first = np.unique(np.stack([slots, ids], axis=1), axis=0, return_index=True)
        later_copy = np.ones(len(events), dtype=bool)
        later_copy[first] = False
        return later_copy | in_ring.cpu().numpy()

    def _inputs(self, events: list[InputEvent]) -> tuple[torch.Tensor, torch.Tensor]:
        """Values [B, V] float32 (NaN = not measured in this event) and times [B] float64,
        filled on the host and moved to the device in one copy each."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        column = VARIABLE_INDEX.__getitem__
        for r, event in enumerate(events):
            measured = event.observation.values
            rows.extend([r] * len(measured))
            cols.extend(map(column, measured))
            vals.extend(measured.values())
        values = np.full((len(events), len(VARIABLES)), np.nan, dtype=np.float32)
        values[rows, cols] = vals
        times = np.fromiter((e.observation.observed_ts for e in events), dtype=np.float64, count=len(events))
        return torch.from_numpy(values).to(self.device), torch.from_numpy(times).to(self.device)

    def _step(
        self,
        rows: list[int],
        kept: list[InputEvent],
        values: torch.Tensor,
        times: torch.Tensor,
        ids: torch.Tensor,
        results: list[ScoredEvent | None],
    ) -> None:
        """One round: every patient in it appears once, so gather/scatter slots are distinct."""
        patients = [kept[r].observation.patient_id for r in rows]
        slots = self._slab.index([self._slab.slot(p) for p in patients])
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        x_values = values.index_select(0, index)
        before = self._slab.gather(slots)
        t = torch.fmax(times.index_select(0, index), before.prev_time)
        x, last_value, last_time, prev_time = self._encoder.step(x_values, t, before.last_value, before.last_time, before.prev_time)
        logits, h, c = self._model.step(x, before.h, before.c)
        risk = self._model.risk(logits)
        fresh_enough = (t.unsqueeze(1) - last_time) <= self._carry_forward_s
        components = news2_components(torch.where(fresh_enough, last_value, math.nan))
        news2 = components.sum(dim=1)
        level = self._policy.decide(risk, news2, before.level, t, before.cleared_level, before.cleared_ts)
        down = level < before.level
        after = SlotState(
            h=h,
            c=c,
            last_value=last_value,
            last_time=last_time,
            prev_time=prev_time,
            level=level,
            cleared_level=torch.where(down, before.level, before.cleared_level),
            cleared_ts=torch.where(down, t, before.cleared_ts),
            recent_ids=before.remember(ids.index_select(0, index)),
        )
        self._slab.scatter(slots, after)
        changed = (level != before.level).nonzero().squeeze(1)
        reasons = self._reasons(changed, x_values, t, before, risk, last_value)
        alerting = dict(zip(changed.tolist(), zip(reasons, components.index_select(0, changed).tolist())))
        risk_l, news2_l, level_l, prev_l = risk.tolist(), news2.tolist(), level.tolist(), before.level.tolist()
        for i, r in enumerate(rows):
            event = kept[r]
            alert = None
            if i in alerting:
                why, points = alerting[i]
                previous, new = LEVELS[prev_l[i]], LEVELS[level_l[i]]
                alert = AlertDecision(
                    alert_id=alert_id(patients[i], event.observation.event_id, previous, new),
                    level=new,
                    previous_level=previous,
                    reasons=why,
                    news2_components=dict(zip(NEWS2_COMPONENTS, points)),
                )
            results[r] = ScoredEvent(event, risk_l[i], int(news2_l[i]), LEVELS[level_l[i]], alert)

    def _reasons(
        self,
        changed: torch.Tensor,
        values: torch.Tensor,
        t: torch.Tensor,
        before: SlotState,
        risk: torch.Tensor,
        last_value: torch.Tensor,
    ) -> list[list[dict]]:
        if changed.numel() == 0:
            return []
        at = before.select(changed)
        contribution = occlusion(
            self._encoder,
            self._model,
            values=values.index_select(0, changed),
            t=t.index_select(0, changed),
            last_value=at.last_value,
            last_time=at.last_time,
            prev_time=at.prev_time,
            h=at.h,
            c=at.c,
            risk=risk.index_select(0, changed),
        )
        return top_reasons(contribution, last_value.index_select(0, changed))


def _rounds(events: list[InputEvent]) -> list[list[int]]:
    """Rows of ``events`` per round: the k-th event of each patient goes to round k, so one
    patient's events apply in order while different patients share a step."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = defaultdict(int)
    for row, event in enumerate(events):
        k = seen[event.observation.patient_id]
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(row)
        seen[event.observation.patient_id] = k + 1
    return rounds
