"""The committed JSON Schema files match the models; the generator and CLI behave."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from schemas import generate
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
        "alert_id", "patient_id", "level", "previous_level", "risk", "news2", "reasons",
        "triggered_by", "observed_at", "raised_at", "model_version",
    }
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
