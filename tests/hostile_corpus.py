"""A corpus of hostile and broken input messages, each with the reason it must be refused for.

Interface engines, bedside gateways and hand-written integrations send every kind of wrong:
truncated JSON, strings where numbers belong, NaN, a heart rate of 900, a lab code nobody
knows, a 1.5 MB note, a 100 000-deep array, bytes that are not UTF-8, a monitor whose clock
says 1970, a patient id of a kilobyte, a FHIR Patient on the Observation topic. Every message
here must be refused by ``schemas.decode`` with a ContractError whose errors name the field
(``field``) and say what was wrong (``problem`` is a substring of the wording) — the unit test
(tests/test_hostile_input.py) checks that, and the stream test
(tests/integration/test_hostile_stream.py) sends the whole corpus through a real worker.

``hostile_corpus`` holds the observation topics' messages (kinds vitals, labs, fhir);
``encounter_corpus`` the encounters topic's (kind encounters: an age of 300, a birth date in
the future, a discharge "dead", a FHIR Encounter that is only planned, ...); ``outcome_corpus``
the outcomes topic's (a kind "fever", a source "rumour", a record dated before its event, ...).
``BadMessage.kind``
is the decode kind and the key of the stream test's ``topics`` fixture.

The corpus is generated rather than stored: future timestamps must be in the future of the
clock the worker uses, and the > 1 MB payloads would bloat the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import orjson

from schemas.decode import DEFAULT_MAX_BYTES, Kind
from schemas.variables import LABS, VITALS

#: The Kafka key every hostile message is sent with (its payload may name no patient at all).
HOSTILE_KEY = "hostile-bed-1"

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class BadMessage:
    """One refused message: the topic kind it is sent on, its bytes, and the expected reason."""

    category: str
    name: str
    kind: Kind
    raw: bytes
    field: str  # the FieldError.field one of the errors must carry
    problem: str  # a substring of that error's problem

    @property
    def label(self) -> str:
        return f"{self.category}: {self.name} ({self.kind})"


def _iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _Bases:
    """Valid messages of each kind, observed a minute before ``now``, to be broken one way each."""

    def __init__(self, now: float) -> None:
        self.now = datetime.fromtimestamp(now, timezone.utc)
        self.observed_at = _iso(self.now - timedelta(minutes=1))

    def vitals(self, **changes: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "event_id": "hostile-v", "patient_id": HOSTILE_KEY, "observed_at": self.observed_at,
            "heart_rate": 88, "resp_rate": 18, "spo2": 96, "temperature": 37.2, "sbp": 118, "dbp": 74,
            "map": 89, "consciousness": "A", "on_oxygen": False, "source": "monitor-7",
        }
        return _changed(doc, changes)

    def labs(self, **changes: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "event_id": "hostile-l", "patient_id": HOSTILE_KEY, "observed_at": self.observed_at,
            "results": [{"code": "lactate", "value": 1.4, "unit": "mmol/L"}],
        }
        return _changed(doc, changes)

    def result(self, **changes: Any) -> dict[str, Any]:
        return self.labs(results=[_changed({"code": "creatinine", "value": 88.0, "unit": "umol/L"}, changes)])

    def observation(self, **changes: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "resourceType": "Observation", "id": "hostile-f", "status": "final",
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{HOSTILE_KEY}"},
            "effectiveDateTime": self.observed_at,
            "valueQuantity": {"value": 91, "unit": "/min", "system": UCUM, "code": "/min"},
        }
        return _changed(doc, changes)

    def bundle(self, *entries: dict[str, Any], **changes: Any) -> dict[str, Any]:
        doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": e} for e in entries]}
        return _changed(doc, changes)

    def valid(self, kind: Kind) -> dict[str, Any]:
        return {"vitals": self.vitals, "labs": self.labs, "fhir": self.observation,
                "encounters": self.admission}[kind]()

    def admission(self, **changes: Any) -> dict[str, Any]:
        doc = {"event_id": "hostile-a", "patient_id": HOSTILE_KEY, "kind": "admission",
               "admitted_at": self.observed_at, "unit": "ward", "age": 67, "sex": "male", "source": "adt"}
        return _changed(doc, changes)

    def transfer(self, **changes: Any) -> dict[str, Any]:
        doc = {"event_id": "hostile-t", "patient_id": HOSTILE_KEY, "kind": "transfer",
               "transferred_at": self.observed_at, "unit": "icu"}
        return _changed(doc, changes)

    def discharge(self, **changes: Any) -> dict[str, Any]:
        doc = {"event_id": "hostile-d", "patient_id": HOSTILE_KEY, "kind": "discharge",
               "discharged_at": self.observed_at, "disposition": "home"}
        return _changed(doc, changes)

    def outcome(self, **changes: Any) -> dict[str, Any]:
        """An outcomes.v1 sepsis onset a minute ago, adjudicated."""
        doc = {"event_id": "hostile-o", "patient_id": HOSTILE_KEY, "kind": "sepsis_onset",
               "occurred_at": self.observed_at, "source": "adjudicated"}
        return _changed(doc, changes)

    def encounter(self, **changes: Any) -> dict[str, Any]:
        """A FHIR Encounter: in progress on a ward since a minute ago."""
        doc = {"resourceType": "Encounter", "id": "hostile-e", "status": "in-progress",
               "subject": {"reference": f"Patient/{HOSTILE_KEY}"}, "period": {"start": self.observed_at},
               "location": [{"location": {"reference": "Location/ward-7"}, "status": "active",
                             "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "wa"}]}}]}
        return _changed(doc, changes)


def _changed(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``changes`` applied; a change to ``DROP`` removes the field."""
    out = dict(doc)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


