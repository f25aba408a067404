"""Hostile input at the one validation path: refused with a precise reason, never a crash.

Two halves. The corpus (tests/hostile_corpus.py, about 500 messages across every category a
hospital integration produces, on every input topic) pins *which* field each refusal names and *what* it says, so a
dead letter tells the sending team what to fix. The fuzz tests search for inputs that make
``decode`` or the FHIR mapper raise anything other than ContractError, accept something the
contract forbids, or take unbounded time.

tests/test_schemas_properties.py already feeds random bytes, random JSON and one-location
replacements of valid messages; the fuzz tests here add what it does not reach: byte-level
mutations of valid messages (the realistic corruption: truncation, bit flips, spliced
buffers), structurally plausible FHIR documents and Bundles built from the catalogue's own
LOINC codes and units (so the mapper's grouping, panel and unit paths run, not only the
validator's early exits), values at and beyond every plausible-range edge, arbitrary
offsets and instants, and the mapper called directly on every document that validates.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.decode import KINDS, decode
from schemas.encounter import AGE_HIGH, AGE_LOW, Encounter
from schemas.errors import VALUE_PREVIEW_CHARS, ContractError
from schemas.fhir import FHIR_DOCUMENT, PANELS, observations_from_fhir
from schemas.fields import PATIENT_ID_PATTERN
from schemas.observation import Observation
from schemas.outcome import Outcome
from schemas.scored_outcome import OUTCOME_KINDS
from schemas.timestamps import EARLIEST, FUTURE_TOLERANCE_S
from schemas.units import accepted_units
from schemas.variables import BY_LOINC, BY_NAME, LABS, VARIABLES, VITALS
from tests.hostile_corpus import BadMessage, encounter_corpus, hostile_corpus, outcome_corpus

#: The consumer's clock for every test here (2026-01-15), so future-timestamp checks are exercised.
NOW = 1_768_435_200.0
CORPUS = hostile_corpus(NOW) + encounter_corpus(NOW) + outcome_corpus(NOW)

#: What "bounded time" means on this shared 2-core machine: a refusal or a decode that takes
#: longer than this is a denial-of-service vector, whatever the reason.
MAX_DECODE_S = 1.0

#: A dead letter carries the errors whole; they must stay far below the producer's 1 MB limit.
MAX_ERRORS_BYTES = 64 * 1024

REQUIRED_CATEGORIES = {
    "malformed JSON", "wrong type", "missing field", "NaN/Infinity", "impossible value", "unknown code",
    "unknown unit", "oversize payload", "deep nesting", "invalid UTF-8", "future timestamp",
    "ancient timestamp", "bad patient id", "FHIR wrong resource",
}


def refusal(
    kind: str, raw: bytes
) -> tuple[ContractError | None, list[Observation] | list[Encounter], float]:
    """decode's verdict and how long it took; any exception but ContractError propagates."""
    started = time.perf_counter()
    try:
        observations = decode(kind, raw, now=NOW)  # type: ignore[arg-type]
    except ContractError as exc:
        return exc, [], time.perf_counter() - started
    return None, observations, time.perf_counter() - started


def assert_well_formed(exc: ContractError) -> None:
    """Every problem names a field and says something, and the list fits in a dead letter."""
    assert exc.errors
    for error in exc.errors:
        assert error.field and error.problem.strip(), error
    encoded = orjson.dumps(exc.to_list())
    assert len(encoded) <= MAX_ERRORS_BYTES, f"{len(encoded)} bytes of errors"
    for entry in exc.to_list():
        value = entry["value"]
        if isinstance(value, str):
            assert len(value) <= VALUE_PREVIEW_CHARS


def assert_within_contract(observations: list[Observation] | list[Encounter]) -> None:
    """What decode accepts is something the model may see: the invariants every consumer relies on."""
    assert observations
    for obs in observations:
        if isinstance(obs, Encounter):
            assert_encounter_within_contract(obs)
            continue
        if isinstance(obs, Outcome):
            assert_outcome_within_contract(obs)
            continue
        assert re.fullmatch(PATIENT_ID_PATTERN.strip("^$"), obs.patient_id), obs.patient_id
        assert 1 <= len(obs.event_id) <= 128
        assert obs.observed_at.tzinfo is timezone.utc
        assert EARLIEST <= obs.observed_at
        assert obs.observed_ts <= NOW + FUTURE_TOLERANCE_S
        assert obs.values
        for name, value in obs.values.items():
            assert math.isfinite(value) and BY_NAME[name].low <= value <= BY_NAME[name].high, (name, value)


