"""The README and docs/ are an operator's contract: their tables and examples are checked
against the code, the README stays a front door, and every relative link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from schemas.decode import decode
from schemas.encounter import Encounter
from schemas.outputs import AlertV1, DeadLetterV1, RiskScoreV1
from schemas.scored_outcome import ScoredOutcomeV1
from schemas.units import accepted_units
from schemas.variables import BY_NAME, VARIABLE_NAMES
from worker.operations.config import settings_markdown
from worker.operations.metrics import metrics_markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 300


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def block(page: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start[^\n]*-->\n(.*?)\n<!-- {name}:end -->", text(page), re.S)
    assert match, f"{page} lacks the {name} block"
    return match.group(1)


def example(name: str) -> bytes:
    match = re.search(rf"<!-- example:{name} -->\n```json\n(.*?)\n```", text("docs/contracts.md"), re.S)
    assert match, f"docs/contracts.md lacks the {name} example"
    return match.group(1).encode()


# -- tables and examples against the code ---------------------------------------------------


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    assert block("docs/operations.md", "config-table") == settings_markdown()


def test_metrics_table_lists_every_exported_metric() -> None:
    assert block("docs/operations.md", "metrics-table") == metrics_markdown()


#: Every input example of docs/contracts.md and the decode kind of its topic.
INPUT_EXAMPLES = {
    "vitals": "vitals", "vitals-oxygen": "vitals", "labs": "labs", "labs-blood-gas": "labs",
    "fhir": "fhir", "encounters": "encounters", "encounters-transfer": "encounters",
    "encounters-discharge": "encounters", "fhir-encounter": "encounters", "outcomes": "outcomes",
}
OUTPUT_EXAMPLES = {
    "risk-scores": RiskScoreV1, "alerts": AlertV1, "scored-outcomes": ScoredOutcomeV1, "dead-letters": DeadLetterV1,
}


def test_every_example_on_the_page_is_checked() -> None:
    names = re.findall(r"<!-- example:([\w-]+) -->", text("docs/contracts.md"))
    assert sorted(names) == sorted([*INPUT_EXAMPLES, *OUTPUT_EXAMPLES])


@pytest.mark.parametrize(("name", "kind"), INPUT_EXAMPLES.items())
def test_input_examples_pass_the_validator(name: str, kind: str) -> None:
    assert decode(kind, example(name))  # type: ignore[call-overload]


def test_oxygen_example_reads_the_fio2_percentage_and_derives_on_oxygen() -> None:
    (observation,) = decode("vitals", example("vitals-oxygen"))
    assert (observation.values["fio2"], observation.values["on_oxygen"], observation.values["etco2"]) == (0.4, 1.0, 33.0)


def test_blood_gas_example_is_scored_as_the_page_says() -> None:
    (observation,) = decode("labs", example("labs-blood-gas"))
    assert observation.values == pytest.approx(
        {"ph": 7.29, "paco2": 48.0, "sao2": 90.0, "base_excess": -6.5, "bun": 31.9, "calcium": 8.2}, abs=0.05
    )


def test_encounter_examples_are_the_stay_they_describe() -> None:
    stay = [decode("encounters", example(name))[0] for name in ("encounters", "encounters-transfer", "encounters-discharge")]
    assert [(e.kind, e.unit, e.age, e.sex, e.disposition) for e in stay] == [
        ("admission", "ward", 72.0, "female", None), ("transfer", "icu", None, None, None),
        ("discharge", None, None, None, "home"),
    ]
    assert stay[0].occurred_ts < stay[1].occurred_ts < stay[2].occurred_ts
    (fhir,) = decode("encounters", example("fhir-encounter"))
    assert isinstance(fhir, Encounter)
    assert (fhir.event_id, fhir.kind, fhir.unit, fhir.occurred_at) == (
        "enc-77/transfer/2026-03-14T03:25:00Z", "transfer", "icu", stay[1].occurred_at)


def test_lab_example_converts_the_loinc_coded_creatinine() -> None:
    (observation,) = decode("labs", example("labs"))
    assert observation.values["creatinine"] == pytest.approx(141 / 88.42, rel=1e-3)


def test_fhir_example_is_the_heart_rate_it_describes() -> None:
    (observation,) = decode("fhir", example("fhir"))
    assert observation.patient_id == "MRN-0048213"
    assert observation.values == {"heart_rate": 118.0}


@pytest.mark.parametrize(("name", "contract"), OUTPUT_EXAMPLES.items())
def test_output_examples_match_the_contracts(name: str, contract: type) -> None:
    contract.model_validate(orjson.loads(example(name)))


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split(" | ")]


def _codes(cell: str) -> list[str]:
    return [] if cell == "—" else [c.strip().strip("`") for c in cell.split(", ")]


def test_variables_table_matches_the_catalogue() -> None:
    rows = block("docs/contracts.md", "variables-table").splitlines()[2:]
    assert [_cells(row)[0].strip("`") for row in rows] == list(VARIABLE_NAMES), "one row per variable, in order"
    for row in rows:
        name, unit, loinc, units, plausible = _cells(row)
        variable = BY_NAME[name.strip("`")]
        assert unit.strip("`") == variable.unit, name
        assert set(_codes(loinc)) <= set(variable.loinc), name
        assert _codes(units) == list(accepted_units(variable)), name
        if not variable.unit.startswith("{"):  # ACVPU and booleans are shown as their wire values
            assert plausible == f"{variable.low:g}–{variable.high:g}", name


# -- the README is a front door; links lead somewhere ---------------------------------------


def test_readme_is_a_front_door_that_links_every_docs_page() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert "make demo" in readme and "make test" in readme
    assert DOCS, "docs/ holds no pages"
    missing = [d.name for d in DOCS if f"(docs/{d.name})" not in readme and f"(docs/{d.name}#" not in readme]
    assert not missing, f"README.md does not link {missing}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found: set[str] = set()
    for line in _prose(page):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page: Path) -> None:
    broken = []
    for line in _prose(page):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
