"""Turn risk and NEWS2 into alert levels that are stable enough to page a nurse with.

A raw threshold on a noisy score flaps: a patient hovering at the threshold would page on
every other observation. Three rules keep levels meaningful:

* Hysteresis — a level is raised at its threshold but only cleared once risk falls clearly
  below it (medium clears under 0.8 x its threshold, high de-escalates under 0.85 x).
* Re-alert interval — after a downgrade (de-escalation or resolution), going back up to a
  level at or below the one just cleared is suppressed for ``realert_interval_s`` of
  *observed* time (event time, so replays and backfills behave like live data). Escalation
  above the cleared level is never suppressed.
* Safety net — NEWS2 >= 7 (the RCP emergency-response trigger) forces at least "high",
  after every other rule: the model may be more alarmed than NEWS2, never quieter.

Levels are int8 codes into ``LEVELS`` so the whole batch is decided with tensor comparisons.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch

LEVELS: tuple[str, ...] = ("none", "medium", "high")
NONE, MEDIUM, HIGH = 0, 1, 2

DEFAULT_THRESHOLDS = {"medium": 0.3, "high": 0.6}


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Thresholds on calibrated risk plus the rules above; all times in seconds."""

    medium: float = DEFAULT_THRESHOLDS["medium"]
    high: float = DEFAULT_THRESHOLDS["high"]
    medium_clear_ratio: float = 0.8
    high_clear_ratio: float = 0.85
    news2_emergency: int = 7
    realert_interval_s: float = 30 * 60.0

    def __post_init__(self) -> None:
        if not 0.0 < self.medium < self.high <= 1.0:
            raise ValueError(f"alert thresholds must satisfy 0 < medium < high <= 1, got {self.medium}, {self.high}")
        for name in ("medium_clear_ratio", "high_clear_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], **overrides: Any) -> AlertPolicy:
        """Thresholds from the checkpoint's ``alert_thresholds`` (chosen at training time on
        calibrated risk), else the defaults; ``overrides`` win over both."""
        thresholds = {**DEFAULT_THRESHOLDS, **(manifest.get("alert_thresholds") or {})}
        return cls(**{"medium": float(thresholds["medium"]), "high": float(thresholds["high"]), **overrides})

    def decide(
        self,
        risk: torch.Tensor,
        news2_total: torch.Tensor,
        level: torch.Tensor,
        t: torch.Tensor,
        cleared_level: torch.Tensor,
        cleared_ts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New level codes [B] int8 from risk [B], NEWS2 totals [B], the previous level [B] int8,
        event times [B] f64 and the last downgrade (cleared_level [B] int8, cleared_ts [B] f64);
        and [B] bool: the safety net set that level, above what the model's risk gave (an alert
        then explains itself by the NEWS2 parameters that scored, not by the model)."""
        previous = level.to(torch.int64)
        high = (risk >= self.high) | ((previous == HIGH) & (risk >= self.high * self.high_clear_ratio))
        medium = (risk >= self.medium) | ((previous >= MEDIUM) & (risk >= self.medium * self.medium_clear_ratio))
        candidate = torch.where(high, HIGH, torch.where(medium, MEDIUM, NONE))
        recently_cleared = (t - cleared_ts) < self.realert_interval_s  # NaN (never cleared) -> False
        suppressed = (candidate > previous) & (candidate <= cleared_level.to(torch.int64)) & recently_cleared
        decided = torch.where(suppressed, previous, candidate)
        by_news2 = (news2_total >= self.news2_emergency) & (decided < HIGH)
        decided = torch.where(by_news2, HIGH, decided)
        return decided.to(torch.int8), by_news2


def alert_id(patient_id: str, triggered_by: str, previous_level: str, level: str) -> str:
    """Deterministic id: a redelivered event yields the same id, so consumers drop duplicates."""
    key = f"{patient_id}|{triggered_by}|{previous_level}|{level}".encode()
    return hashlib.sha256(key).hexdigest()[:32]
