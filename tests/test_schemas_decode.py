"""decode() at the payload level: size, encoding, JSON syntax, nesting, and the kind switch."""

from __future__ import annotations

import orjson
import pytest

from schemas.decode import DEFAULT_MAX_BYTES, KINDS, decode
from schemas.errors import ContractError

VITALS = b'{"event_id":"e1","patient_id":"p1","observed_at":"2024-05-01T10:00:00Z","heart_rate":80}'


def error_of(kind: str, raw: bytes, **kwargs: object) -> tuple[str, str, object]:
    with pytest.raises(ContractError) as caught:
        decode(kind, raw, **kwargs)  # type: ignore[arg-type]
    [e] = caught.value.errors
    return e.field, e.problem, e.value


def test_bytes_like_inputs() -> None:
    for raw in (VITALS, bytearray(VITALS), memoryview(VITALS)):
        [obs] = decode("vitals", raw)  # type: ignore[arg-type]
        assert obs.values == {"heart_rate": 80.0}


def test_oversize_payload_names_size_and_limit() -> None:
    assert error_of("vitals", VITALS, max_bytes=50) == (
        "$",
        f"payload is {len(VITALS)} bytes, over the limit of 50 bytes",
        len(VITALS),
    )
    big = b" " * DEFAULT_MAX_BYTES + VITALS
    assert error_of("labs", big)[:2] == (
        "$",
        f"payload is {len(big)} bytes, over the limit of 1000000 bytes",
    )
    assert decode("vitals", VITALS, max_bytes=len(VITALS))  # the limit itself is allowed


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "malformed JSON: Input is a zero-length, empty document: line 1 column 1 (char 0)"),
        (b"{", "malformed JSON: unexpected end of data: line 1 column 2 (char 1)"),
        (b'{"a":1,}', "malformed JSON: trailing comma is not allowed: line 1 column 7 (char 6)"),
        (
            b'{"heart_rate":NaN}',
            "malformed JSON: unexpected character, expected a JSON value: "
            "line 1 column 15 (char 14)",
        ),
        (b'{"heart_rate":1e999}',
         "malformed JSON: number is infinity when parsed as double: line 1 column 15 (char 14)"),
    ],
)
def test_malformed_json(raw: bytes, problem: str) -> None:
    assert error_of("vitals", raw) == ("$", problem, raw.decode())


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"patient_id":"\xff"}', "invalid UTF-8: invalid start byte at byte 15"),
        (b'{"a":"\xed\xa0\x80"}', "invalid UTF-8: invalid continuation byte at byte 6"),
        (b'{"a":"\xc3"}', "invalid UTF-8: invalid continuation byte at byte 6"),
    ],
)
def test_invalid_utf8(raw: bytes, problem: str) -> None:
    field, got, value = error_of("labs", raw)
    assert (field, got) == ("$", problem)
    assert value == raw.decode("utf-8", "replace")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_hostile_nesting_is_a_contract_error(kind: str, opener: bytes) -> None:
    field, problem, value = error_of(kind, opener * 100_000)
    assert field == "$"
    assert problem.startswith("malformed JSON: depth limit exceeded")
    assert len(value) <= 200  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_deep_but_legal_nesting_inside_a_field(kind: str) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    raw = VITALS[:-1] + b',"heart_rate_x":' + deep + b',"code":' + deep + b"}"
    with pytest.raises(ContractError) as caught:
        decode(kind, raw)  # type: ignore[arg-type]
    orjson.dumps(caught.value.to_list())  # still serialisable for the dead letter


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", [b"[]", b"1", b'"vitals"', b"null", b"true"])
def test_top_level_must_be_an_object(kind: str, raw: bytes) -> None:
    assert error_of(kind, raw) == ("$", "must be a JSON object", orjson.loads(raw))


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown kind 'hl7'"):
        decode("hl7", VITALS)  # type: ignore[arg-type]
    assert not issubclass(ContractError, TypeError)
