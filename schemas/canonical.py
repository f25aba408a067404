"""From a reported number to the value the model sees: canonical unit, plausible range.

vitals.v1, labs.v1 and FHIR all end here, so "HR 900" or "SpO2 140 %" is refused with the same
words whichever door it came through. Values are rejected, never clipped: a clipped artefact
would look like a real, extreme, alarming observation.
"""

from __future__ import annotations

import math

from schemas.errors import ContractError, FieldError
from schemas.units import convert
from schemas.variables import Variable


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
) -> float:
    """``value`` (in ``unit``, or already canonical when ``unit`` is None), converted and
    range-checked; ContractError on ``unit_field`` or ``field`` otherwise."""
    canonical = value if unit is None else convert(variable, value, unit, field=unit_field)
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
    ) -> None:
        try:
            canonical = to_canonical(variable, value, field=field, unit=unit, unit_field=unit_field)
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