def assert_outcome_within_contract(outcome: Outcome) -> None:
    """An accepted outcome: who, which of the five, when (UTC, 2000 to now), recorded no earlier."""
    assert re.fullmatch(PATIENT_ID_PATTERN.strip("^$"), outcome.patient_id), outcome.patient_id
    assert 1 <= len(outcome.event_id) <= 128
    assert outcome.kind in OUTCOME_KINDS
    assert outcome.occurred_at.tzinfo is timezone.utc
    assert EARLIEST <= outcome.occurred_at and outcome.occurred_ts <= NOW + FUTURE_TOLERANCE_S
    assert outcome.recorded_at is None or outcome.recorded_at >= outcome.occurred_at


def assert_encounter_within_contract(encounter: Encounter) -> None:
    """An accepted encounter: who, when (UTC, 2000 to now), and only its kind's context, valid."""
    assert re.fullmatch(PATIENT_ID_PATTERN.strip("^$"), encounter.patient_id), encounter.patient_id
    assert 1 <= len(encounter.event_id) <= 128
    assert encounter.occurred_at.tzinfo is timezone.utc
    assert EARLIEST <= encounter.occurred_at
    assert encounter.occurred_ts <= NOW + FUTURE_TOLERANCE_S
    assert encounter.age is None or AGE_LOW <= encounter.age <= AGE_HIGH
    assert encounter.sex in (None, "female", "male", "other", "unknown")
    assert encounter.unit in (None, "ward", "step_down", "icu")
    assert encounter.disposition in (None, "home", "other_facility", "died")
    if encounter.kind != "admission":
        assert (encounter.age, encounter.sex) == (None, None)
    if encounter.kind == "transfer":
        assert encounter.unit is not None
    if encounter.kind != "discharge":
        assert encounter.disposition is None


# -- the corpus ------------------------------------------------------------------------------


def test_the_corpus_covers_every_category_and_kind() -> None:
    assert len(CORPUS) >= 200
    assert REQUIRED_CATEGORIES <= {m.category for m in CORPUS}
    for category in REQUIRED_CATEGORIES - {"NaN/Infinity"}:
        kinds = {m.kind for m in CORPUS if m.category == category}
        assert len(kinds) >= 2 or category in ("unknown unit",), (category, kinds)
    assert {m.kind for m in CORPUS} == set(KINDS)
    assert len({(m.kind, m.raw) for m in CORPUS}) == len(CORPUS), "no message is in twice"
    assert any(len(m.raw) > 1_000_000 for m in CORPUS)


@pytest.mark.parametrize("message", CORPUS, ids=[m.label for m in CORPUS])
def test_each_corpus_message_is_refused_with_its_precise_reason(message: BadMessage) -> None:
    exc, observations, took = refusal(message.kind, message.raw)
    assert exc is not None, f"accepted: {observations}"
    assert_well_formed(exc)
    problems = [(e.field, e.problem) for e in exc.errors]
    assert any(field == message.field and message.problem in problem for field, problem in problems), problems
    assert took < MAX_DECODE_S


