"""The committed JSON Schema files match the models; the generator and CLI behave."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import generate
from schemas.decode import decode
from schemas.errors import ContractError
from schemas.inputs import LAB_CODES
from schemas.variables import VITALS
from worker.tools.commands import schemas_cmd


def test_committed_files_match_the_models() -> None:
    assert generate.stale() == {}, "run `vitalwatch schemas --write` and commit the result"


def test_every_topic_has_a_file() -> None:
    files = sorted(p.stem for p in generate.JSONSCHEMA_DIR.glob("*.json"))
    assert files == sorted(generate.TOPICS)


def test_documents_state_the_contract() -> None:
    docs = generate.documents()
    assert all(d["$schema"] == generate.DRAFT for d in docs.values())
    vitals = docs["vitals"]
    assert vitals["additionalProperties"] is False
    assert vitals["required"] == ["event_id", "patient_id", "observed_at"]
    assert {"heart_rate", "consciousness", "on_oxygen", "schema", "source"} <= set(
        vitals["properties"]
    )
    assert vitals["properties"]["heart_rate"]["minimum"] == 20
    assert vitals["properties"]["observed_at"]["format"] == "date-time"
    assert len(vitals["anyOf"]) == len(VITALS)
    lab_result = docs["labs"]["$defs"]["LabResult"]
    assert lab_result["properties"]["code"]["enum"] == sorted(LAB_CODES)
    assert docs["fhir-observations"]["discriminator"]["propertyName"] == "resourceType"
    assert set(docs["alerts"]["properties"]) == {
        "alert_id", "patient_id", "level", "previous_level", "risk", "news2", "reasons", "raised_by",
        "triggered_by", "observed_at", "raised_at", "model_version",
    }
    assert docs["alerts"]["properties"]["raised_by"]["enum"] == ["model", "news2"]
    assert set(docs["risk-scores"]["properties"]) == {
        "event_id", "patient_id", "observed_at", "scored_at", "risk", "news2", "level",
        "model_version",
    }
    assert {"reason", "source", "original", "original_b64", "original_size", "original_sha256",
            "truncated", "received_at", "worker"} == set(docs["dead-letters"]["properties"])


def test_write_then_check_detects_drift(tmp_path: Path) -> None:
    written = generate.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{t}.json" for t in generate.TOPICS)
    assert generate.stale(tmp_path) == {}
    assert generate.write(tmp_path) == []

    alerts = tmp_path / "alerts.json"
    doc = json.loads(alerts.read_text())
    doc["properties"].pop("risk")
    alerts.write_text(json.dumps(doc))
    (tmp_path / "labs.json").unlink()
    assert sorted(generate.stale(tmp_path)) == ["alerts", "labs"]


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vitalwatch")
    schemas_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["schemas", *argv])


def test_cli_check_passes_on_the_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli(["--check"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert all(f"{topic} " in out for topic in generate.TOPICS)
    assert "STALE" not in out


def test_cli_check_fails_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli(["--check", "--directory", str(tmp_path)])
    assert args.func(args) == 1
    assert capsys.readouterr().out.count("STALE") == len(generate.TOPICS)
    assert generate.main(["--write", "--check", "--directory", str(tmp_path)]) == 0
    assert generate.stale(tmp_path) == {}


# -- the committed files judge documents as decode does ----------------------------------------

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "number": (int, float),
    "integer": (int,), "boolean": (bool,), "null": (type(None),),
}


def violations(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """What ``instance`` breaks in ``schema``: the draft 2020-12 keywords the generated files use
    (annotations such as title, format and OpenAPI's discriminator are not assertions)."""
    if "$ref" in schema:
        return violations(instance, root["$defs"][schema["$ref"].removeprefix("#/$defs/")], root)
    found: list[str] = []
    if "type" in schema and not _is_type(instance, schema["type"]):
        return [f"{instance!r} is not of type {schema['type']}"]
    if "enum" in schema and instance not in schema["enum"]:
        found.append(f"{instance!r} not in {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        found.append(f"{instance!r} is not {schema['const']!r}")
    if _is_type(instance, "number"):
        found += _number_violations(instance, schema)
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0) or len(instance) > schema.get("maxLength", len(instance)):
            found.append(f"{instance!r} has the wrong length")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            found.append(f"{instance!r} does not match {schema['pattern']}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            found.append("too few items")
        for item in instance if "items" in schema else ():
            found += violations(item, schema["items"], root)
    if isinstance(instance, dict):
        found += _object_violations(instance, schema, root)
    for branch in schema.get("allOf", ()):
        found += violations(instance, branch, root)
    if "anyOf" in schema and all(violations(instance, b, root) for b in schema["anyOf"]):
        found.append(f"matches none of anyOf: {instance!r}")
    if "oneOf" in schema and sum(not violations(instance, b, root) for b in schema["oneOf"]) != 1:
        found.append(f"matches not exactly one of oneOf: {instance!r}")
    if "not" in schema and not violations(instance, schema["not"], root):
        found.append(f"matches what it must not: {schema['not']}")
    return found


def _is_type(instance: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    return any(
        isinstance(instance, JSON_TYPES[name]) and not (isinstance(instance, bool) and name in ("number", "integer"))
        for name in names
    )


def _number_violations(value: float, schema: dict[str, Any]) -> list[str]:
    bounds = [("minimum", value >= schema.get("minimum", value)), ("maximum", value <= schema.get("maximum", value)),
              ("exclusiveMinimum", "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]),
              ("exclusiveMaximum", "exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"])]
    return [f"{value} breaks {name}" for name, ok in bounds if not ok]


def _object_violations(instance: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    found = [f"{name} is required" for name in schema.get("required", ()) if name not in instance]
    for name, value in instance.items():
        if name in properties:
            found += violations(value, properties[name], root)
        elif schema.get("additionalProperties") is False:
            found.append(f"{name} is not allowed")
    return found


ADMISSION = {"event_id": "adt-1", "patient_id": "MRN-1", "kind": "admission",
             "admitted_at": "2026-03-13T22:40:00+00:00", "unit": "ward", "age": 72, "sex": "female"}
TRANSFER = {"event_id": "adt-2", "patient_id": "MRN-1", "kind": "transfer",
            "transferred_at": "2026-03-14T02:10:00Z", "unit": "icu"}
DISCHARGE = {"event_id": "adt-3", "patient_id": "MRN-1", "kind": "discharge",
             "discharged_at": "2026-03-20T10:00:00Z", "disposition": "died"}
FHIR_ENCOUNTER = {"resourceType": "Encounter", "id": "enc-1", "status": "finished",
                  "subject": {"reference": "Patient/MRN-1"},
                  "period": {"start": "2026-03-13T22:40:00Z", "end": "2026-03-20T10:00:00Z"}}
VITALS_DOC = {"event_id": "v1", "patient_id": "MRN-1", "observed_at": "2026-03-13T22:45:00Z", "heart_rate": 88}

#: (topic file, decode kind, document): the schema and decode agree on each.
AGREEMENT: list[tuple[str, str, dict[str, Any]]] = [
    ("encounters", "encounters", ADMISSION),
    ("encounters", "encounters", {**ADMISSION, "age": None, "birth_date": "1954-03-14", "schema": "encounters.v1"}),
    ("encounters", "encounters", TRANSFER),
    ("encounters", "encounters", DISCHARGE),
    ("encounters", "encounters", FHIR_ENCOUNTER),
    ("encounters", "encounters", {k: v for k, v in ADMISSION.items() if k != "kind"}),
    ("encounters", "encounters", {**ADMISSION, "kind": "admit"}),
    ("encounters", "encounters", {**ADMISSION, "age": 300}),
    ("encounters", "encounters", {**ADMISSION, "sex": "F"}),
    ("encounters", "encounters", {**ADMISSION, "disposition": "home"}),
    ("encounters", "encounters", {**ADMISSION, "birth_date": 1954}),
    ("encounters", "encounters", {k: v for k, v in TRANSFER.items() if k != "unit"}),
    ("encounters", "encounters", {**DISCHARGE, "disposition": "dead"}),
    ("encounters", "encounters", {**FHIR_ENCOUNTER, "status": "planned"}),
    ("encounters", "encounters", {**FHIR_ENCOUNTER, "subject": {"reference": "Group/7"}}),
    ("vitals", "vitals", {**VITALS_DOC, "fio2": 0.4, "etco2": 35}),
    ("vitals", "vitals", {**VITALS_DOC, "fio2": 40}),
    ("vitals", "vitals", {**VITALS_DOC, "fio2": 5.0}),
    ("vitals", "vitals", {**VITALS_DOC, "fio2": 120}),
    ("vitals", "vitals", {**VITALS_DOC, "etco2": 151}),
    ("vitals", "vitals", {**{k: v for k, v in VITALS_DOC.items() if k != "heart_rate"}, "fio2": None}),
    ("labs", "labs", {**{k: v for k, v in VITALS_DOC.items() if k != "heart_rate"},
                      "results": [{"code": "2708-6", "value": 94, "unit": "%"}]}),
    ("labs", "labs", {**{k: v for k, v in VITALS_DOC.items() if k != "heart_rate"},
                      "results": [{"code": "troponin", "value": 1, "unit": "ng/L"}]}),
]


def decodes(kind: str, document: dict[str, Any]) -> bool:
    try:
        decode(kind, orjson.dumps(document))  # type: ignore[arg-type]
    except ContractError:
        return False
    return True


@pytest.mark.parametrize(("topic", "kind", "document"), AGREEMENT)
def test_a_committed_schema_and_decode_agree(topic: str, kind: str, document: dict[str, Any]) -> None:
    schema = json.loads(generate.path_of(topic).read_text(encoding="utf-8"))
    assert (violations(document, schema, schema) == []) == decodes(kind, document)


def test_the_agreement_cases_include_refusals_of_each_topic() -> None:
    refused = {topic for topic, kind, document in AGREEMENT if not decodes(kind, document)}
    accepted = {topic for topic, kind, document in AGREEMENT if decodes(kind, document)}
    assert refused == accepted == {"encounters", "vitals", "labs"}


def test_the_encounters_document_states_the_contract() -> None:
    doc = generate.documents()["encounters"]
    native, fhir = doc["anyOf"]
    assert native["discriminator"]["propertyName"] == "kind"
    assert set(native["discriminator"]["mapping"]) == {"admission", "transfer", "discharge"}
    defs = doc["$defs"]
    assert defs["TransferV1"]["required"] == ["event_id", "patient_id", "kind", "transferred_at", "unit"]
    assert defs["AdmissionV1"]["properties"]["age"]["maximum"] == 125
    assert all(defs[name]["additionalProperties"] is False for name in ("AdmissionV1", "TransferV1", "DischargeV1"))
    assert defs["FhirEncounter"]["properties"]["status"]["enum"] == ["in-progress", "finished"]
    assert fhir == {"$ref": "#/$defs/FhirEncounter"}
