"""Alerts as one readable line each, shared by `vitalwatch alerts` and the `vitalwatch dev` board.

A record is read through the published contract (schemas.outputs.AlertV1), so what is printed
is what every other consumer of the topic is promised; a record that breaks the contract is
reported as MalformedAlert with the first problem, never a stack trace.
"""

from __future__ import annotations

from datetime import timezone

from pydantic import ValidationError

from schemas.outputs import AlertV1
from schemas.variables import ACVPU

#: Reasons shown per alert: the strongest few are what a clinician reads; the record has all.
REASONS_SHOWN = 3


class MalformedAlert(ValueError):
    """A record on the alerts topic that is not an alerts.v1 document."""


def read_alert(value: bytes | None) -> AlertV1:
    try:
        return AlertV1.model_validate_json(value or b"")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "$"
        raise MalformedAlert(f"{where}: {first['msg']} ({exc.error_count()} problem(s))") from None


#: UCUM codes as a ward writes them; units not listed are shown as they are.
DISPLAY_UNITS = {"Cel": "°C", "mm[Hg]": "mmHg", "10*3/uL": "×10³/µL"}


def _value(value: float, unit: str) -> str:
    """A reason's value as a clinician reads it: ACVPU letters and yes/no for the coded ones."""
    if unit == "{ACVPU}" and 0 <= int(value) < len(ACVPU):
        return ACVPU[int(value)]
    if unit == "{bool}":
        return "yes" if value else "no"
    shown = DISPLAY_UNITS.get(unit, unit)
    return f"{value:.4g}" + (f" {shown}" if shown else "")


def format_alert(alert: AlertV1) -> str:
    """``observed (UTC)  patient  previous → LEVEL  risk  NEWS2 total (nonzero parts)  reasons``."""
    components = ", ".join(f"{name} {points}" for name, points in alert.news2.components.items() if points)
    news2 = f"NEWS2 {alert.news2.total}" + (f" ({components})" if components else "")
    weight = "{:+.2f}".format if alert.raised_by == "model" else lambda points: f"NEWS2 +{points:g}"
    reasons = "; ".join(
        f"{r.variable} {_value(r.value, r.unit)} ({weight(r.contribution)})"
        for r in alert.reasons[:REASONS_SHOWN]
    )
    observed = alert.observed_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return (
        f"{observed}  {alert.patient_id}  {alert.previous_level} → {alert.level.upper()}  "
        f"risk {alert.risk:.2f}  {news2}" + (f"  reasons: {reasons}" if reasons else "")
    )
