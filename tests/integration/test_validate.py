"""`vitalwatch validate` on a real broker: the report of the scored-outcomes topic equals
offline `evaluate --scored` on an export of the same events, and the offline evaluation of
the cohort they came from.

A simulated cohort is scored and labelled offline (tests.labelled_records); its records are
published to a fresh scored-outcomes topic as a worker would, with a redelivered slice
(duplicates) and a shadow model's records beside. validate must drop the duplicates, report
live and shadow apart, and print for the live model exactly what evaluate --scored prints for
the JSONL export of the cohort's records: the same code on the same events, to the last digit.
recalibrate reads the same topic for its evidence: the live records once each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.evaluation.metrics import auroc
from tests.labelled_records import records_of, simulated_labelled_scores
from worker.cli import main
from worker.tools.embedded import EmbeddedBroker, create_topics
from worker.tools.scored_outcomes import write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _publish(bootstrap: str, topic: str, records: list) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for record in records:
        producer.send(topic, key=record.patient_id.encode(), value=record.model_dump_json().encode())
    producer.flush(30)
    producer.close()


def test_validate_equals_evaluate_on_the_same_events(broker: EmbeddedBroker, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_checkpoint(DEFAULT_CHECKPOINT)
    scores = simulated_labelled_scores(loaded, patients=60, seed=5151)
    version = loaded.manifest["version"]
    live = records_of(scores, version)
    shadow = records_of(scores, "vw-shadow-test", role="shadow", risk=np.clip(scores.risk * 0.5, 0, 1))
    topic = f"scored-outcomes-{unique}"
    create_topics(broker.bootstrap, [topic], partitions=2)
    _publish(broker.bootstrap, topic, live + shadow[: len(shadow) // 2] + live[:50] + shadow[len(shadow) // 2 :])
    monkeypatch.setenv("VITALWATCH_TOPIC_SCORED_OUTCOMES", topic)

    online, export = tmp_path / "validate.json", tmp_path / "export.jsonl"
    assert main(["validate", "--bootstrap", broker.bootstrap, "--replicates", "100", "--json", str(online),
                 "--export", str(export), "--plots", str(tmp_path / "plots")]) == 0
    validated = json.loads(online.read_text())
    assert validated["records"] == {
        "read": 2 * len(live) + 50, "selected": 2 * len(live), "duplicates": 50, "malformed": 0, "not_selected": 0,
    }
    assert [(m["model_version"], m["role"], m["records"]) for m in validated["models"]] == [
        (version, "live", len(live)), ("vw-shadow-test", "shadow", len(shadow)),
    ]
    assert (tmp_path / "plots" / f"{version}-live" / "roc.png").stat().st_size > 0
    # The shadow against the live model on the same events: half the live risk ranks every event
    # as the live risk does, so the paired difference is exactly 0 and each side is its model's figure.
    (comparison,) = validated["comparisons"]
    assert (comparison["live"], comparison["shadow"], comparison["paired_events"], comparison["label_disagreements"]) == (
        version, "vw-shadow-test", len(live), 0,
    )
    paired = comparison["report"]
    assert paired["differences"]["shadow - live"]["auroc"] == 0.0 and paired["differences"]["shadow - live"]["auroc_ci95"] == [0.0, 0.0]
    assert paired["scorers"]["live"]["auroc"] == pytest.approx(validated["models"][0]["report"]["scorers"]["model"]["auroc"], abs=1e-12)

    cohort_file, offline = tmp_path / "cohort.jsonl", tmp_path / "evaluate.json"
    write_jsonl(cohort_file, live)
    assert main(["evaluate", "--scored", str(cohort_file), "--replicates", "100", "--json", str(offline)]) == 0
    evaluated = json.loads(offline.read_text())
    assert evaluated["models"] == validated["models"][:1]  # every figure and interval, to the last digit
    assert validated["models"][0]["report"]["scorers"]["model"]["auroc"] == pytest.approx(auroc(scores.label, scores.risk), abs=1e-12)

    # The export is the selection: evaluate --scored on it reports both models as validate did.
    assert main(["evaluate", "--scored", str(export), "--replicates", "100", "--json", str(offline)]) == 0
    assert json.loads(offline.read_text())["models"] == validated["models"]
    assert json.loads(offline.read_text())["comparisons"] == validated["comparisons"]

    # One version, one time range.
    assert main(["validate", "--bootstrap", broker.bootstrap, "--replicates", "20", "--json", str(online), "--model-version", version]) == 0
    assert [m["model_version"] for m in json.loads(online.read_text())["models"]] == [version]
    assert main(["validate", "--bootstrap", broker.bootstrap, "--since", "2100-01-01"]) == 2

    # recalibrate reads the same topic: the live model's records once each, the shadow's left out.
    out = tmp_path / "site"
    assert main([
        "recalibrate", "--bootstrap", broker.bootstrap, "--out", str(out), "--target", "specificity",
        "--medium", "0.9", "--high", "0.97", "--min-outcomes", "5", "--min-positive-scores", "20",
    ]) == 0
    evidence = load_checkpoint(out).manifest["recalibration"]["evidence"]
    assert evidence["source"] == {"topic": topic} and evidence["role"] == "live"
    assert evidence["scores"] == len(live) and evidence["records"]["duplicates"] == 50
