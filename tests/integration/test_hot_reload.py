"""SIGHUP reloads the checkpoint in a running worker, under load: nothing dropped, doubled or stalled.

VITALWATCH_CHECKPOINT is a symlink. A stream of vitals flows; mid-stream the link is moved to a
recalibration of the running model (same weights, new calibration and thresholds, written by
models.training.recalibration) and the worker gets SIGHUP; later to a checkpoint whose weights
were tampered with, and SIGHUP again. Then:

* every event is scored exactly once (the worker never restarts, so nothing is redelivered);
* each patient's scores move from the parent's version to the recalibration's once and never
  back, and the tampered checkpoint scores nothing: it was refused, the old model served on;
* every score equals an uninterrupted pass of the model whose version it carries, in one
  engine: the LSTM state each patient had before the swap was kept (a reset would change
  every later score), only the calibration on top of it changed;
* the consumer group's commits reach the end of the stream, and the metrics say kept_state 1,
  refused 1, with the recalibration as the live model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from models.checkpoint import DEFAULT_CHECKPOINT, MANIFEST_FILE, WEIGHTS_FILE
from models.training.recalibration import Recalibration, write_recalibrated
from tests.integration.fault_harness import PacedStream, committed_offsets, metric, reference_run, vitals_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

TOLERANCE = 1e-5
EVENTS = 900


def _checkpoints(root: Path) -> tuple[Path, Path, Path]:
    parent = root / "parent"
    shutil.copytree(DEFAULT_CHECKPOINT, parent)
    manifest = json.loads((parent / MANIFEST_FILE).read_text())
    scale, bias = manifest["calibration"]["scale"], manifest["calibration"]["bias"]
    thresholds = {level: t * 1.5 for level, t in manifest["alert_thresholds"].items()}
    recalibration = Recalibration(
        a=0.8, b=-0.3, calibration={"method": "platt", "scale": 0.8 * scale, "bias": 0.8 * bias - 0.3},
        alert_thresholds=thresholds, before={}, after={},
    )
    site = write_recalibrated(parent, root / "site", recalibration, version="vw-site-reload-test", evidence={}, target={})
    tampered = root / "tampered"
    shutil.copytree(site, tampered)
    blob = bytearray((tampered / WEIGHTS_FILE).read_bytes())
    blob[-1] ^= 0x01
    (tampered / WEIGHTS_FILE).write_bytes(bytes(blob))
    return parent, site, tampered


def _point(link: Path, target: Path) -> None:
    """Move the symlink atomically, as an operator would (ln -sfn)."""
    staged = link.with_name(link.name + ".new")
    staged.symlink_to(target)
    os.replace(staged, link)


def _wait_metric(worker, name: str, timeout_s: float = 30.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.assert_alive()
        if metric(worker.metrics(), name, **labels) >= 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} not counted within {timeout_s} s; log:\n{worker.log_tail()}")


def test_sighup_reloads_under_load_keeping_state_and_refuses_a_bad_checkpoint(
    start_worker, producer, topics, read_output, redis_url, unique, broker, tmp_path: Path
) -> None:
    parent, site, tampered = _checkpoints(tmp_path)
    current = tmp_path / "current"
    current.symlink_to(parent)
    parent_version = json.loads((parent / MANIFEST_FILE).read_text())["version"]
    events = vitals_events(EVENTS, seed=2727)

    worker = start_worker(VITALWATCH_CHECKPOINT=str(current))
    worker.wait_ready()
    reader = read_output(topics["risk_scores"])
    feeding = PacedStream(producer, topics, events, per_second=150, allowed=EVENTS // 3).start()
    reader.until(lambda r: len(r) >= EVENTS // 4, 60, [worker])

    feeding.allow(2 * EVENTS // 3)  # the stream flows on while the worker reloads
    _point(current, site)
    worker.proc.send_signal(signal.SIGHUP)
    _wait_metric(worker, "vitalwatch_model_reloads_total", outcome="kept_state")
    reader.until(lambda r: len(r) >= EVENTS // 2, 60, [worker])

    feeding.allow(EVENTS)
    _point(current, tampered)
    worker.proc.send_signal(signal.SIGHUP)
    _wait_metric(worker, "vitalwatch_model_reloads_total", outcome="refused")
    coordinates = feeding.join(timeout_s=60)
    records = reader.until(lambda r: len(r) >= EVENTS, 60, [worker])

    counts = Counter(r["event_id"] for r in records)
    assert set(counts) == {e.payload["event_id"] for e in events}
    assert max(counts.values()) == 1, "an event was scored twice"

    versions = Counter(r["model_version"] for r in records)
    assert set(versions) == {parent_version, "vw-site-reload-test"} and min(versions.values()) > EVENTS // 10, versions
    switched: dict[str, bool] = {}
    for record in sorted(records, key=lambda r: r["scored_at"]):
        later = record["model_version"] == "vw-site-reload-test"
        assert later or not switched.get(record["patient_id"]), f"{record['patient_id']} went back to the parent model"
        switched[record["patient_id"]] = later

    expected = {
        version: reference_run(events, coordinates, redis_url, f"ref-{version}-{unique}:", checkpoint).risks
        for version, checkpoint in ((parent_version, parent), ("vw-site-reload-test", site))
    }
    wrong = [
        (r["event_id"], r["model_version"], r["risk"]) for r in records
        if abs(r["risk"] - expected[r["model_version"]][r["event_id"]]) > TOLERANCE
    ]
    assert not wrong, f"{len(wrong)} scores differ from the uninterrupted pass of their model: {wrong[:5]}"

    ends = Counter()
    for _, partition, offset in coordinates.values():
        ends[partition] = max(ends[partition], offset + 1)
    deadline = time.monotonic() + 30
    while committed_offsets(broker.bootstrap, f"vitalwatch-{unique}", topics["vitals"]) != dict(ends):
        assert time.monotonic() < deadline, "commits stopped"
        time.sleep(0.5)

    text = worker.metrics()
    assert metric(text, "vitalwatch_model_reloads_total", outcome="kept_state") == 1
    assert metric(text, "vitalwatch_model_reloads_total", outcome="refused") == 1
    assert metric(text, "vitalwatch_model_info", role="live", version="vw-site-reload-test") == 1
    assert metric(text, "vitalwatch_model_info", role="live", version=parent_version) == 0
    assert "checkpoint reload refused" in worker.log_path.read_text()
