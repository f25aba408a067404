"""Write (or check) the JSON Schema document of every topic from the pydantic models.

Producers and consumers in other languages validate against these files; generating them
from the same models decode() uses means they cannot disagree with the code, and the drift
check (tests, `vitalwatch schemas --check`) catches an edit that forgot to regenerate.

Usage: ``python -m schemas.generate [--write] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence, Union

from pydantic import TypeAdapter

JSONSCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: Topic name -> file stem; the files are named after the default topic names.
TOPICS: tuple[str, ...] = (
    "vitals",
    "labs",
    "fhir-observations",
    "encounters",
    "outcomes",
    "risk-scores",
    "alerts",
    "scored-outcomes",
    "dead-letters",
)


def documents() -> dict[str, dict[str, Any]]:
    """Every topic's JSON Schema. Inputs are described as accepted (validation mode), outputs
    as emitted (serialization mode)."""
    # Imported here, not at module level: `vitalwatch --help` imports this module to build
    # its parser and should not pay for building every pydantic model.
    from schemas.encounter_inputs import EncountersV1
    from schemas.fhir import FHIR_DOCUMENT
    from schemas.fhir_encounter import FhirEncounter
    from schemas.inputs import LabsV1, VitalsV1
    from schemas.outcome import OutcomeV1
    from schemas.outputs import AlertV1, DeadLetterV1, RiskScoreV1
    from schemas.scored_outcome import ScoredOutcomeV1

    fhir = FHIR_DOCUMENT.json_schema(mode="validation")
    fhir["title"] = "fhir-observations"
    fhir["description"] = "FHIR R4 Observation or Bundle of Observations (the subset used)."
    encounters = TypeAdapter(Union[EncountersV1, FhirEncounter]).json_schema(mode="validation")
    encounters["title"] = "encounters"
    encounters["description"] = (
        "encounters.v1 (admission, transfer or discharge, by kind) or a FHIR R4 Encounter "
        "(the subset used)."
    )
    schemas = {
        "vitals": VitalsV1.model_json_schema(mode="validation"),
        "labs": LabsV1.model_json_schema(mode="validation"),
        "fhir-observations": fhir,
        "encounters": encounters,
        "outcomes": OutcomeV1.model_json_schema(mode="validation"),
        "risk-scores": RiskScoreV1.model_json_schema(mode="serialization"),
        "alerts": AlertV1.model_json_schema(mode="serialization"),
        "scored-outcomes": ScoredOutcomeV1.model_json_schema(mode="serialization"),
        "dead-letters": DeadLetterV1.model_json_schema(mode="serialization"),
    }
    return {topic: {"$schema": DRAFT, **schemas[topic]} for topic in TOPICS}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def path_of(topic: str, directory: Path = JSONSCHEMA_DIR) -> Path:
    return directory / f"{topic}.json"


def stale(directory: Path = JSONSCHEMA_DIR) -> dict[str, str]:
    """Topics whose file is missing or differs from what the models generate, with the text
    the file should hold."""
    expected = {topic: render(document) for topic, document in documents().items()}
    return {
        topic: text
        for topic, text in expected.items()
        if not path_of(topic, directory).is_file()
        or path_of(topic, directory).read_text(encoding="utf-8") != text
    }


def write(directory: Path = JSONSCHEMA_DIR) -> list[Path]:
    """Regenerate the files that are not current; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for topic, text in stale(directory).items():
        path = path_of(topic, directory)
        path.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", action="store_true", help="regenerate the files")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a file differs from the models"
    )
    parser.add_argument(
        "--directory",
        type=Path,
        default=JSONSCHEMA_DIR,
        help="where the files live (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """List each topic's file and whether it is current; --write fixes, --check fails."""
    if args.write:
        for path in write(args.directory):
            print(f"wrote {path}")
    out_of_date = stale(args.directory)
    for topic in TOPICS:
        state = "STALE (run `vitalwatch schemas --write`)" if topic in out_of_date else "ok"
        print(f"{topic:18} {path_of(topic, args.directory)}  {state}")
    return 1 if args.check and out_of_date else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
