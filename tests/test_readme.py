"""The README is an operator's contract: its tables and examples are checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from schemas.decode import decode
from schemas.outputs import AlertV1, DeadLetterV1, RiskScoreV1
from worker.operations.config import settings_markdown
from worker.operations.metrics import metrics_markdown

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(name: str) -> str:
    match = re.search(rf"<!-- {name}:start[^\n]*-->\n(.*?)\n<!-- {name}:end -->", README, re.S)
    assert match, f"README lacks the {name} block"
    return match.group(1)


def example(name: str) -> bytes:
    match = re.search(rf"<!-- example:{name} -->\n```json\n(.*?)\n```", README, re.S)
    assert match, f"README lacks the {name} example"
    return match.group(1).encode()


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    assert block("config-table") == settings_markdown()


def test_metrics_table_lists_every_exported_metric() -> None:
    assert block("metrics-table") == metrics_markdown()


@pytest.mark.parametrize("kind", ["vitals", "labs"])
def test_input_examples_pass_the_validator(kind: str) -> None:
    assert decode(kind, example(kind))


def test_lab_example_converts_the_loinc_coded_creatinine() -> None:
    (observation,) = decode("labs", example("labs"))
    assert observation.values["creatinine"] == pytest.approx(141 / 88.42, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "contract"), [("risk-scores", RiskScoreV1), ("alerts", AlertV1), ("dead-letters", DeadLetterV1)]
)
def test_output_examples_match_the_contracts(name: str, contract: type) -> None:
    contract.model_validate(orjson.loads(example(name)))
