"""From a reported number to the value the model sees: canonical unit, plausible range.

vitals.v1, labs.v1 and FHIR all end here, so "HR 900" or "SpO2 140 %" is refused with the same
words whichever door it came through. Values are rejected, never clipped: a clipped artefact
would look like a real, extreme, alarming observation.
"""

from __future__ import annotations

import math

from schemas.errors import ContractError, FieldError
from schemas.units import convert
from schemas.variables import BY_NAME, Variable


def plausible_range(variable: Variable) -> str:
    """``20–300 /min``: the range as the error messages and JSON Schema descriptions show it."""
    return f"{variable.low:g}–{variable.high:g} {variable.unit}"


def to_canonical(
    variable: Variable,
    value: float,
    *,
    field: str,
    unit: str | None = None,
    unit_field: str = "unit",
    code: str | None = None,
) -> float:
    """``value`` (in ``unit``, or already canonical when ``unit`` is None), converted and
    range-checked; ContractError on ``unit_field`` or ``field`` otherwise. ``code`` is the
    LOINC code it was sent under, if any (schemas.units.CODE_UNITS)."""
    canonical = (
        value if unit is None else convert(variable, value, unit, field=unit_field, code=code)
    )
    if variable.low <= canonical <= variable.high:  # False for NaN too
        return canonical
    raise ContractError([range_error(variable, value, field, unit=unit, canonical=canonical)])


def range_error(
    variable: Variable,
    value: float,
    field: str,
    *,
    unit: str | None = None,
    canonical: float | None = None,
) -> FieldError:
    """The out-of-range problem, showing the conversion when the value came in another unit."""
    problem = f"out of plausible range {plausible_range(variable)}"
    if unit is not None and unit != variable.unit:
        problem += f" ({value:g} {unit} = {canonical:.4g} {variable.unit})"
    return FieldError(field, problem, value)


class Measurements:
    """The canonical values of one observation set being assembled from several fields.

    Problems are appended to a caller-owned list so a message with many bad fields (or a FHIR
    Bundle with many bad entries) reports all of them at once.
    """

    def __init__(self, errors: list[FieldError]) -> None:
        self.values: dict[str, float] = {}
        self._origin: dict[str, str] = {}
        self._errors = errors

    def add(
        self,
        variable: Variable,
        value: float,
        *,
        field: str,
        unit: str | None = None,
        unit_field: str = "unit",
        code: str | None = None,
    ) -> None:
        try:
            canonical = to_canonical(
                variable, value, field=field, unit=unit, unit_field=unit_field, code=code
            )
        except ContractError as exc:
            self._errors.extend(exc.errors)
            return
        previous = self.values.get(variable.name)
        if previous is not None and not math.isclose(previous, canonical, rel_tol=1e-9):
            # Two different values for one variable at one instant: neither can be trusted.
            self._errors.append(
                FieldError(
                    field,
                    f"conflicts with {self._origin[variable.name]} "
                    f"({variable.name} = {previous:g} {variable.unit})",
                    value,
                )
            )
            return
        self.values[variable.name] = canonical
        self._origin.setdefault(variable.name, field)


# -- FiO2 and on_oxygen ---------------------------------------------------------------------

#: The FiO2 of room air: above it a patient receives supplemental oxygen.
ROOM_AIR_FIO2 = 0.21

#: vitals.v1 takes FiO2 as a fraction (0.21–1) or as a percentage (21–100). The two ranges are
#: 20 apart, so which one a number is never needs a guess; anything between or beyond is refused.
FIO2_PERCENT_LOW, FIO2_PERCENT_HIGH = 21.0, 100.0


def fio2_fraction(value: float) -> float | None:
    """``value`` as a fraction when it is a plausible fraction or percentage, else None."""
    fio2 = BY_NAME["fio2"]
    if fio2.low <= value <= fio2.high:
        return value
    if FIO2_PERCENT_LOW <= value <= FIO2_PERCENT_HIGH:
        return value / 100
    return None


def fio2_range_error(value: float, field: str) -> FieldError:
    """The problem with a FiO2 that is neither a plausible fraction nor a percentage."""
    fio2 = BY_NAME["fio2"]
    return FieldError(
        field,
        f"out of plausible range: a fraction {fio2.low:g}–{fio2.high:g} "
        f"or a percentage {FIO2_PERCENT_LOW:g}–{FIO2_PERCENT_HIGH:g}",
        value,
    )


def on_oxygen_from_fio2(fio2: float) -> float:
    """NEWS2's on_oxygen (1.0 or 0.0) from a FiO2 fraction, for senders that state only the FiO2."""
    return 1.0 if fio2 > ROOM_AIR_FIO2 else 0.0


def derive_on_oxygen(values: dict[str, float]) -> None:
    """Add on_oxygen from fio2 when the sender stated only the FiO2 (NEWS2 scores on_oxygen)."""
    if "fio2" in values and "on_oxygen" not in values:
        values["on_oxygen"] = on_oxygen_from_fio2(values["fio2"])


def oxygen_conflict(values: dict[str, float], field: str) -> FieldError | None:
    """The contradiction of "room air" sent with a FiO2 above 0.21, if there is one. on_oxygen
    true at 0.21 is not one: respiratory support can deliver air, and the sender says so."""
    fio2 = values.get("fio2")
    if fio2 is None or values.get("on_oxygen") != 0.0 or fio2 <= ROOM_AIR_FIO2:
        return None
    return FieldError(field, f"conflicts with fio2 ({fio2:g}): room air is a FiO2 of 0.21", False)
