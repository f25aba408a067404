"""Contract violations as data: which field, what was wrong, what value was seen.

Every bad message ends up on the dead-letter topic with these records attached unchanged, so
they must be JSON-safe and bounded however hostile the input: a 900 kB string or a
1000-deep array is shown as a short preview, never echoed whole.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

#: Longest preview of an offending value; enough to recognise it, small enough for a log line.
VALUE_PREVIEW_CHARS = 200

#: JSON integers beyond this lose precision in JavaScript consumers; they are shown as text.
_SAFE_INT = 2**53


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field. ``field`` is a dotted path such as ``results[2].unit``;
    ``$`` means the payload as a whole."""

    field: str
    problem: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "problem": self.problem, "value": json_safe(self.value)}


class ContractError(ValueError):
    """A message broke its contract. It carries every problem found, not just the first, so a
    producer can fix a message in one round trip."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.problem}" for e in self.errors))

    @classmethod
    def single(cls, field: str, problem: str, value: Any = None) -> ContractError:
        return cls([FieldError(field, problem, value)])

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.errors]


def json_safe(value: Any) -> Any:
    """``value`` as something orjson and every JSON consumer accept, at most about
    VALUE_PREVIEW_CHARS long once serialised."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else _truncate(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return _truncate(value)
    try:
        text = orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # Nesting past orjson's depth limit (or integers past 64 bits): nothing short to show.
        return f"<{type(value).__name__} too deeply nested or too large to show>"
    if len(text) <= VALUE_PREVIEW_CHARS:
        return orjson.loads(text)
    return _truncate(text)


def _truncate(text: str) -> str:
    if len(text) <= VALUE_PREVIEW_CHARS:
        return text
    return text[: VALUE_PREVIEW_CHARS - 1] + "…"


def dotted_path(loc: Iterable[str | int], prefix: str = "") -> str:
    """pydantic's ``("results", 2, "unit")`` as ``results[2].unit``; ``$`` for the root."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or "$"


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'heart_rate'?`` for a near miss, else nothing: typos are the commonest
    contract breach and naming the intended field makes the dead letter self-explaining."""
    close = difflib.get_close_matches(word, [c for c in choices if c != word], n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


#: pydantic error types reworded in the contract's own terms. Dead-letter consumers match on
#: these strings, so they must not change when pydantic rewords its messages.
_PROBLEMS: dict[str, str] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "float_type": "must be a number",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "finite_number": "must be a finite number",
    "list_type": "must be a JSON array",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must contain at least {min_length} item(s)",
    "string_pattern_mismatch": "must match {pattern}",
    "literal_error": "must be one of {expected}",
    "datetime_parsing": "bad timestamp: {error}",
    "datetime_from_date_parsing": "bad timestamp: {error}",
    "date_parsing": "bad date: {error}",
    "date_from_datetime_parsing": "bad date: {error}",
}


def from_validation_error(
    exc: ValidationError,
    *,
    prefix: str = "",
    known_fields: Iterable[str] = (),
    union_tags: frozenset[str] = frozenset(),
) -> ContractError:
    """Translate pydantic's errors into FieldErrors with dotted paths and stable wording.

    ``known_fields`` feeds the did-you-mean hint for unknown fields. ``union_tags`` are the
    tags of discriminated unions (FHIR resource types), which pydantic inserts into error
    locations but which are not fields of the document. Validators that judge a member from
    the enclosing object name it with a ``field`` entry in the error context.
    """
    return ContractError(
        [_field_error(d, prefix, known_fields, union_tags) for d in exc.errors()]
    )


def _field_error(
    detail: ErrorDetails, prefix: str, known_fields: Iterable[str], union_tags: frozenset[str]
) -> FieldError:
    ctx = detail.get("ctx") or {}
    loc = tuple(part for part in detail["loc"] if part not in union_tags)
    kind = detail["type"]
    if "field" in ctx:
        loc += (ctx["field"],)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _tag_error(ctx, loc, prefix, detail["input"])
    template = _PROBLEMS.get(kind)
    problem = template.format(**ctx) if template else detail["msg"]
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        problem += suggestion(loc[-1], known_fields)
    value = None if kind == "missing" else detail["input"]
    return FieldError(dotted_path(loc, prefix), problem, value)


def _tag_error(ctx: dict[str, Any], loc: tuple[Any, ...], prefix: str, value: Any) -> FieldError:
    """A discriminated union (FHIR ``resourceType``) that met a tag it does not know."""
    member = str(ctx["discriminator"]).strip("'")
    field = dotted_path(loc + (member,), prefix)
    if "tag" not in ctx:
        return FieldError(field, "required field is missing", None)
    expected = ctx["expected_tags"]
    return FieldError(field, f"must be one of {expected}", ctx["tag"])