# -- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
LABORATORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
SEEDS: dict[str, list[bytes]] = {
    "vitals": [orjson.dumps({
        "event_id": "e1", "patient_id": "p1", "observed_at": "2026-01-14T10:00:00+01:00", "heart_rate": 80,
        "resp_rate": 14, "spo2": 97, "temperature": 36.8, "sbp": 121, "dbp": 77, "map": 92,
        "consciousness": "A", "on_oxygen": False, "source": "mon-1",
    })],
    "labs": [orjson.dumps({
        "event_id": "e2", "patient_id": "p1", "observed_at": "2026-01-14T10:00:00Z",
        "results": [{"code": "creatinine", "value": 88, "unit": "umol/L"}, {"code": "2524-7", "value": 2.1, "unit": "mmol/L"}],
    })],
    "fhir": [orjson.dumps({
        "resourceType": "Bundle", "type": "message", "id": "b1",
        "entry": [
            {"resource": {"resourceType": "MessageHeader"}},
            {"resource": {"resourceType": "Observation", "status": "final", "category": [CATEGORY],
                          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-14T10:00:00Z",
                          "component": [
                              {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                               "valueQuantity": {"value": 118, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                               "valueQuantity": {"value": 9.9, "system": "http://unitsofmeasure.org", "code": "kPa"}}]}},
            {"fullUrl": "urn:uuid:1", "resource": {
                "resourceType": "Observation", "id": "o2", "category": [CATEGORY],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
                "subject": {"reference": "https://fhir.example.org/r4/Patient/p1/_history/3"},
                "effectiveDateTime": "2026-01-14T10:00:00Z",
                "valueQuantity": {"value": 99.1, "system": "http://unitsofmeasure.org", "code": "[degF]"}}},
        ],
    })],
    "encounters": [
        orjson.dumps({"event_id": "a1", "patient_id": "p1", "kind": "admission", "admitted_at": "2026-01-14T10:00:00+01:00",
                      "unit": "ward", "birth_date": "1949-12-31", "sex": "female", "source": "adt"}),
        orjson.dumps({"event_id": "t1", "patient_id": "p1", "kind": "transfer", "transferred_at": "2026-01-14T12:00:00Z",
                      "unit": "icu"}),
        orjson.dumps({"event_id": "d1", "patient_id": "p1", "kind": "discharge", "discharged_at": "2026-01-14T18:30:00Z",
                      "disposition": "died"}),
        orjson.dumps({
            "resourceType": "Encounter", "id": "enc-1", "status": "in-progress", "subject": {"reference": "Patient/p1"},
            "period": {"start": "2026-01-14T10:00:00Z"},
            "contained": [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1949-12-31"},
                          {"resourceType": "Location", "id": "icu", "type": [{"coding": [
                              {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "ICU"}]}]}],
            "location": [{"location": {"reference": "Location/ward"}, "status": "completed"},
                         {"location": {"reference": "#icu"}, "status": "active", "period": {"start": "2026-01-14T12:00:00Z"}}],
        }),
    ],
    "outcomes": [
        orjson.dumps({"event_id": "o1", "patient_id": "p1", "kind": "sepsis_onset", "occurred_at": "2026-01-14T11:20:00+01:00",
                      "source": "adjudicated", "recorded_at": "2026-01-14T16:00:00Z"}),
    ],
}


def test_the_fuzz_seeds_are_valid() -> None:
    for kind, seeds in SEEDS.items():
        for seed in seeds:
            exc, observations, _ = refusal(kind, seed)
            assert exc is None and observations


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid message after 1–6 byte-level corruptions of the kinds real links produce."""
    kind = draw(st.sampled_from(KINDS))
    raw = bytearray(draw(st.sampled_from(SEEDS[kind])))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        op = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate", "swap-digit"]))
        if op == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b'"', b"{", b"]", b",", b"\\", b"e9", b"-", b"\xff"]))
        elif op == "duplicate":
            raw[at:at] = raw[at : at + draw(st.integers(1, 40))]
        elif op == "truncate":
            del raw[at:]
        elif op == "swap-digit" and raw:
            digits = [i for i, c in enumerate(raw) if 0x30 <= c <= 0x39]
            if digits:
                raw[draw(st.sampled_from(digits))] = ord(str(draw(st.integers(0, 9))))
    return kind, bytes(raw)


def edge_numbers() -> st.SearchStrategy[Any]:
    """Numbers at and around every plausible-range edge, float extremes, and a few non-numbers."""
    edges = [x for v in VARIABLES for x in (v.low, v.high)]
    around = st.sampled_from(edges).flatmap(
        lambda e: st.sampled_from([e, math.nextafter(e, -math.inf), math.nextafter(e, math.inf), e * 10, -e])
    )
    return (
        around
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**63), 2**63 - 1)
        | st.sampled_from([0, -0.0, 5e-324, 1.7976931348623157e308, "80", None, True, [], {}])
    )


def instants() -> st.SearchStrategy[str]:
    """RFC 3339-ish strings: real instants at arbitrary offsets (some in the future or before
    2000), fractional seconds, and near-misses."""
    offsets = st.integers(-18 * 60, 18 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    real = st.builds(
        lambda dt, tz, frac: dt.replace(tzinfo=tz).isoformat(timespec="microseconds" if frac else "seconds"),
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 12, 31)),
        offsets,
        st.booleans(),
    )
    return real | real.map(lambda s: s[:19]) | real.map(lambda s: s.replace("T", " ")) | st.text(max_size=30)


def units_for(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([*accepted_units(name), "mmol/L", "mg/dL", "%", "/min", "Cel", "kg", "", "[degF]", "u" * 40,
                            "1", "kPa", "ng/L", "U/L", "L/min"])


@st.composite
def fhir_observations(draw: st.DrawFn) -> dict[str, Any]:
    """A FHIR Observation assembled from the catalogue, each element sometimes wrong."""
    coded = [(code, v.name) for code, v in BY_LOINC.items()]
    code, name = draw(st.sampled_from([*coded, *((p, "heart_rate") for p in PANELS), ("0000-0", "heart_rate")]))
    quantity = {"value": draw(edge_numbers()), "system": draw(st.sampled_from(["http://unitsofmeasure.org", "urn:x"])),
                "code": draw(units_for(name))}
    resource: dict[str, Any] = {
        "resourceType": draw(st.sampled_from(["Observation"] * 6 + ["Patient", "Bundle", "MessageHeader"])),
        "category": draw(st.sampled_from([[CATEGORY]] * 3 + [[LABORATORY], [LABORATORY, CATEGORY], [],
                                                              [{"coding": [{"code": "vital-signs"}]}]])),
        "code": {"coding": [{"system": draw(st.sampled_from(["http://loinc.org"] * 4 + ["http://snomed.info/sct"])), "code": code}]},
        "subject": {"reference": draw(st.sampled_from(["Patient/p1", "Patient/p2", "Device/d1", "Patient/" + "x" * 70]))},
        "effectiveDateTime": draw(st.sampled_from(["2026-01-14T10:00:00Z", "2026-01-14T11:00:00+01:00"]) | instants()),
    }
    if draw(st.booleans()):
        resource["id"] = draw(st.sampled_from(["o1", "o2", "o3"]) | st.text(max_size=140))
    if draw(st.booleans()):
        resource["status"] = draw(st.sampled_from(["final", "amended", "cancelled", "entered-in-error", "x"]))
    if code in PANELS or draw(st.booleans()):
        parts = draw(st.lists(st.sampled_from(["8480-6", "8462-4", "8478-0", "8867-4", "9999-9"]), max_size=4))
        resource["component"] = [
            {"code": {"coding": [{"system": "http://loinc.org", "code": c}]},
             "valueQuantity": {"value": draw(edge_numbers()), "system": "http://unitsofmeasure.org",
                               "code": draw(units_for("sbp"))}}
            for c in parts
        ]
    if draw(st.integers(0, 9)) > 0:
        resource["valueQuantity"] = quantity
    return resource


@st.composite
def fhir_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A single Observation or a Bundle of 0–8 of them (a MessageHeader sometimes first)."""
    if draw(st.booleans()):
        return draw(fhir_observations())
    entries = [{"resource": r} for r in draw(st.lists(fhir_observations(), max_size=8))]
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), {"resource": {"resourceType": "MessageHeader"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": draw(st.sampled_from(["collection", "message", "batch", "searchset"])),
                              "entry": entries}
    if draw(st.booleans()):
        bundle["id"] = draw(st.sampled_from(["b1", "", "b" * 80]))
    return bundle


@st.composite
def native_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """vitals.v1 or labs.v1 with every field drawn from plausible, edge and wrong values."""
    kind = draw(st.sampled_from(["vitals", "labs"]))
    doc: dict[str, Any] = {
        "event_id": draw(st.sampled_from(["e1", ""]) | st.text(max_size=130)),
        "patient_id": draw(st.sampled_from(["p1", "bed-7:icu.2", "p" * 64, "p" * 65, "p 1", "p1\n"]) | st.text(max_size=70)),
        "observed_at": draw(instants()),
    }
    if kind == "vitals":
        for v in VITALS:
            if draw(st.booleans()):
                if v.name == "consciousness":
                    doc[v.name] = draw(st.sampled_from(["A", "C", "V", "P", "U", "a", "X", 0, None]))
                elif v.name == "on_oxygen":
                    doc[v.name] = draw(st.sampled_from([True, False, 0, 1, "true", None]))
                else:
                    doc[v.name] = draw(edge_numbers())
    else:
        labs = st.sampled_from([code for lab in LABS for code in (lab.name, *lab.loinc)] + ["x", ""])
        doc["results"] = [
            {"code": c, "value": draw(edge_numbers()), "unit": draw(units_for(BY_NAME[c].name if c in BY_NAME else "lactate"))}
            for c in draw(st.lists(labs, max_size=5))
        ]
    return kind, doc


@st.composite
def encounter_documents(draw: st.DrawFn) -> dict[str, Any]:
    """encounters.v1 of any kind, every field drawn from valid, edge and wrong values (another
    kind's fields included), so each kind's validation and the age from a birth date run."""
    time_fields = {"admission": "admitted_at", "transfer": "transferred_at", "discharge": "discharged_at"}
    kind = draw(st.sampled_from([*time_fields, "admit", None]))
    at = time_fields.get(str(kind), "admitted_at") if draw(st.booleans()) else draw(st.sampled_from(list(time_fields.values())))
    doc: dict[str, Any] = {"event_id": draw(st.sampled_from(["a1", ""]) | st.text(max_size=130)),
                           "patient_id": draw(st.sampled_from(["p1", "p 1", "p" * 65])), at: draw(instants())}
    if kind is not None:
        doc["kind"] = kind
    optional = {
        "unit": st.sampled_from(["ward", "step_down", "icu", "ICU", 1, None]),
        "age": edge_numbers() | st.sampled_from([0, 125, 125.0001, -0.0, 300]),
        "birth_date": st.sampled_from(["1949-12-31", "2000-02-29", "2001-02-29", "1850-01-01", "2099-01-01", "1950", ""])
        | st.dates().map(str),
        "sex": st.sampled_from(["female", "male", "other", "unknown", "F", None]),
        "disposition": st.sampled_from(["home", "other_facility", "died", "dead", None]),
        "source": st.sampled_from(["adt", ""]),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(values)
    return doc


def check_verdict(kind: str, raw: bytes) -> None:
    """The property every fuzz test asserts: a well-formed refusal or observations within the
    contract, and either way within the time bound."""
    exc, observations, took = refusal(kind, raw)
    if exc is not None:
        assert_well_formed(exc)
    else:
        assert_within_contract(observations)
    assert took < MAX_DECODE_S, f"{took:.2f} s for {len(raw)} bytes"


@FUZZ
@given(mutated())
def test_corrupted_valid_messages(case: tuple[str, bytes]) -> None:
    check_verdict(*case)


@FUZZ
@given(native_documents())
def test_native_messages_from_edge_values(case: tuple[str, dict[str, Any]]) -> None:
    kind, doc = case
    check_verdict(kind, orjson.dumps(doc))


@FUZZ
@given(fhir_documents())
def test_fhir_documents_through_decode_and_the_mapper(document: dict[str, Any]) -> None:
    raw = orjson.dumps(document)
    check_verdict("fhir", raw)
    try:
        resource = FHIR_DOCUMENT.validate_python(orjson.loads(raw))
    except ValidationError:
        return
    started = time.perf_counter()
    try:
        observations = observations_from_fhir(resource, raw=raw, now=NOW)
    except ContractError as exc:
        assert_well_formed(exc)
    else:
        assert_within_contract(observations)
        assert len({(o.patient_id, o.observed_ts) for o in observations}) == len(observations), "one per (patient, instant)"
    assert time.perf_counter() - started < MAX_DECODE_S


@FUZZ
@given(encounter_documents())
def test_encounters_from_edge_values(doc: dict[str, Any]) -> None:
    check_verdict("encounters", orjson.dumps(doc))


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(KINDS), size=st.integers(200_000, 999_000), byte=st.sampled_from([b"[", b"{", b" ", b"9", b'"', b"\\"]))
def test_large_payloads_under_the_limit_are_judged_in_bounded_time(kind: str, size: int, byte: bytes) -> None:
    """Just under the size limit, a payload is parsed: it must still be refused quickly."""
    check_verdict(kind, byte * size)
