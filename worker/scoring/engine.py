"""RiskEngine: a micro-batch of decoded events in, one risk score per observation out.

The engine owns the device-resident state (``StateSlab``) and its durable copy in Redis. A
batch is scored as: restore every patient not resident with one MGET → lay the events out
patient by patient ([P, K]: patient p's k-th event of the batch, patients with the most events
first) → one gather of the P patients' state → ``FeatureEncoder.runs`` and NEWS2 over all real
events at once (neither depends on the LSTM) → the recurrence alone step by step: step k runs
one LSTM step and the alert policy over the patients that have a k-th event (a prefix of the
layout) → one scatter → occlusion reasons for every event whose level changed, in one
batch. One patient's events are therefore applied in order while different patients share
each step, and a batch costs one LSTM call per event of its busiest patient, not per event.

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
  A batch may be sealed (``seal``) right after it is scored: its changes are packed then, so
  the next batch can be scored while this one's outputs await the broker, and ``persist(sealed)``
  writes exactly this batch's state, never a later batch's (whose outputs are not yet
  acknowledged). Sealed batches are written in the order they were sealed; a patient evicted
  while its sealed state is unwritten is restored from that state, not from Redis.
  ``discard_unpersisted`` forgets every sealed and unsealed change alike. Scoring, sealing and
  discarding are one batch at a time (the caller orders them); only a sealed batch's write may
  overlap the next batch's scoring.
* A stored state written by another model version (or shape) is not loaded into this model:
  the patient starts fresh (keeping its watermark, recent ids and encounter context) and a
  warning is logged. The first step of a fresh patient scores from an empty history, so
  levels may re-alert after a model upgrade. A version with this model's very weights (the
  manifest's ``same_weights_as``: the parents of a recalibration) is this model's state.
* A switch to the model that ran as the shadow is warm: ``warm_from`` is the other role's
  store (the live engine's is the shadow's keys, the shadow's the live ones), read only for
  the patients whose own record was written by another model, in one MGET. Where it holds a
  record of this model, the patient takes that record's LSTM state and memory of values (the
  events it folded in are the same stream) and keeps its own watermark, recent ids, context
  and pending labels; its level starts at none as in a cold switch (the ward was never told
  the shadow's levels).
* ``reload`` replaces the model between batches (the caller makes sure no batch is in flight):
  with the same weights (sha256, architecture, inputs, horizon) only calibration and
  thresholds change and every resident patient keeps its state; with other weights the slab
  is emptied after a persist, and each patient is read back from Redis when next seen, where
  the rule above starts its LSTM state fresh.
* Encounters (admission, transfer, discharge) are events like observations — in order per
  patient, past the watermark, in the recent-ids ring, duplicates skipped — but not steps of
  the model and not scored. An admission sets the patient's context (age, sex, admission time,
  unit), a transfer its unit (worker.scoring.context); an observation whose patient's
  admission was never seen is scored with the context unknown, and a late admission fills it
  in without touching the LSTM state.
* Outcomes (outcomes.v1) are such events too, rows without a step; with the deaths and ward ->
  ICU transfers of the encounters they label the patient's recent scores, which wait in the
  slab and the Redis record until their horizon tells (worker.scoring.labelling). The labelled
  scores are part of the batch's outputs and leave the history in its state write.
* A discharge releases the patient, at ``persist``: its slot is freed and its Redis key holds
  a tombstone — watermark and recent ids, nothing clinical — with the short tombstone TTL.
  Not a DEL: if the worker dies after that write but before Kafka commits, the batch is
  redelivered, and only the tombstone's watermark tells the closed stay's events apart from
  new ones (with the key gone they would be applied again, to a fresh state). Whatever
  follows a discharge — a readmission under the same id, a late observation — starts from a
  fresh state with the tombstone's watermark and recent ids, in this batch or a later one
  alike (worker.scoring.layout); so a patient is released only when its last event of the
  batch is a discharge.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Sequence, cast

import numpy as np
import torch

from models.features import Context, Memory, Runs
from models.news2 import NEWS2_COMPONENTS, news2_components
from schemas.encounter import Encounter
from schemas.observation import Observation
from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLES
from worker.scoring.alert_policy import LEVELS, AlertPolicy, alert_id
from worker.scoring.context import CONTEXT_COLUMNS, ContextInputs
from worker.scoring.events import InputEvent
from worker.scoring.labelling import Labeller, Labelling
from worker.scoring.layout import Block, Kinds, stays
from worker.scoring.reasons import occlusion, top_reasons
from worker.scoring.slab import SlotState, StateSlab
from worker.state.codec import (
    ModelMismatchError,
    PatientState,
    StateCodecError,
    Watermark,
    id_hashes,
    pack_many,
    unpack,
)
from worker.state.store import RedisStateStore

if TYPE_CHECKING:
    from models.checkpoint import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_CARRY_FORWARD_S = 24 * 3600.0
#: The horizon of a checkpoint whose manifest does not state one (every shipped one does).
DEFAULT_HORIZON_H = 6.0


@dataclass(slots=True)
class AlertDecision:
    alert_id: str  # sha256(patient|triggered_by event_id|previous|level), hex 32
    level: str
    previous_level: str
    reasons: list[dict]  # [{"variable","value","unit","contribution"}], top 5 by |contribution|
    news2_components: dict[str, int]
    raised_by: str = "model"  # "news2" when the NEWS2 safety net, not the model, set the level


@dataclass(slots=True)
class ScoredEvent:
    event: InputEvent
    risk: float
    news2: int
    level: str
    alert: AlertDecision | None  # only when the level changed

    @property
    def observation(self) -> Observation:
        """The scored observation (only observations are scored)."""
        return cast(Observation, self.event.item)


@dataclass(slots=True)
class Sealed:
    """One batch's state changes, packed as they were right after it was scored: what writing
    it puts in Redis (``states`` with the state TTL, ``tombstones`` with the tombstone TTL) and
    the discharged patients whose slots may go once it is written."""

    states: dict[str, bytes]
    tombstones: dict[str, bytes]
    released: set[str]

    def patients(self) -> set[str]:
        return set(self.states) | set(self.tombstones) | self.released


@dataclass(slots=True)
class BatchOutcome:
    scored: list[ScoredEvent]
    duplicates: list[InputEvent]  # redelivered (at or below the watermark) or resent (a recent event_id): skipped
    encounters: list[InputEvent] = field(default_factory=list)  # applied to the patients' context, not scored
    outcomes: list[InputEvent] = field(default_factory=list)  # applied outcomes.v1 events
    labelling: Labelling = field(default_factory=Labelling)  # scores labelled by this batch


class _Served(NamedTuple):
    """What the engine reads of a checkpoint besides the network: its version, horizon, the
    versions it continues the states of, and the identity of its weights (checksum, variables,
    input groups, horizon, shape): equal identities, interchangeable patient states."""

    version: str
    horizon_h: float
    same_weights: frozenset[str]
    weights: tuple[Any, ...]


def _served(model: LoadedModel) -> _Served:
    manifest = model.manifest
    horizon_h = float(manifest.get("horizon_hours", DEFAULT_HORIZON_H))
    weights = (
        manifest.get("weights_sha256"), tuple(manifest.get("features", ())), tuple(manifest.get("inputs", ())),
        horizon_h, model.model.num_layers, model.model.hidden_size,
    )
    return _Served(str(manifest["version"]), horizon_h, frozenset(str(v) for v in manifest.get("same_weights_as", ())), weights)


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
        outcome_delay_s: float = 0.0,
        history_cap: int = 512,
        role: str = "live",
        warm_from: RedisStateStore | None = None,
    ) -> None:
        device = torch.device(device)
        weights_on = next(model.model.parameters()).device
        if weights_on.type != device.type or (device.index is not None and weights_on.index != device.index):
            raise ValueError(f"model weights are on {weights_on}, the engine's device is {device}: load the checkpoint there")
        self.role = role
        self._take(model, policy, _served(model))
        self._labeller = Labeller(horizon_s=self.horizon_h * 3600.0, delay_s=outcome_delay_s, cap=history_cap)
        self._store = store
        self._warm_from = warm_from
        self._carry_forward_s = carry_forward_s
        self._capacity = capacity
        with torch.inference_mode():
            self._slab = StateSlab(capacity, device=device, n_vars=len(VARIABLES), **self._shape)
        self._dirty: set[str] = set()
        self._discharged: set[str] = set()  # resident, last event a discharge (or a tombstone read back): released at persist
        self._evicted: dict[str, bytes] = {}  # packed dirty patients evicted since the last persist
        self._evicted_tombstones: set[str] = set()  # which of those were discharged
        self._sealed: list[Sealed] = []  # sealed, not yet written, oldest first
        self._released: set[str] = set()  # discharged, tombstone written, slot not yet freed
        self._lock = asyncio.Lock()

    def _take(self, model: LoadedModel, policy: AlertPolicy, served: _Served) -> None:
        """Serve ``model`` with ``policy`` (``served``: what ``_served`` read of it). Plain
        assignments only, so a swap is never left half done."""
        self._model = model.model.eval()
        self._encoder = model.encoder
        self._policy = policy
        self.model_version, self.horizon_h, self._same_weights, self._weights = served
        self._shape = dict(num_layers=self._model.num_layers, hidden_size=self._model.hidden_size)

    async def reload(self, model: LoadedModel, policy: AlertPolicy) -> bool:
        """Serve ``model`` from the next batch on; True when every patient kept its state (same
        weights), False when the slab was emptied (other weights: see the module doc). Nothing
        changes when anything before the swap fails (the persist first of all): the error is raised."""
        weights_on = next(model.model.parameters()).device
        if weights_on != next(self._model.parameters()).device:
            raise ValueError(f"the new model's weights are on {weights_on}, the engine's device is {self.device}")
        served = _served(model)
        async with self._lock:
            await self._persist(None)
            previous = self.model_version
            if served.weights == self._weights:
                self._take(model, policy, served._replace(same_weights=served.same_weights | self._same_weights | {previous}))
                return True
            labeller = Labeller(horizon_s=served.horizon_h * 3600.0, delay_s=self._labeller.delay_s, cap=self._labeller.cap)
            with torch.inference_mode():
                slab = StateSlab(
                    self._capacity, device=self.device, n_vars=len(VARIABLES),
                    num_layers=model.model.num_layers, hidden_size=model.model.hidden_size,
                )
            self._take(model, policy, served)
            self._labeller, self._slab = labeller, slab
            return False

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
            self._free_released()
            for chunk in self._chunks(events):
                await self._make_resident(chunk)
                self._score_chunk(chunk, outcome)
        return outcome

    def seal(self) -> Sealed:
        """Pack every change not yet sealed (as it is now) into one batch's write; later
        scoring does not alter it. ``persist(sealed)`` writes it."""
        with torch.inference_mode():
            records = {**self._evicted, **self._pack(list(self._dirty))}
        gone = self._evicted_tombstones | self._discharged
        sealed = Sealed(
            states={p: r for p, r in records.items() if p not in gone},
            tombstones={p: r for p, r in records.items() if p in gone},
            released=set(self._discharged),
        )
        self._evicted.clear()
        self._evicted_tombstones.clear()
        self._dirty.clear()
        self._discharged.clear()
        self._sealed.append(sealed)
        return sealed

    async def persist(self, sealed: Sealed | None = None) -> int:
        """Write the sealed batches up to ``sealed`` (every change so far when None), one Redis
        round trip each, and release their discharged patients (tombstone written, slot freed)
        once written.

        On error nothing is forgotten: the same batches are written by the next call.

        A sealed batch is written without the engine's lock (its bytes are fixed), so the
        write overlaps the next batch's scoring; its discharged patients' slots are then freed
        by the next call that holds the lock (``_free_released``), never mid-score."""
        if sealed is not None:
            return await self._persist(sealed, locked=False)
        async with self._lock:
            return await self._persist(None)

    async def release_partitions(self, partitions: set[int]) -> None:
        """Persist, then drop resident patients with any watermark entry on ``partitions``.

        Called when the consumer loses partitions: the new owner reads these patients from
        Redis, so this worker must have written them and must not keep a stale copy."""
        async with self._lock:
            await self._persist(None)
            gone = [p for p in self._slab.patients() if any(part in partitions for _, part in self._slab.watermark(p))]
            self._slab.remove(gone)

    def discard_unpersisted(self) -> None:
        """Forget changes not yet persisted, sealed or not; those patients are re-read from Redis when next seen."""
        changed = self._dirty | self._discharged | set().union(*(s.patients() for s in self._sealed))
        self._slab.remove([p for p in changed if p in self._slab])
        self._sealed.clear()
        self._dirty.clear()
        self._discharged.clear()
        self._evicted.clear()
        self._evicted_tombstones.clear()

    # -- batch steps -------------------------------------------------------------------------

    def _chunks(self, events: Sequence[InputEvent]) -> Iterator[Sequence[InputEvent]]:
        """Consecutive runs of events with at most ``capacity`` distinct patients each (in
        practice the whole batch: capacity is far above the batch size)."""
        start, patients = 0, set()
        for i, event in enumerate(events):
            pid = event.patient_id
            if pid not in patients and len(patients) == self._slab.capacity:
                yield events[start:i]
                start, patients = i, set()
            patients.add(pid)
        if start < len(events):
            yield events[start:]

    async def _make_resident(self, events: Sequence[InputEvent]) -> None:
        """Restore or create every patient of ``events`` not in the slab (one MGET for all, and
        one of ``warm_from`` for those whose record was another model's)."""
        patients = list(dict.fromkeys(e.patient_id for e in events))
        unseen = [p for p in patients if p not in self._slab]
        self._slab.touch(p for p in patients if p in self._slab)
        if not unseen:
            return
        pending = self._unwritten(unseen)
        stored = await self._store.load_many([p for p in unseen if p not in self._evicted and p not in pending])
        stored.update(pending)
        for p in unseen:
            if p in self._evicted:  # evicted while dirty, not yet written: its bytes are newest
                stored[p] = self._evicted.pop(p)
                self._evicted_tombstones.discard(p)  # _admit marks it again while it is a tombstone
                self._dirty.add(p)
        restored, fresh, mismatched = self._unpack(unseen, stored)
        warmed = await self._warm(restored, list(mismatched)) if mismatched and self._warm_from is not None else set()
        cold = [why for p, why in mismatched.items() if p not in warmed]
        if warmed:
            log.info("this model's state taken from the other role's keys", extra={"patients": len(warmed), "role": self.role})
        if cold:
            log.warning(
                "stored state of another model not loaded: patients start fresh",
                extra={"patients": len(cold), "example": cold[0]},
            )
        with torch.inference_mode():
            self._admit(unseen, restored, fresh)

    def _unwritten(self, patients: list[str]) -> dict[str, bytes]:
        """The newest sealed, not yet written record of each of ``patients`` that has one: a
        patient evicted since its batch was sealed is newer there than in Redis."""
        found: dict[str, bytes] = {}
        for sealed in reversed(self._sealed):
            for p in patients:
                if p not in found and (record := sealed.states.get(p, sealed.tombstones.get(p))) is not None:
                    found[p] = record
        return found

    def _unpack(
        self, unseen: list[str], stored: dict[str, bytes]
    ) -> tuple[dict[str, PatientState], dict[str, Watermark], dict[str, str]]:
        """The stored states of ``unseen`` for this model, the patients to start fresh, and the
        patients whose record was another model's (why, by patient: their state is fresh for
        this model, their watermark, recent ids and context kept)."""
        restored: dict[str, PatientState] = {}
        fresh: dict[str, Watermark] = {}
        mismatched: dict[str, str] = {}
        for p in unseen:
            if p not in stored:
                fresh[p] = {}
                continue
            try:
                restored[p] = unpack(stored[p], model_version=self.model_version, same_weights=self._same_weights, **self._shape)
            except ModelMismatchError as exc:
                restored[p] = exc.state  # fresh for this model; watermark, recent ids and context kept
                if not exc.state.discharged:  # a tombstone holds no model state to lose
                    mismatched[p] = str(exc)
            except StateCodecError as exc:
                fresh[p] = {}
                log.error("unreadable stored patient state, starting the patient fresh", extra={"error": str(exc)})
        return restored, fresh, mismatched

    async def _warm(self, restored: dict[str, PatientState], patients: list[str]) -> set[str]:
        """Give ``patients`` (their own record another model's) this model's LSTM state and
        memory of values from ``warm_from`` where it holds them; returns those warmed."""
        assert self._warm_from is not None
        others = await self._warm_from.load_many(patients)
        warmed: set[str] = set()
        for p, raw in others.items():
            try:
                warm = unpack(raw, model_version=self.model_version, same_weights=self._same_weights, **self._shape)
            except StateCodecError:  # another model's there too (ModelMismatchError), or unreadable: stays fresh
                continue
            if not warm.discharged:
                restored[p] = replace(restored[p], **{name: getattr(warm, name) for name in _MODEL_MEMORY})
                warmed.add(p)
        return warmed

    def _admit(self, unseen: list[str], restored: dict[str, PatientState], fresh: dict[str, Watermark]) -> None:
        need = len(unseen) - self._slab.free
        if need > 0:
            self._evict(self._slab.least_recent(need))
        if restored:
            states = list(restored.values())
            self._slab.admit(
                list(restored), SlotState.from_patients(states, self.device), [s.watermark for s in states],
                [s.history for s in states],
            )
            # A tombstone stays one (and is released again) unless a new event of the patient is applied.
            self._discharged.update(p for p, state in restored.items() if state.discharged)
        if fresh:
            state = SlotState.fresh(len(fresh), device=self.device, n_vars=len(VARIABLES), **self._shape)
            self._slab.admit(list(fresh), state, list(fresh.values()))

    def _evict(self, victims: list[str]) -> None:
        """Make room; a victim with unsaved changes is packed now and written by ``persist``."""
        dirty = [p for p in victims if p in self._dirty]
        self._evicted.update(self._pack(dirty))
        self._evicted_tombstones.update(p for p in dirty if p in self._discharged)
        self._dirty.difference_update(dirty)
        self._discharged.difference_update(victims)
        self._slab.remove(victims)

    def _pack(self, patients: list[str]) -> dict[str, bytes]:
        """Records of resident patients; a discharged one's is its tombstone (its slot already
        holds a fresh state with the watermark and recent ids: see ``_release``)."""
        if not patients:
            return {}
        state = self._slab.gather(self._slab.index([self._slab.slot(p) for p in patients])).to_host()
        state["discharged"] = np.fromiter((p in self._discharged for p in patients), dtype=bool, count=len(patients))
        records = pack_many(
            state, [self._slab.watermark(p) for p in patients], self.model_version,
            histories=[self._slab.history(p) for p in patients],
        )
        return dict(zip(patients, records))

    async def _persist(self, upto: Sealed | None, *, locked: bool = True) -> int:
        """Write the sealed batches, oldest first, up to ``upto`` (every change so far when
        None). ``locked``: the caller holds the engine's lock, so freed slots go at once."""
        if upto is None:
            upto = self.seal()
        elif not any(s is upto for s in self._sealed):  # written already
            return 0
        written = 0
        while self._sealed:
            sealed = self._sealed[0]
            await self._store.save_many(sealed.states, sealed.tombstones)
            self._sealed.pop(0)
            written += len(sealed.states) + len(sealed.tombstones)
            # Only now, with the tombstones in Redis and the outputs acknowledged before this call,
            # may the slots go: a crash before this point redelivers the discharge itself.
            self._released.update(sealed.released)
            if locked:
                self._free_released()
            if sealed is upto:
                break
        return written

    def _free_released(self) -> None:
        """Free the slots of discharged patients whose tombstones are written; a patient changed
        again since (a later batch, sealed or not) keeps its slot. Only with the engine's lock:
        a batch being scored may hold such a patient's slot."""
        if not self._released:
            return
        later = self._dirty | self._discharged | set().union(*(s.patients() for s in self._sealed))
        self._slab.remove([p for p in self._released if p in self._slab and p not in later])
        self._released.clear()

    @torch.inference_mode()
    def _score_chunk(self, events: Sequence[InputEvent], outcome: BatchOutcome) -> None:
        unread = self._past_watermarks(events, outcome.duplicates)
        ids = id_hashes([e.event_id for e in unread])
        applied = self._already_applied(unread, ids)
        outcome.duplicates.extend(e for e, seen in zip(unread, applied) if seen)
        kept = [e for e, seen in zip(unread, applied) if not seen]
        if not kept:
            return
        kinds = Kinds.of(kept)
        values, times = self._inputs(kept, kinds)
        encounters = np.flatnonzero(kinds.encounter)
        chunk = _Chunk(
            kept, values, times, torch.from_numpy(ids[~applied]).to(self.device),
            ContextInputs.of(kept, encounters, self.device),
        )
        results: list[ScoredEvent | None] = [None] * len(kept)
        for rows in stays(kept, kinds):
            block = Block.of(kept, rows, kinds)
            units = self._units(block)
            self._apply(block, chunk, results)
            self._label(block, kept, results, units, outcome.labelling)
        outcome.scored.extend(r for r in results if r is not None)
        outcome.encounters.extend(kept[row] for row in encounters.tolist())
        outcome.outcomes.extend(kept[row] for row in np.flatnonzero(~kinds.observation & ~kinds.encounter).tolist())

    def _units(self, block: Block) -> dict[str, int]:
        """Each of the block's patients' unit before it (one gather): a transfer to intensive
        care is an outcome only from a ward or step-down unit."""
        slots = self._slab.index([self._slab.slot(p) for p in block.patients])
        return dict(zip(block.patients, self._slab.state.unit.index_select(0, slots).tolist()))

    def _label(
        self, block: Block, events: list[InputEvent], results: list[ScoredEvent | None], units: dict[str, int],
        into: Labelling,
    ) -> None:
        """Fold the block's scores, outcomes and encounters into its patients' score histories
        and label what is settled (worker.scoring.labelling)."""
        rows = {p: block.rows[i, : block.lengths[i]].tolist() for i, p in enumerate(block.patients)}
        scored = [
            None if r is None else (r.risk, r.news2, r.level, r.alert is not None and LEVELS.index(r.alert.level) > LEVELS.index(r.alert.previous_level))
            for r in results
        ]
        histories = {p: self._slab.history(p) for p in block.patients}
        self._labeller.fold(histories, rows, events, scored, units, self.model_version, into)

    def _past_watermarks(self, events: Sequence[InputEvent], duplicates: list[InputEvent]) -> list[InputEvent]:
        """The events past their patient's watermark, which they advance (and so mark the patient
        dirty); a redelivered one, at or below it, goes to ``duplicates``."""
        unread: list[InputEvent] = []
        for event in events:
            pid = event.patient_id
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
        slots = [self._slab.slot(e.patient_id) for e in events]
        in_ring = self._slab.holds_ids(torch.tensor(slots, device=self.device), torch.from_numpy(ids).to(self.device))
        # A set, not np.unique over (slot, id) rows: that sorts structured rows, ~0.2 ms a batch
        # even for a handful of events.
        seen: set[tuple[int, int]] = set()
        later_copy = np.zeros(len(events), dtype=bool)
        for j, key in enumerate(zip(slots, ids.tolist())):
            if key in seen:
                later_copy[j] = True
            seen.add(key)
        return later_copy | in_ring.cpu().numpy()

    def _inputs(self, events: list[InputEvent], kinds: Kinds) -> tuple[torch.Tensor, torch.Tensor]:
        """Values [B, V] float32 (NaN = not measured in this event) and times [B] float64,
        filled on the host and moved to the device in one copy each. An encounter measures
        nothing and is no step in time: values all NaN, time -inf (see ``_apply``)."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        times = np.full(len(events), -math.inf)
        column = VARIABLE_INDEX.__getitem__
        for r in np.flatnonzero(kinds.observation).tolist():
            observation = cast(Observation, events[r].item)
            measured = observation.values
            rows.extend([r] * len(measured))
            cols.extend(map(column, measured))
            vals.extend(measured.values())
            times[r] = observation.observed_ts
        values = np.full((len(events), len(VARIABLES)), np.nan, dtype=np.float32)
        values[rows, cols] = vals
        return torch.from_numpy(values).to(self.device), torch.from_numpy(times).to(self.device)

    def _apply(self, block: Block, chunk: _Chunk, results: list[ScoredEvent | None]) -> None:
        """Fold the block's events into their patients' state and score each observation (into
        ``results`` at its row): one gather and one scatter, the encoder, NEWS2 and the context
        over all events at once (none depends on the LSTM), and only the recurrence itself
        (LSTM step, alert policy) step by step, step k over the patients that have a k-th
        event (a prefix of the block). The encoder and NEWS2 see only the real events, laid out
        patient after patient (``_RunLayout``): the [P, K] grid of a batch whose busiest
        patient has twenty events is nine parts padding. An encounter's row is no step: it
        measures nothing, stands at the time of the patient's previous step, and leaves the
        LSTM state and the level as they were."""
        rows = torch.from_numpy(block.rows).to(self.device)
        padding = torch.from_numpy(block.padding).to(self.device)
        slots = self._slab.index([self._slab.slot(p) for p in block.patients])
        before = self._slab.gather(slots)
        # Time never goes back for a patient: each event's time is clamped to the latest before
        # it. An encounter (time -inf) so takes the time of the step before it, NaN if none.
        t_grid = torch.fmax(chunk.times[rows].cummax(dim=1).values, before.prev_time.unsqueeze(1))
        t_grid = t_grid.masked_fill(t_grid == -math.inf, math.nan)
        # The context in force at each event (an admission can arrive mid-batch), else the one before.
        context = _context(before) if chunk.context is None else chunk.context.at(rows, ~padding, before)

        run = _RunLayout.of(block, self.device)
        values = chunk.values.index_select(0, run.rows)
        t = t_grid[run.patient, run.step]
        at_event = {name: column[run.patient, run.step] if column.dim() == 2 else column[run.patient] for name, column in context.items()}
        x, after = self._encoder.runs(values, t, before.memory(), Runs(run.patient, run.start), _encoder_context(at_event))
        fresh_enough = (t.unsqueeze(1) - after.last_time) <= self._carry_forward_s
        components = news2_components(torch.where(fresh_enough, after.last_value, math.nan))
        news2 = components.sum(dim=1)

        stepping = None if block.steps is None else torch.from_numpy(block.steps[run.patient_sm, run.step_sm]).to(self.device)
        to_sm = run.step_major
        steps = self._recurrence(
            block, stepping, x.index_select(0, to_sm), t.index_select(0, to_sm), news2.index_select(0, to_sm), before,
            run.ends_sm,
        )
        last = run.ends
        self._slab.scatter(slots, SlotState(
            h=steps.h, c=steps.c,
            last_value=after.last_value.index_select(0, last), last_time=after.last_time.index_select(0, last),
            prev_time=t.index_select(0, last),
            level=steps.level, cleared_level=steps.cleared_level, cleared_ts=steps.cleared_ts,
            recent_ids=before.remember(chunk.ids[rows], torch.from_numpy(block.lengths).to(self.device)),
            counts=after.counts.index_select(0, last), first_time=after.first_time,
            **{name: column.index_select(0, last) for name, column in at_event.items()},
        ))
        self._release(block, slots)

        # Outputs in step-major order: step 0 of every patient, then step 1, ...
        risk, level, previous, by_news2 = steps.risk, steps.levels, steps.previous, steps.by_news2
        changed = level != previous  # never an encounter: its level is the previous one
        alerting: dict[int, tuple[list[dict], list[int]]] = {}
        # The model explains the levels it set; NEWS2 the ones its safety net set (the model's
        # occlusion would only say why it was *not* alarmed).
        for by_model in (True, False):
            where = (changed & (by_news2 != by_model)).nonzero().squeeze(1)
            if not where.numel():
                continue
            event = to_sm.index_select(0, where)  # in the runs' layout
            if by_model:
                why = self._reasons(where, event, run, values, t, after, at_event, before, steps, risk)
            else:
                why = _news2_reasons(components[event], torch.where(fresh_enough[event], after.last_value[event], math.nan))
            alerting.update(zip(where.tolist(), zip(why, components[event].tolist())))
        forced_l = by_news2.tolist()
        risk_l, level_l, prev_l = risk.tolist(), level.tolist(), previous.tolist()
        news2_l = news2.index_select(0, to_sm).tolist()
        positions = zip(run.rows_sm.tolist(), block.is_step()[run.patient_sm, run.step_sm].tolist())
        for j, (row, is_step) in enumerate(positions):
            if not is_step:
                continue
            event = chunk.events[row]
            alert = None
            if j in alerting:
                reasons, points = alerting[j]
                was, now = LEVELS[prev_l[j]], LEVELS[level_l[j]]
                alert = AlertDecision(
                    alert_id=alert_id(event.patient_id, event.event_id, was, now),
                    level=now,
                    previous_level=was,
                    reasons=reasons,
                    news2_components=dict(zip(NEWS2_COMPONENTS, points)),
                    raised_by="news2" if forced_l[j] else "model",
                )
            results[row] = ScoredEvent(event, risk_l[j], int(news2_l[j]), LEVELS[level_l[j]], alert)

    def _release(self, block: Block, slots: torch.Tensor) -> None:
        """Patients whose last event of the block is a discharge: their slot becomes a fresh
        state that keeps only the recent ids (the watermark lives beside the slab, untouched).
        That is both their tombstone and the state whatever follows the discharge starts from;
        ``persist`` writes it and frees the slot."""
        self._discharged.difference_update(block.patients)
        if not block.released.any():
            return
        released = slots.index_select(0, torch.from_numpy(np.flatnonzero(block.released)).to(self.device))
        fresh = SlotState.fresh(len(released), device=self.device, n_vars=len(VARIABLES), **self._shape)
        fresh.recent_ids = self._slab.state.recent_ids.index_select(0, released)
        self._slab.scatter(released, fresh)
        self._discharged.update(p for p, gone in zip(block.patients, block.released) if gone)

    def _recurrence(
        self, block: Block, stepping: torch.Tensor | None, x: torch.Tensor, t: torch.Tensor, news2: torch.Tensor,
        before: SlotState, last: torch.Tensor,
    ) -> _Steps:
        """The LSTM, then the alert policy, step k over the first ``block.active[k]`` patients (a
        prefix: those with a k-th event), for those whose k-th event is a step (``stepping``
        [N] bool: an observation, not an encounter; None when every event is one, so a batch
        without encounters pays nothing for them). Inputs (x [N, F], t, news2, stepping) and
        per-event outputs are in step-major order (``block.positions``): step k's events are
        the ``block.active[k]`` after those of the steps before it; ``last`` [P]: each patient's
        last event in that order.

        A micro-batch steps once per event of its busiest patient (twenty steps in a 512-event
        batch of the simulated ward), so what a step costs is counted in tensor operations: a
        step is the LSTM call and the policy's comparisons, the risk of every step is one head
        call after the last, and a step carries the state of its prefix only (the patients with
        a (k+1)-th event are a prefix of those with a k-th); each patient's state after its
        last event is gathered once at the end. Nothing is written in place, so each step's inputs
        stay available for the alert reasons."""
        h, c = before.h, before.c
        steps = _Steps()
        after_h: list[torch.Tensor] = []
        after_c: list[torch.Tensor] = []
        spans = _spans(block.active)
        for n, span in spans:
            h_new, c_new = self._model.step_state(x[span], h[:, :n], c[:, :n])
            if stepping is not None:  # an encounter leaves the LSTM state as it was
                step = stepping[span].view(1, -1, 1)
                h_new, c_new = torch.where(step, h_new, h[:, :n]), torch.where(step, c_new, c[:, :n])
            steps.h_before.append(h[:, :n])
            steps.c_before.append(c[:, :n])
            after_h.append(h_new)
            after_c.append(c_new)
            h, c = h_new, c_new
        h_all, c_all = torch.cat(after_h, dim=1), torch.cat(after_c, dim=1)
        risk = self._model.risk(self._model.logits(h_all[-1]))

        level, cleared_level, cleared_ts = before.level, before.cleared_level, before.cleared_ts
        levels, previous, by_news2, cleared_levels, cleared_times = [], [], [], [], []
        for n, span in spans:
            decided, forced = self._policy.decide(risk[span], news2[span], level[:n], t[span], cleared_level[:n], cleared_ts[:n])
            if stepping is not None:  # nor the level
                step = stepping[span]
                decided, forced = torch.where(step, decided, level[:n]), forced & step
            down = decided < level[:n]
            previous.append(level[:n])
            cleared_level = torch.where(down, level[:n], cleared_level[:n])
            cleared_ts = torch.where(down, t[span], cleared_ts[:n])
            level = decided
            levels.append(decided)
            by_news2.append(forced)
            cleared_levels.append(cleared_level)
            cleared_times.append(cleared_ts)
        steps.risk, steps.levels, steps.previous = risk, torch.cat(levels), torch.cat(previous)
        steps.by_news2 = torch.cat(by_news2)
        # Each patient's state after its last event.
        steps.h, steps.c = h_all.index_select(1, last), c_all.index_select(1, last)
        steps.level = steps.levels.index_select(0, last)
        steps.cleared_level = torch.cat(cleared_levels).index_select(0, last)
        steps.cleared_ts = torch.cat(cleared_times).index_select(0, last)
        return steps

    def _reasons(
        self,
        changed: torch.Tensor,
        event: torch.Tensor,
        run: _RunLayout,
        values: torch.Tensor,
        t: torch.Tensor,
        after: Memory,
        context: dict[str, torch.Tensor],
        before: SlotState,
        steps: _Steps,
        risk: torch.Tensor,
    ) -> list[list[dict]]:
        """Occlusion reasons for the events whose level the model changed (``changed``: their
        step-major positions; ``event``: the same in the runs' layout of ``values``, ``t``,
        ``after`` and ``context``), all in one batch: each needs the memory and LSTM state
        from just before its own step, and the context at it."""
        patient = run.patient.index_select(0, event)
        first = (run.step.index_select(0, event) == 0).unsqueeze(1)
        prior = (event - 1).clamp(min=0)  # the patient's event before, unless this is its first

        def just_before(initial: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
            shaped = first if later.dim() == 2 else first.squeeze(1)
            return torch.where(shaped, initial.index_select(0, patient), later.index_select(0, prior))

        memory = Memory(
            last_value=just_before(before.last_value, after.last_value),
            last_time=just_before(before.last_time, after.last_time),
            prev_time=just_before(before.prev_time, t),
            counts=just_before(before.counts, after.counts),
            first_time=after.first_time.index_select(0, patient),  # the earliest time: the same before and after a step
        )
        contribution = occlusion(
            self._encoder,
            self._model,
            values=values.index_select(0, event),
            t=t.index_select(0, event),
            memory=memory,
            context=_encoder_context({name: column.index_select(0, event) for name, column in context.items()}),
            h=torch.cat(steps.h_before, dim=1).index_select(1, changed),
            c=torch.cat(steps.c_before, dim=1).index_select(1, changed),
            risk=risk.index_select(0, changed),
        )
        current = after.last_value.index_select(0, event).index_select(1, self._encoder.columns)
        return top_reasons(contribution, current, self._encoder.variables)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk's events to apply (duplicates left out) and their inputs on the device, by row."""

    events: list[InputEvent]
    values: torch.Tensor  # [n, V] float32, NaN = not measured (all NaN for an encounter)
    times: torch.Tensor  # [n] float64 POSIX s, -inf for an encounter (no step in time)
    ids: torch.Tensor  # [n] int64 event-id hashes, for the recent-ids ring
    context: ContextInputs  # what each event sets of the encounter context


@dataclass(slots=True)
class _Steps:
    """The recurrence's outputs: per event in step-major order, and the state after each
    patient's last step."""

    risk: torch.Tensor | None = None  # [N]
    by_news2: torch.Tensor | None = None  # [N] bool: the NEWS2 safety net set the level
    levels: torch.Tensor | None = None  # [N]
    previous: torch.Tensor | None = None  # [N] the level before the step
    h_before: list[torch.Tensor] = field(default_factory=list)  # per step k, [L, active[k], H]
    c_before: list[torch.Tensor] = field(default_factory=list)
    h: torch.Tensor | None = None
    c: torch.Tensor | None = None
    level: torch.Tensor | None = None
    cleared_level: torch.Tensor | None = None
    cleared_ts: torch.Tensor | None = None


def _context(state: SlotState) -> dict[str, torch.Tensor]:
    """The encounter context columns of ``state``."""
    return {name: getattr(state, name) for name in CONTEXT_COLUMNS}


def _news2_reasons(components: torch.Tensor, charted: torch.Tensor) -> list[list[dict]]:
    """The reasons of levels the NEWS2 safety net set: the parameters that scored (``components``
    [n, 7] points), most points first, each with the value it scored on (``charted`` [n, M]: the
    memory's values fresh enough for NEWS2) and its points as the contribution."""
    points = components.tolist()
    charted = charted[:, list(_NEWS2_COLUMNS)].tolist()
    return [
        [
            {"variable": name, "value": float(str(value)), "unit": BY_NAME[name].unit, "contribution": float(score)}
            for score, name, value in sorted(zip(row_points, NEWS2_COMPONENTS, row_values), key=lambda r: -r[0])
            if score > 0
        ]
        for row_points, row_values in zip(points, charted)
    ]


#: What a switch takes from the other role's record of this model (``RiskEngine._warm``): the
#: LSTM state and the memory of values the encoder reads. Not the level (the ward was told the
#: live model's, never the shadow's), nor watermark, recent ids, context or pending labels (the
#: patient's own record holds them for this engine's role).
_MODEL_MEMORY = ("h", "c", "last_value", "last_time", "prev_time", "counts", "first_time")

#: The memory columns of NEWS2's parameters, in NEWS2_COMPONENTS order.
_NEWS2_COLUMNS = tuple(VARIABLE_INDEX[name] for name in NEWS2_COMPONENTS)


def _spans(active: Sequence[int]) -> list[tuple[int, slice]]:
    """Per step, its patient count and where its events lie in step-major order."""
    ends = np.cumsum(active).tolist()
    return [(n, slice(end - n, end)) for n, end in zip(active, ends)]


@dataclass(frozen=True, slots=True)
class _RunLayout:
    """A block's real events patient after patient (the encoder's and NEWS2's layout) and
    step-major (the recurrence's and the outputs'), as device index tensors [N] unless said."""

    rows: torch.Tensor  # each event's row in the chunk
    patient: torch.Tensor  # its patient p (a row of the block)
    step: torch.Tensor  # its k: the how-manieth of its patient's events
    start: torch.Tensor  # where its patient's run starts
    ends: torch.Tensor  # [P] each patient's last event
    ends_sm: torch.Tensor  # [P] the same, its index in step-major order
    step_major: torch.Tensor  # the runs' index of the j-th event in step-major order
    patient_sm: np.ndarray  # host: p of the j-th event in step-major order
    step_sm: np.ndarray  # host: its k
    rows_sm: np.ndarray  # host: its row in the chunk

    @classmethod
    def of(cls, block: Block, device: torch.device) -> _RunLayout:
        lengths = block.lengths
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        patient = np.repeat(np.arange(len(lengths)), lengths)
        step = np.arange(int(lengths.sum())) - starts[patient]
        patient_sm, step_sm = block.positions()
        step_offsets = np.concatenate([[0], np.cumsum(block.active)[:-1]])  # where step k starts, step-major

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)

        return cls(
            put(block.rows[patient, step]), put(patient), put(step), put(starts[patient]), put(starts + lengths - 1),
            put(step_offsets[lengths - 1] + np.arange(len(lengths))), put(starts[patient_sm] + step_sm),
            patient_sm, step_sm, block.rows[patient_sm, step_sm],
        )


def _encoder_context(context: dict[str, torch.Tensor]) -> Context:
    """The encounter context columns as the feature encoder reads them."""
    return Context(age=context["age"], sex=context["sex"], admitted=context["admitted_ts"])