DROP = object()
KINDS: tuple[Kind, ...] = ("vitals", "labs", "fhir")


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc)


def hostile_corpus(now: float) -> list[BadMessage]:
    """Every hostile observation message (vitals, labs, FHIR Observations), for a consumer
    whose clock reads ``now`` (POSIX seconds)."""
    return _built(_CATEGORIES, now)


def encounter_corpus(now: float) -> list[BadMessage]:
    """Every hostile message of the encounters topic (kind ``encounters``: encounters.v1 and
    FHIR Encounters), sent on ``topics["encounters"]``; apart from hostile_corpus because the
    unit tests of the observation decoders read that one alone."""
    return _built(_ENCOUNTER_CATEGORIES, now)


def outcome_corpus(now: float) -> list[BadMessage]:
    """Every hostile message of the outcomes topic (kind ``outcomes``), sent on ``topics["outcomes"]``."""
    return _built((_outcomes,), now)


def _built(builders: tuple[Builder, ...], now: float) -> list[BadMessage]:
    bases = _Bases(now)
    messages = [m for build in builders for m in build(bases)]
    names = [m.label for m in messages]
    assert len(names) == len(set(names)), "corpus labels must be unique"
    return messages


Builder = Callable[[_Bases], Iterator[BadMessage]]


def _malformed_json(b: _Bases) -> Iterator[BadMessage]:
    for kind in KINDS:
        text = _json(b.valid(kind))
        for cut in (1, 2, len(text) // 3, len(text) // 2, len(text) - 1):
            yield BadMessage("malformed JSON", f"truncated at byte {cut}", kind, text[:cut], "$", "malformed JSON")
        for name, raw in (
            ("empty payload", b""),
            ("whitespace only", b"  \n\t "),
            ("single quotes", text.replace(b'"', b"'")),
            ("trailing comma", text[:-1] + b",}"),
            ("comment", text[:-1] + b" // trailing comment\n}"),
            ("two documents", text + text),
            ("byte order mark", b"\xef\xbb\xbf" + text),
            ("NUL byte", b"\x00"),
            ("lone surrogate escape", text[:-1] + b',"source":"\\ud800"}'),
            ("XML instead of JSON", b"<Observation><status value='final'/></Observation>"),
            ("HL7 v2 instead of JSON", b"MSH|^~\\&|MONITOR|ICU|||202601050800||ORU^R01|1|P|2.5\rOBX|1|NM|8867-4^HR^LN||88|/min"),
        ):
            yield BadMessage("malformed JSON", name, kind, raw, "$", "malformed JSON")


def _invalid_utf8(b: _Bases) -> Iterator[BadMessage]:
    bad_bytes = {
        "0xFF byte": b"\xff",
        "truncated 2-byte sequence": b"\xc3",
        "overlong encoding": b"\xc0\xaf",
        "UTF-16 surrogate as UTF-8": b"\xed\xa0\x80",
        "Latin-1 text": "Müller".encode("latin-1"),
    }
    for kind in KINDS:
        text = _json(b.valid(kind))
        for name, chunk in bad_bytes.items():
            raw = text[:-1] + b',"note":"' + chunk + b'"}'
            yield BadMessage("invalid UTF-8", name, kind, raw, "$", "invalid UTF-8")


def _non_finite(b: _Bases) -> Iterator[BadMessage]:
    """JSON has no NaN or Infinity; senders that write them (JavaScript, pandas) are refused
    at the parser, and a number too large for a double is refused the same way."""
    literals = {"NaN": b"NaN", "Infinity": b"Infinity", "-Infinity": b"-Infinity", "1e999": b"1e999"}
    numeric = [v.name for v in VITALS if v.name not in ("consciousness", "on_oxygen")]
    for name in numeric:
        for label, literal in literals.items():
            raw = _json(b.vitals(**{name: 0}))
            raw = raw.replace(f'"{name}":0'.encode(), f'"{name}":'.encode() + literal)
            yield BadMessage("NaN/Infinity", f"{name} = {label}", "vitals", raw, "$", "malformed JSON")
    for label, literal in literals.items():
        raw = _json(b.labs(results=[{"code": "lactate", "value": 0, "unit": "mmol/L"}]))
        yield BadMessage("NaN/Infinity", f"lab value = {label}", "labs",
                         raw.replace(b'"value":0', b'"value":' + literal), "$", "malformed JSON")
        obs = _json(b.observation(valueQuantity={"value": 0, "system": UCUM, "code": "/min"}))
        yield BadMessage("NaN/Infinity", f"valueQuantity.value = {label}", "fhir",
                         obs.replace(b'"value":0', b'"value":' + literal), "$", "malformed JSON")


def _wrong_types(b: _Bases) -> Iterator[BadMessage]:
    cases: list[tuple[str, Kind, dict[str, Any], str, str]] = [
        ("heart_rate as string", "vitals", b.vitals(heart_rate="88"), "heart_rate", "must be a number"),
        ("heart_rate as boolean", "vitals", b.vitals(heart_rate=True), "heart_rate", "must be a number"),
        ("heart_rate as list", "vitals", b.vitals(heart_rate=[88]), "heart_rate", "must be a number"),
        ("heart_rate as object", "vitals", b.vitals(heart_rate={"value": 88}), "heart_rate", "must be a number"),
        ("spo2 as string with unit", "vitals", b.vitals(spo2="96 %"), "spo2", "must be a number"),
        ("temperature as string", "vitals", b.vitals(temperature="37,2"), "temperature", "must be a number"),
        ("sbp as string", "vitals", b.vitals(sbp="118/74"), "sbp", "must be a number"),
        ("consciousness as number", "vitals", b.vitals(consciousness=0), "consciousness", "must be one of"),
        ("consciousness lower case", "vitals", b.vitals(consciousness="a"), "consciousness", "must be one of"),
        ("consciousness as GCS", "vitals", b.vitals(consciousness="GCS15"), "consciousness", "must be one of"),
        ("on_oxygen as string", "vitals", b.vitals(on_oxygen="yes"), "on_oxygen", "must be true or false"),
        ("on_oxygen as number", "vitals", b.vitals(on_oxygen=1), "on_oxygen", "must be true or false"),
        ("fio2 as string with unit", "vitals", b.vitals(fio2="40%"), "fio2", "must be a number"),
        ("etco2 as string", "vitals", b.vitals(etco2="38 mmHg"), "etco2", "must be a number"),
        ("event_id as number", "vitals", b.vitals(event_id=1234), "event_id", "must be a string"),
        ("patient_id as number", "vitals", b.vitals(patient_id=42), "patient_id", "must be a string"),
        ("observed_at as epoch number", "vitals", b.vitals(observed_at=1767600000), "observed_at", "bad timestamp"),
        ("source as object", "vitals", b.vitals(source={"device": "x"}), "source", "must be a string"),
        ("results as object", "labs", b.labs(results={"code": "lactate"}), "results", "must be a JSON array"),
        ("results as string", "labs", b.labs(results="lactate 1.4"), "results", "must be a JSON array"),
        ("result as string", "labs", b.labs(results=["lactate 1.4"]), "results[0]", "must be a JSON object"),
        ("lab value as string", "labs", b.result(value="88"), "results[0].value", "must be a number"),
        ("lab value as boolean", "labs", b.result(value=False), "results[0].value", "must be a number"),
        ("lab code as number", "labs", b.result(code=2160), "results[0].code", "must be a string"),
        ("lab unit as number", "labs", b.result(unit=1), "results[0].unit", "must be a string"),
        ("event_id as list", "labs", b.labs(event_id=["a"]), "event_id", "must be a string"),
        ("valueQuantity.value as string", "fhir",
         b.observation(valueQuantity={"value": "91", "system": UCUM, "code": "/min"}), "valueQuantity.value", "must be a number"),
        ("subject as string", "fhir", b.observation(subject=f"Patient/{HOSTILE_KEY}"), "subject", "must be a JSON object"),
        ("code as string", "fhir", b.observation(code="8867-4"), "code", "must be a JSON object"),
        ("category as object", "fhir", b.observation(category={"coding": []}), "category", "must be a JSON array"),
        ("entry as object", "fhir", b.bundle(entry={"resource": b.observation()}), "entry", "must be a JSON array"),
    ]
    for name, kind, doc, field, problem in cases:
        yield BadMessage("wrong type", name, kind, _json(doc), field, problem)
    for kind in KINDS:
        for label, raw in (("array", b"[]"), ("number", b"42"), ("string", b'"hello"'), ("null", b"null"), ("true", b"true")):
            yield BadMessage("wrong type", f"top level {label}", kind, raw, "$", "must be a JSON object")


def _missing_fields(b: _Bases) -> Iterator[BadMessage]:
    for field in ("event_id", "patient_id", "observed_at"):
        for kind, doc in (("vitals", b.vitals(**{field: DROP})), ("labs", b.labs(**{field: DROP}))):
            yield BadMessage("missing field", field, kind, _json(doc), field, "required field is missing")
    no_measurement = {v.name: DROP for v in VITALS}
    yield BadMessage("missing field", "every measurement", "vitals", _json(b.vitals(**no_measurement)), "$", "no measurement")
    yield BadMessage("missing field", "measurements all null", "vitals",
                     _json(b.vitals(**{v.name: None for v in VITALS})), "$", "no measurement")
    yield BadMessage("missing field", "results", "labs", _json(b.labs(results=DROP)), "results", "required field is missing")
    yield BadMessage("missing field", "results empty", "labs", _json(b.labs(results=[])), "results", "at least 1 item")
    for field in ("code", "value", "unit"):
        yield BadMessage("missing field", f"result {field}", "labs", _json(b.result(**{field: DROP})),
                         f"results[0].{field}", "required field is missing")
    for field in ("resourceType", "category", "code", "subject", "effectiveDateTime", "valueQuantity"):
        yield BadMessage("missing field", field, "fhir", _json(b.observation(**{field: DROP})), field, "required field is missing")
    yield BadMessage("missing field", "subject.reference", "fhir", _json(b.observation(subject={})),
                     "subject.reference", "required field is missing")
    yield BadMessage("missing field", "valueQuantity.system", "fhir",
                     _json(b.observation(valueQuantity={"value": 91, "code": "/min"})), "valueQuantity.system", "required field is missing")
    yield BadMessage("missing field", "bundle entry", "fhir", _json(b.bundle(entry=DROP)), "entry", "required field is missing")
    yield BadMessage("missing field", "bundle entries empty", "fhir", _json(b.bundle()), "entry", "at least 1 item")
    yield BadMessage("missing field", "blood pressure panel without components", "fhir",
                     _json(b.observation(code={"coding": [{"system": LOINC, "code": "85354-9"}]}, valueQuantity=DROP)),
                     "component", "required for a panel")


def _impossible_values(b: _Bases) -> Iterator[BadMessage]:
    """Values no living patient shows are refused, never clipped, through every door."""
    for v in VITALS:
        if v.name in ("consciousness", "on_oxygen"):
            continue
        for label, value in (("below", v.low - max(1.0, v.low * 0.5)), ("above", v.high * 3), ("negative", -v.high)):
            yield BadMessage("impossible value", f"{v.name} {label} range", "vitals",
                             _json(b.vitals(**{v.name: value})), v.name, "out of plausible range")
    for lab in LABS:
        low = ("negative", -1.0) if lab.low >= 0 else ("below", lab.low - 1.0)  # base excess
        for label, value in (("above", lab.high * 10), low):
            yield BadMessage("impossible value", f"{lab.name} {label} range", "labs",
                             _json(b.labs(results=[{"code": lab.name, "value": value, "unit": lab.unit}])),
                             "results[0].value", "out of plausible range")
    yield BadMessage("impossible value", "HR 900 in FHIR", "fhir",
                     _json(b.observation(valueQuantity={"value": 900, "system": UCUM, "code": "/min"})),
                     "valueQuantity.value", "out of plausible range")
    yield BadMessage("impossible value", "SpO2 140 % in FHIR", "fhir",
                     _json(b.observation(code={"coding": [{"system": LOINC, "code": "59408-5"}]},
                                         valueQuantity={"value": 140, "system": UCUM, "code": "%"})),
                     "valueQuantity.value", "out of plausible range")
    yield BadMessage("impossible value", "temperature 98.6 sent as Cel", "fhir",
                     _json(b.observation(code={"coding": [{"system": LOINC, "code": "8310-5"}]},
                                         valueQuantity={"value": 98.6, "system": UCUM, "code": "Cel"})),
                     "valueQuantity.value", "out of plausible range")
    yield BadMessage("impossible value", "creatinine 8800 umol/L", "labs",
                     _json(b.result(value=8800.0)), "results[0].value", "out of plausible range")
    yield BadMessage("impossible value", "conflicting values at one instant", "labs",
                     _json(b.labs(results=[{"code": "lactate", "value": 1.0, "unit": "mmol/L"},
                                           {"code": "lactate", "value": 9.0, "unit": "mmol/L"}])),
                     "results[1].value", "conflicts with")
    yield from _impossible_new_values(b)


def _impossible_new_values(b: _Bases) -> Iterator[BadMessage]:
    """FiO2 between its two forms, oxygen that contradicts itself, and the new labs' classic
    unit slips (a fraction sent as a percentage, mmol/L read as mg/dL, ng/L as ng/mL)."""
    for value in (5.0, 150.0):  # 5: neither a fraction (<= 1) nor a percentage (>= 21)
        yield BadMessage("impossible value", f"fio2 {value:g}", "vitals", _json(b.vitals(fio2=value)),
                         "fio2", "out of plausible range: a fraction 0.21–1 or a percentage 21–100")
    yield BadMessage("impossible value", "room air with fio2 0.4", "vitals",
                     _json(b.vitals(on_oxygen=False, fio2=0.4)), "on_oxygen", "conflicts with fio2")
    yield BadMessage("impossible value", "hematocrit 0.4 sent as %", "labs",
                     _json(b.labs(results=[{"code": "hematocrit", "value": 0.4, "unit": "%"}])),
                     "results[0].value", "out of plausible range 10–75 %")
    yield BadMessage("impossible value", "calcium 6 mmol/L", "labs",
                     _json(b.labs(results=[{"code": "2000-8", "value": 6, "unit": "mmol/L"}])),
                     "results[0].value", "(6 mmol/L = 24.05 mg/dL)")
    for name, code, value, unit, category in (
        ("FiO2 40 sent as a fraction", "3150-0", 40, "1", "vital-signs"),
        ("EtCO2 40 kPa", "19891-1", 40, "kPa", "vital-signs"),
        ("SaO2 140 % in a lab result", "2708-6", 140, "%", "laboratory"),
        ("hs-troponin 900000 ng/L", "89579-7", 900_000, "ng/L", "laboratory"),
        ("pH 74", "2744-1", 74, "[pH]", "laboratory"),
    ):
        yield BadMessage("impossible value", f"{name} in FHIR", "fhir",
                         _json(b.observation(code={"coding": [{"system": LOINC, "code": code}]},
                                             category=[{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
                                             valueQuantity={"value": value, "system": UCUM, "code": unit})),
                         "valueQuantity.value", "out of plausible range")


def _unknown_codes_and_units(b: _Bases) -> Iterator[BadMessage]:
    for code in ("unobtanium", "troponin", "LACTATE", "2160-1", "", "lactate "):
        field, problem = ("results[0].code", "must not be empty") if code == "" else ("results[0].code", "unknown lab code")
        yield BadMessage("unknown code", f"lab code {code!r}", "labs",
                         _json(b.labs(results=[{"code": code, "value": 1.0, "unit": "mmol/L"}])), field, problem)
    for lab in LABS:
        yield BadMessage("unknown unit", f"{lab.name} in furlongs", "labs",
                         _json(b.labs(results=[{"code": lab.name, "value": 1.0, "unit": "[fur_us]"}])),
                         "results[0].unit", "cannot be converted")
    yield BadMessage("unknown unit", "empty unit", "labs", _json(b.result(unit="")), "results[0].unit", "must not be empty")
    for unit in ("bpm", "kg", "Hz"):
        yield BadMessage("unknown unit", f"heart rate in {unit}", "fhir",
                         _json(b.observation(valueQuantity={"value": 91, "system": UCUM, "code": unit})),
                         "valueQuantity.code", "cannot be converted")
    for name, code, unit in (("FiO2 as a flow", "3150-0", "L/min"), ("EtCO2 as a volume fraction", "19889-5", "%"),
                             ("urea mass under a urea code", "22664-7", "mg/dL")):
        yield BadMessage("unknown unit", f"{name} in FHIR", "fhir",
                         _json(b.observation(code={"coding": [{"system": LOINC, "code": code}]},
                                             valueQuantity={"value": 40, "system": UCUM, "code": unit})),
                         "valueQuantity.code", "cannot be converted")
    for code, unit in (("22664-7", "mg/dL"), ("ph", "%"), ("troponin_i", "ng/dL"), ("hematocrit", "L")):
        yield BadMessage("unknown unit", f"{code} in {unit}", "labs",
                         _json(b.labs(results=[{"code": code, "value": 1.0, "unit": unit}])),
                         "results[0].unit", "cannot be converted")
    yield BadMessage("unknown unit", "unit system not UCUM", "fhir",
                     _json(b.observation(valueQuantity={"value": 91, "system": "http://example.org/units", "code": "/min"})),
                     "valueQuantity.system", "must be one of")
    for code in ("0000-0", "1234-5", "85353-1", "3091-6"):  # 3091-6: urea mass, not BUN
        yield BadMessage("unknown code", f"LOINC {code}", "fhir",
                         _json(b.observation(code={"coding": [{"system": LOINC, "code": code}]})),
                         "code.coding[0].code", "not a variable vitalwatch uses")
    yield BadMessage("unknown code", "SNOMED only", "fhir",
                     _json(b.observation(code={"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]})),
                     "code.coding", "no LOINC coding")
    yield BadMessage("unknown code", "LOINC codings that disagree", "fhir",
                     _json(b.observation(code={"coding": [{"system": LOINC, "code": "8867-4"}, {"system": LOINC, "code": "9279-1"}]})),
                     "code.coding", "name different variables")
    yield BadMessage("unknown code", "misspelt measurement", "vitals", _json(b.vitals(heartrate=88)), "heartrate", "did you mean 'heart_rate'")
    yield BadMessage("unknown code", "unknown field", "vitals", _json(b.vitals(blood_sugar=5.5)), "blood_sugar", "unknown field")
    yield BadMessage("unknown code", "unknown field in a result", "labs",
                     _json(b.labs(results=[{"code": "lactate", "value": 1.0, "unit": "mmol/L", "flag": "H"}])),
                     "results[0].flag", "unknown field")
    yield BadMessage("unknown code", "schema version", "vitals", _json(b.vitals(schema="vitals.v2")), "schema", "must be one of")


def _oversize(b: _Bases) -> Iterator[BadMessage]:
    over = DEFAULT_MAX_BYTES + 1
    filler = "x" * over
    yield BadMessage("oversize payload", "1 MB note", "vitals", _json(b.vitals(note=filler)), "$", "over the limit")
    yield BadMessage("oversize payload", "1 MB of results", "labs",
                     _json(b.labs(results=[{"code": "lactate", "value": 1.0, "unit": "mmol/L"}] * (over // 40))),
                     "$", "over the limit")
    yield BadMessage("oversize payload", "1 MB of whitespace", "fhir", b" " * over + _json(b.observation()), "$", "over the limit")
    yield BadMessage("oversize payload", "1.5 MB bundle", "fhir",
                     _json(b.bundle(*[b.observation(id=f"o{i}") for i in range(4000)])), "$", "over the limit")


def _deep_nesting(b: _Bases) -> Iterator[BadMessage]:
    for kind in KINDS:
        for depth in (1_100, 100_000):  # beyond the parser's depth limit (1024)
            yield BadMessage("deep nesting", f"{depth}-deep arrays", kind, b"[" * depth + b"]" * depth, "$", "depth limit exceeded")
            yield BadMessage("deep nesting", f"{depth}-deep objects", kind, b'{"a":' * depth + b"1" + b"}" * depth, "$", "depth limit exceeded")
        yield BadMessage("deep nesting", "1000-deep arrays (within the parser's limit)", kind, b"[" * 1000 + b"]" * 1000, "$", "must be a JSON object")
    deep = b"[" * 500 + b"]" * 500
    yield BadMessage("deep nesting", "500-deep array as heart_rate", "vitals",
                     _json(b.vitals(heart_rate=0)).replace(b'"heart_rate":0', b'"heart_rate":' + deep), "heart_rate", "must be a number")
    yield BadMessage("deep nesting", "500-deep array as results", "labs",
                     _json(b.labs(results=0)).replace(b'"results":0', b'"results":' + deep), "results[0]", "must be a JSON object")
    yield BadMessage("deep nesting", "500-deep array as subject", "fhir",
                     _json(b.observation(subject=0)).replace(b'"subject":0', b'"subject":' + deep), "subject", "must be a JSON object")


def _timestamps(b: _Bases) -> Iterator[BadMessage]:
    future = {"1 hour ahead": timedelta(hours=1), "1 year ahead": timedelta(days=365), "year 9999": None}
    ancient = {"1970 epoch": "1970-01-01T00:00:00Z", "1999-12-31": "1999-12-31T23:59:59Z", "1900": "1900-01-01T00:00:00+01:00"}
    for label, ahead in future.items():
        at = "9999-12-31T23:59:59Z" if ahead is None else _iso(b.now + ahead)
        yield BadMessage("future timestamp", label, "vitals", _json(b.vitals(observed_at=at)), "observed_at", "in the future")
        yield BadMessage("future timestamp", label, "labs", _json(b.labs(observed_at=at)), "observed_at", "in the future")
        yield BadMessage("future timestamp", label, "fhir", _json(b.observation(effectiveDateTime=at)), "effectiveDateTime", "in the future")
    for label, at in ancient.items():
        yield BadMessage("ancient timestamp", label, "vitals", _json(b.vitals(observed_at=at)), "observed_at", "before 2000-01-01")
        yield BadMessage("ancient timestamp", label, "labs", _json(b.labs(observed_at=at)), "observed_at", "before 2000-01-01")
        yield BadMessage("ancient timestamp", label, "fhir", _json(b.observation(effectiveDateTime=at)), "effectiveDateTime", "before 2000-01-01")
    malformed = {
        "no offset": ("2026-01-05T08:00:00", "no UTC offset"),
        "date only": ("2026-01-05", "not RFC 3339"),
        "words": ("yesterday at noon", "not RFC 3339"),
        "month 13": ("2026-13-05T08:00:00Z", "month value is outside"),
        "February 30": ("2026-02-30T08:00:00Z", "bad timestamp"),
        "hour 25": ("2026-01-05T25:00:00Z", "bad timestamp"),
        "US format": ("01/05/2026 08:00", "not RFC 3339"),
        "empty": ("", "not RFC 3339"),
    }
    for label, (at, problem) in malformed.items():
        yield BadMessage("bad timestamp", label, "vitals", _json(b.vitals(observed_at=at)), "observed_at", problem)
        yield BadMessage("bad timestamp", label, "fhir", _json(b.observation(effectiveDateTime=at)), "effectiveDateTime", problem)


def _identifiers(b: _Bases) -> Iterator[BadMessage]:
    bad_ids = {
        "65 characters": "p" * 65,
        "1 kB": "p" * 1024,
        "empty": "",
        "space": "bed 1",
        "slash": "ward/bed1",
        "newline": "bed1\nINFO forged log line",
        "trailing newline": "bed1\n",
        "non-ASCII": "bett-ü1",
        "SQL": "1';DROP TABLE patients;--",
        "Redis key glob": "bed*",
    }
    for label, pid in bad_ids.items():
        yield BadMessage("bad patient id", label, "vitals", _json(b.vitals(patient_id=pid)), "patient_id", "must match")
        yield BadMessage("bad patient id", label, "labs", _json(b.labs(patient_id=pid)), "patient_id", "must match")
        yield BadMessage("bad patient id", label, "fhir", _json(b.observation(subject={"reference": f"Patient/{pid}"})),
                         "subject.reference", "must be 'Patient/<id>'")
    yield BadMessage("bad patient id", "subject is a Device", "fhir",
                     _json(b.observation(subject={"reference": "Device/monitor-7"})), "subject.reference", "must be 'Patient/<id>'")
    yield BadMessage("bad patient id", "subject is a Group", "fhir",
                     _json(b.observation(subject={"reference": "Group/ward-7"})), "subject.reference", "must be 'Patient/<id>'")
    yield BadMessage("bad event id", "empty", "vitals", _json(b.vitals(event_id="")), "event_id", "must not be empty")
    yield BadMessage("bad event id", "129 characters", "labs", _json(b.labs(event_id="e" * 129)), "event_id", "at most 128 characters")
    yield BadMessage("bad event id", "1 kB resource id", "fhir", _json(b.observation(id="e" * 1024)), "id", "at most 128 characters")
    yield BadMessage("bad source", "1 kB source", "vitals", _json(b.vitals(source="s" * 1024)), "source", "at most 128 characters")


def _fhir_wrong_resource(b: _Bases) -> Iterator[BadMessage]:
    for resource in ("Patient", "Encounter", "MedicationRequest", "DiagnosticReport", "OperationOutcome", "observation"):
        yield BadMessage("FHIR wrong resource", resource, "fhir",
                         _json({"resourceType": resource, "id": "x1", "subject": {"reference": f"Patient/{HOSTILE_KEY}"}}),
                         "resourceType", "must be one of 'Observation', 'Bundle'")
    yield BadMessage("FHIR wrong resource", "Patient in a Bundle", "fhir",
                     _json(b.bundle(entry=[{"resource": {"resourceType": "Patient", "id": "x1"}}])),
                     "entry[0].resource.resourceType", "must be one of")
    yield BadMessage("FHIR wrong resource", "MessageHeader not first", "fhir",
                     _json(b.bundle(b.observation(), {"resourceType": "MessageHeader"}, type="message")),
                     "entry[1].resource.resourceType", "only allowed as the first entry")
    yield BadMessage("FHIR wrong resource", "searchset Bundle", "fhir",
                     _json(b.bundle(b.observation(), type="searchset")), "type", "must be one of")
    yield BadMessage("FHIR wrong resource", "vitals.v1 on the FHIR topic", "fhir", _json(b.vitals()), "resourceType", "required field is missing")
    yield BadMessage("FHIR wrong resource", "FHIR on the vitals topic", "vitals", _json(b.observation()), "resourceType", "unknown field")
    yield BadMessage("FHIR wrong resource", "labs.v1 on the vitals topic", "vitals", _json(b.labs()), "results", "unknown field")
    for category in ("imaging", "social-history", "survey"):
        yield BadMessage("FHIR wrong resource", f"category {category}", "fhir",
                         _json(b.observation(category=[{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}])),
                         "category", "must include a coding")
    for status in ("cancelled", "entered-in-error", "registered", "unknown"):
        yield BadMessage("FHIR wrong resource", f"status {status}", "fhir", _json(b.observation(status=status)), "status", "must be one of")


_CATEGORIES: tuple[Builder, ...] = (
    _malformed_json, _invalid_utf8, _non_finite, _wrong_types, _missing_fields, _impossible_values,
    _unknown_codes_and_units, _oversize, _deep_nesting, _timestamps, _identifiers, _fhir_wrong_resource,
)


# -- the encounters topic ----------------------------------------------------------------------

ENCOUNTERS: Kind = "encounters"


def _encounter_syntax(b: _Bases) -> Iterator[BadMessage]:
    """Bytes that are no encounter: truncated, not UTF-8, not JSON, an HL7 v2 ADT, too big, too deep."""
    text = _json(b.admission())
    for cut in (1, len(text) // 2, len(text) - 1):
        yield BadMessage("malformed JSON", f"admission truncated at byte {cut}", ENCOUNTERS, text[:cut], "$", "malformed JSON")
    yield BadMessage("malformed JSON", "empty payload", ENCOUNTERS, b"", "$", "malformed JSON")
    yield BadMessage("malformed JSON", "HL7 v2 ADT^A01 instead of JSON", ENCOUNTERS,
                     b"MSH|^~\\&|ADT|HOSP|||202601050800||ADT^A01|1|P|2.5\rPID|1||MRN-1", "$", "malformed JSON")
    yield BadMessage("invalid UTF-8", "Latin-1 source", ENCOUNTERS,
                     text[:-1] + b',"source":"' + "Müller".encode("latin-1") + b'"}', "$", "invalid UTF-8")
    for label, raw in (("array", b"[]"), ("number", b"42"), ("null", b"null")):
        yield BadMessage("wrong type", f"top level {label}", ENCOUNTERS, raw, "$", "must be a JSON object")
    yield BadMessage("oversize payload", "1 MB note", ENCOUNTERS, _json(b.admission(note="x" * (DEFAULT_MAX_BYTES + 1))),
                     "$", "over the limit")
    yield BadMessage("deep nesting", "100000-deep arrays", ENCOUNTERS, b"[" * 100_000 + b"]" * 100_000, "$",
                     "depth limit exceeded")


def _encounter_fields(b: _Bases) -> Iterator[BadMessage]:
    cases: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("wrong type", "age as string", b.admission(age="67"), "age", "must be a number"),
        ("wrong type", "age as boolean", b.admission(age=True), "age", "must be a number"),
        ("wrong type", "unit as number", b.transfer(unit=3), "unit", "must be one of"),
        ("wrong type", "patient_id as number", b.discharge(patient_id=42), "patient_id", "must be a string"),
        ("wrong type", "admitted_at as epoch number", b.admission(admitted_at=1767600000), "admitted_at", "bad timestamp"),
        ("missing field", "kind", b.admission(kind=DROP), "kind", "required field is missing"),
        ("missing field", "admitted_at", b.admission(admitted_at=DROP), "admitted_at", "required field is missing"),
        ("missing field", "transferred_at", b.transfer(transferred_at=DROP), "transferred_at", "required field is missing"),
        ("missing field", "discharged_at", b.discharge(discharged_at=DROP), "discharged_at", "required field is missing"),
        ("missing field", "transfer unit", b.transfer(unit=DROP), "unit", "required field is missing"),
        ("missing field", "event_id", b.discharge(event_id=DROP), "event_id", "required field is missing"),
        ("impossible value", "age 300", b.admission(age=300), "age", "out of plausible range 0–125 years"),
        ("impossible value", "age -1", b.admission(age=-1), "age", "out of plausible range 0–125 years"),
        ("impossible value", "born 1850", b.admission(age=DROP, birth_date="1850-01-01"), "birth_date",
         "out of plausible range 0–125 years"),
        ("impossible value", "birth date in the future", b.admission(age=DROP, birth_date="2099-01-01"), "birth_date",
         "after admitted_at"),
        ("impossible value", "age and birth date both", b.admission(birth_date="1958-06-01"), "birth_date",
         "conflicts with age"),
        ("impossible value", "birth date 30 February", b.admission(age=DROP, birth_date="1958-02-30"), "birth_date",
         "bad date"),
        ("unknown code", "kind admit", b.admission(kind="admit"), "kind", "must be one of 'admission', 'transfer', 'discharge'"),
        ("unknown code", "unit ICU in capitals", b.transfer(unit="ICU"), "unit", "must be one of 'ward', 'step_down' or 'icu'"),
        ("unknown code", "unit intensive", b.admission(unit="intensive"), "unit", "must be one of"),
        ("unknown code", "disposition dead", b.discharge(disposition="dead"), "disposition",
         "must be one of 'home', 'other_facility' or 'died'"),
        ("unknown code", "sex F", b.admission(sex="F"), "sex", "must be one of"),
        ("unknown code", "misspelt time", b.admission(admitted_at=DROP, admited_at=b.observed_at), "admited_at",
         "did you mean 'admitted_at'"),
        ("unknown code", "disposition on an admission", b.admission(disposition="home"), "disposition",
         "belongs to kind 'discharge'"),
        ("unknown code", "schema version", b.discharge(schema="encounters.v2"), "schema", "must be one of"),
        ("bad patient id", "space", b.admission(patient_id="bed 1"), "patient_id", "must match"),
        ("bad patient id", "Redis key glob", b.discharge(patient_id="bed*"), "patient_id", "must match"),
        ("bad event id", "129 characters", b.transfer(event_id="e" * 129), "event_id", "at most 128 characters"),
    ]
    for category, name, doc, field, problem in cases:
        yield BadMessage(category, name, ENCOUNTERS, _json(doc), field, problem)


def _encounter_timestamps(b: _Bases) -> Iterator[BadMessage]:
    ahead = _iso(b.now + timedelta(hours=1))
    for kind, field in (("admission", "admitted_at"), ("transfer", "transferred_at"), ("discharge", "discharged_at")):
        doc = getattr(b, kind)(**{field: ahead})
        yield BadMessage("future timestamp", f"{kind} 1 hour ahead", ENCOUNTERS, _json(doc), field, "in the future")
        doc = getattr(b, kind)(**{field: "1970-01-01T00:00:00Z"})
        yield BadMessage("ancient timestamp", f"{kind} at the 1970 epoch", ENCOUNTERS, _json(doc), field, "before 2000-01-01")
    yield BadMessage("bad timestamp", "admission without offset", ENCOUNTERS,
                     _json(b.admission(admitted_at="2026-01-05T08:00:00")), "admitted_at", "no UTC offset")
    yield BadMessage("bad timestamp", "discharge date only", ENCOUNTERS,
                     _json(b.discharge(discharged_at="2026-01-05")), "discharged_at", "not RFC 3339")


def _fhir_encounters(b: _Bases) -> Iterator[BadMessage]:
    for status in ("planned", "cancelled", "entered-in-error", "onleave"):
        yield BadMessage("FHIR wrong resource", f"Encounter status {status}", ENCOUNTERS,
                         _json(b.encounter(status=status)), "status", "cannot be mapped")
    disposition = {"dischargeDisposition": {"coding": [{"system": DISCHARGE_DISPOSITION, "code": "dead"}]}}
    cases: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("FHIR wrong resource", "Observation on the encounters topic", b.observation(), "resourceType",
         "must be 'Encounter'"),
        ("FHIR wrong resource", "Bundle on the encounters topic", b.bundle(b.encounter()), "resourceType",
         "must be 'Encounter'"),
        ("missing field", "finished Encounter without period.end", b.encounter(status="finished"), "period.end",
         "required for a finished Encounter"),
        ("missing field", "in-progress Encounter without period", b.encounter(period=DROP), "period.start",
         "required for an in-progress Encounter"),
        ("impossible value", "Encounter ending before it starts",
         b.encounter(status="finished", period={"start": b.observed_at, "end": "2001-01-01T00:00:00Z"}),
         "period.end", "before period.start"),
        ("unknown code", "discharge-disposition dead",
         b.encounter(status="finished", period={"start": b.observed_at, "end": b.observed_at}, hospitalization=disposition),
         "hospitalization.dischargeDisposition.coding[0].code", "unknown discharge-disposition code"),
        ("unknown code", "transfer to a bed of no known kind",
         b.encounter(location=[{"location": {"reference": "Location/ward-7"}, "status": "completed"},
                               {"location": {"reference": "Location/bed-9"}, "status": "active",
                                "period": {"start": b.observed_at},
                                "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "bd"}]}}]),
         "location[1].physicalType", "no coding names a unit kind"),
        ("bad patient id", "Encounter of a Group", b.encounter(subject={"reference": "Group/ward-7"}),
         "subject.reference", "must be 'Patient/<id>'"),
        ("impossible value", "contained Patient who is someone else",
         b.encounter(contained=[{"resourceType": "Patient", "id": "someone-else", "gender": "male"}]),
         "contained[0].id", "not the subject"),
        ("future timestamp", "Encounter 1 hour ahead", b.encounter(period={"start": _iso(b.now + timedelta(hours=1))}),
         "period.start", "in the future"),
    ]
    for category, name, doc, field, problem in cases:
        yield BadMessage(category, name, ENCOUNTERS, _json(doc), field, problem)


_ENCOUNTER_CATEGORIES: tuple[Builder, ...] = (
    _encounter_syntax, _encounter_fields, _encounter_timestamps, _fhir_encounters,
)


# -- the outcomes topic ------------------------------------------------------------------------

OUTCOMES: Kind = "outcomes"


def _outcomes(b: _Bases) -> Iterator[BadMessage]:
    """outcomes.v1 broken one way each: what labels a score must be exactly what happened, when."""
    text = _json(b.outcome())
    yield BadMessage("malformed JSON", "outcome truncated", OUTCOMES, text[: len(text) // 2], "$", "malformed JSON")
    yield BadMessage("wrong type", "outcome as a list", OUTCOMES, b"[]", "$", "must be a JSON object")
    ahead = _iso(b.now + timedelta(hours=1))
    cases: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("unknown code", "kind fever", b.outcome(kind="fever"), "kind", "must be one of"),
        ("unknown code", "kind in capitals", b.outcome(kind="DEATH"), "kind", "must be one of"),
        ("unknown code", "source rumour", b.outcome(source="rumour"), "source", "must be one of"),
        ("unknown code", "misspelt time", b.outcome(occurred_at=DROP, occured_at=b.observed_at), "occured_at",
         "did you mean 'occurred_at'"),
        ("unknown code", "a value where none belongs", b.outcome(lactate=4.1), "lactate", "unknown field"),
        ("missing field", "occurred_at", b.outcome(occurred_at=DROP), "occurred_at", "required field is missing"),
        ("missing field", "kind", b.outcome(kind=DROP), "kind", "required field is missing"),
        ("missing field", "source", b.outcome(source=DROP), "source", "required field is missing"),
        ("wrong type", "occurred_at as epoch number", b.outcome(occurred_at=1767600000), "occurred_at", "bad timestamp"),
        ("future timestamp", "outcome 1 hour ahead", b.outcome(occurred_at=ahead), "occurred_at", "in the future"),
        ("ancient timestamp", "outcome at the 1970 epoch", b.outcome(occurred_at="1970-01-01T00:00:00Z"), "occurred_at",
         "before 2000-01-01"),
        ("bad timestamp", "outcome without offset", b.outcome(occurred_at="2026-01-05T08:00:00"), "occurred_at",
         "no UTC offset"),
        ("impossible value", "recorded before it occurred",
         b.outcome(recorded_at=_iso(b.now - timedelta(hours=2))), "recorded_at", "before occurred_at"),
        ("bad patient id", "Redis key glob", b.outcome(patient_id="bed*"), "patient_id", "must match"),
    ]
    for category, name, doc, field, problem in cases:
        yield BadMessage(category, name, OUTCOMES, _json(doc), field, problem)
