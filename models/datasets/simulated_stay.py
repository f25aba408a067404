"""What every simulator profile shares: the simulated stay, its seeded generators, its time stamps.

The ward profile (models.datasets.simulator) and the ICU profile (models.datasets.icu_simulator)
draw different patients but hand them over in one shape, ``SimulatedPatient``, so that
`vitalwatch simulate`, the tests, the bench and the training code never care which profile
made a stay. Both key their generators by (seed, patient id) in the same way, so a patient is
the same whether simulated alone or in a cohort of any size or order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

from models.datasets import encounters as adt
from models.datasets.events import SimEvent
from schemas.scored_outcome import OutcomeKind

#: A fixed past Monday, so a seed alone pins every timestamp.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)
HOUR_S = 3600.0
#: The lab system stamps local time (+01:00); monitors and nurses use UTC.
LAB_OFFSET_S = 3600
#: The ``source`` of every simulated encounter (a hospital's ADT feed).
ADT_SOURCE = "adt"
#: Third word of the encounter context's seed: a stream apart from the physiology's.
CONTEXT_STREAM = 0xADD


@dataclass(frozen=True, slots=True)
class SimulatedPatient:
    """A simulated stay with its ground truth: the pattern and when the clinical event happened.

    ``events`` are the observations (vitals and labs, time-ordered); ``encounters`` the stay's
    encounters.v1 events in time order: the admission at ``admitted_at`` (for an ICU stay that
    began on another unit, also the transfer to the ICU), then the transfer or discharge at
    ``discharged_at`` that ends the stay, where one does. ``discharged_at`` is where the
    simulated record ends: an ICU stay that turns septic is followed, as set A's files are, until
    a few hours after onset, and no encounter ends it. ``icu_type`` ("MICU", "SICU" or None)
    is the ICU profile's draw of set A's Unit1/Unit2 flags; no payload carries it.
    """

    patient_id: str
    pattern: str
    admitted_at: datetime
    discharged_at: datetime
    deterioration_at: datetime | None
    events: list[SimEvent]
    encounters: list[SimEvent]
    icu_type: str | None = None

    def feed(self, *, outcomes: bool = False) -> list[SimEvent]:
        """Everything the stay sends, in time order: the encounters that open the stay (at or
        before its first observation), the observations, then the encounter that ends it (after
        the first observation, at or after the last one), so this is also the order at equal
        times; with ``outcomes`` its outcome too, at the clinical event (after the observations
        of that instant)."""
        first = self.events[0].observed_ts if self.events else float("inf")
        opening = [e for e in self.encounters if e.observed_ts <= first]
        closing = [e for e in self.encounters if e.observed_ts > first]
        stay = [*opening, *self.events, *closing]
        if not outcomes or self.deterioration_at is None:
            return stay
        return sorted([*stay, self.outcome()], key=lambda e: e.observed_ts)  # stable: ties keep the stay's order

    def outcome(self) -> SimEvent:
        """The outcomes.v1 record of the clinical event (deteriorating stays only): a sepsis
        onset for the sepsis pattern and every septic ICU stay, a rapid-response call for the
        ward's respiratory and haemorrhage patterns (the ward's ICU transfer or death that
        follows comes from the encounters)."""
        assert self.deterioration_at is not None, "a stable stay has no outcome"
        kind: OutcomeKind = "sepsis_onset" if self.pattern == "sepsis" else "rapid_response"
        ts = self.deterioration_at.timestamp()
        return SimEvent("outcomes", adt.outcome(f"{self.patient_id}-outcome", self.patient_id, ts, kind, source="site_rule"), ts)


def _patient_key(patient_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8).digest(), "little")


def patient_rng(seed: int, patient_id: str) -> np.random.Generator:
    """The physiology's generator, keyed by (seed, patient_id), independent of cohort size and order."""
    return np.random.default_rng([seed, _patient_key(patient_id)])


def context_rng(seed: int, patient_id: str) -> np.random.Generator:
    """The encounter context's generator: (seed, patient_id) too, but its own stream, so that
    drawing age, sex or disposition never moves a single physiological draw."""
    return np.random.default_rng([seed, _patient_key(patient_id), CONTEXT_STREAM])


def stamps(ts: np.ndarray, *, offset_s: int) -> list[str]:
    """RFC 3339 timestamps for whole POSIX seconds, in UTC ("Z") or a fixed local offset."""
    local = (ts.astype(np.int64) + offset_s).astype("datetime64[s]")
    text = np.datetime_as_string(local, unit="s")
    if offset_s == 0:
        return [s + "Z" for s in text]
    sign = "+" if offset_s > 0 else "-"
    hh, mm = divmod(abs(offset_s) // 60, 60)
    suffix = f"{sign}{hh:02d}:{mm:02d}"
    return [s + suffix for s in text]


@lru_cache(maxsize=None)
def _ou_powers(n: int, phi: tuple[float, ...], sd: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi^k, phi^-k ``[n, channels]`` and the innovation scale, shared by equal-length stays."""
    per_step = np.array(phi)
    k = np.arange(n)[:, None]
    return per_step**k, per_step**-k, np.array(sd) * np.sqrt(1 - per_step**2)


def ou_paths(rng: np.random.Generator, n: int, phi: tuple[float, ...], sd: tuple[float, ...]) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck wander ``[n, channels]`` on a regular grid, in closed form:
    per channel, ``phi`` the correlation from one grid step to the next and ``sd`` the spread.

    x_k = phi^k * cumsum(phi^-j * e_j) is the AR(1) recursion without a Python loop; phi^-n
    stays inside float64's range while n steps span fewer than ~700 time constants (the ward
    profile's 100 h at 2 h, the ICU profile's 336 h at 4 h are far inside).
    """
    decay, growth, scale = _ou_powers(n, phi, sd)
    eps = rng.standard_normal((n, len(phi))) * scale
    eps[0] = rng.standard_normal(len(phi)) * np.array(sd)
    return decay * np.cumsum(eps * growth, axis=0)
