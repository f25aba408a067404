"""Error records: dotted paths, JSON safety and bounded size, whatever the offending value."""

from __future__ import annotations

import math

import orjson
import pytest

from schemas.decode import decode
from schemas.errors import (
    VALUE_PREVIEW_CHARS,
    ContractError,
    FieldError,
    dotted_path,
    json_safe,
    suggestion,
)


@pytest.mark.parametrize(
    ("loc", "prefix", "path"),
    [
        ((), "", "$"),
        (("heart_rate",), "", "heart_rate"),
        (("results", 2, "unit"), "", "results[2].unit"),
        (("code", "coding", 0, "code"), "entry[3].resource", "entry[3].resource.code.coding[0].code"),
        ((0,), "", "[0]"),
    ],
)
def test_dotted_path(loc: tuple, prefix: str, path: str) -> None:
    assert dotted_path(loc, prefix) == path


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        (None, None),
        (True, True),
        (900, 900),
        (2**60, str(2**60)),
        (97.5, 97.5),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        ("short", "short"),
        ([1, "a", None], [1, "a", None]),
        ({"a": {"b": [1]}}, {"a": {"b": [1]}}),
        ({1: "x"}, {"1": "x"}),
        (b"\xff", "b'\\xff'"),
    ],
)
def test_json_safe(value: object, safe: object) -> None:
    assert json_safe(value) == safe
    orjson.dumps(json_safe(value))


def test_long_values_are_truncated_previews() -> None:
    text = json_safe("x" * 10_000)
    assert len(text) == VALUE_PREVIEW_CHARS and text.endswith("…")
    preview = json_safe({"k": ["y" * 50] * 100})
    assert isinstance(preview, str) and len(preview) == VALUE_PREVIEW_CHARS
    assert preview.startswith('{"k":["yyy')


def test_values_nested_past_the_serialiser_limit() -> None:
    value: list = []
    for _ in range(400):
        value = [value]
    assert json_safe(value) == "<list too deeply nested or too large to show>"


def test_contract_error_carries_every_problem() -> None:
    err = ContractError(
        [FieldError("heart_rate", "out of plausible range 20–300 /min", 900),
         FieldError("$", "x", b"raw")]
    )
    assert str(err) == "heart_rate: out of plausible range 20–300 /min; $: x"
    assert isinstance(err, ValueError)
    assert err.to_list() == [
        {"field": "heart_rate", "problem": "out of plausible range 20–300 /min", "value": 900},
        {"field": "$", "problem": "x", "value": "b'raw'"},
    ]
    assert ContractError.single("a", "b", 1).errors == [FieldError("a", "b", 1)]


def test_suggestion_only_for_near_misses() -> None:
    names = ["heart_rate", "resp_rate", "spo2"]
    assert suggestion("heartrate", names) == "; did you mean 'heart_rate'?"
    assert suggestion("SpO2", names) == ""
    assert suggestion("ward", names) == ""


def test_decode_errors_serialise_for_the_dead_letter_topic() -> None:
    payload = {
        "event_id": "e",
        "patient_id": "p" * 500,
        "observed_at": "2024-05-01T10:00:00Z",
        "heart_rate": 1e300,
        "notes": "n" * 5000,
    }
    with pytest.raises(ContractError) as caught:
        decode("vitals", orjson.dumps(payload))
    records = caught.value.to_list()
    assert [r["field"] for r in records] == ["patient_id", "notes"]
    assert all(len(orjson.dumps(r["value"])) <= VALUE_PREVIEW_CHARS + 4 for r in records)
