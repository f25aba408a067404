"""Security end to end with real processes: a Redis ACL user, and a tampered model checkpoint.

* A redis-server started with an ACL user (and the default user switched off): the worker
  authenticates with the user and password from VITALWATCH_REDIS_URL and scores; with a wrong
  password it does not pretend to be healthy — /health answers 503 naming Redis and the
  authentication error.
* A checkpoint whose weights file was altered after the manifest recorded its sha256: the
  worker refuses to start and says why in a CRITICAL log line, instead of serving a model
  nobody validated.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from models.checkpoint import DEFAULT_CHECKPOINT
from tests.integration.conftest import produce
from worker.tools.embedded import EmbeddedRedis, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER, PASSWORD = "vitalwatch-svc", "acl-s3cret-42"


@pytest.fixture
def acl_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server whose only enabled user is USER (the default user is off)."""
    server = EmbeddedRedis()
    server.proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(server.port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--user", "default", "off",
         "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    wait_for_port(server.port, 10, server.proc)
    try:
        yield server
    finally:
        server.stop()


def test_worker_authenticates_with_a_redis_acl_user_and_reports_a_wrong_password(
    acl_redis: EmbeddedRedis, start_worker, producer, topics, read_output
) -> None:
    good = start_worker(VITALWATCH_REDIS_URL=f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_redis.port}/0")
    good.wait_ready()
    produce(producer, topics["vitals"], "acl-bed-1", {
        "event_id": "acl-1", "patient_id": "acl-bed-1", "observed_at": "2026-01-05T08:00:00Z", "heart_rate": 90,
    })
    producer.flush()
    read_output(topics["risk_scores"]).until(lambda r: any(x["event_id"] == "acl-1" for x in r), 30, [good])
    assert good.stop() == 0

    wrong = start_worker(VITALWATCH_REDIS_URL=f"redis://{USER}:wrong-password@127.0.0.1:{acl_redis.port}/0")
    deadline = time.monotonic() + 45
    report = None
    while time.monotonic() < deadline:
        wrong.assert_alive()
        report = wrong.health()
        if report is not None and report[1].get("engine", {}).get("ready"):
            break
        time.sleep(0.5)
    assert report is not None and report[0] == 503, report
    assert report[1]["redis"] == {
        "ok": False, "error": "AuthenticationError", "waiting_for": f"Redis at 127.0.0.1:{acl_redis.port}",
    }, report[1]
    assert report[1]["kafka"]["ok"] is True
    assert PASSWORD not in wrong.log_path.read_text() and "wrong-password" not in wrong.log_path.read_text()


def test_worker_refuses_to_start_on_a_tampered_checkpoint(start_worker, tmp_path: Path) -> None:
    tampered = tmp_path / "checkpoint"
    shutil.copytree(DEFAULT_CHECKPOINT, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight: the file still parses, the checksum does not match
    weights.write_bytes(bytes(data))

    worker = start_worker(VITALWATCH_CHECKPOINT=str(tampered))
    assert worker.proc is not None
    worker.proc.wait(timeout=60)
    assert worker.proc.returncode != 0
    lines = [orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    refusal = [line for line in lines if line.get("msg") == "cannot start the risk engine"]
    assert refusal and refusal[0]["level"] == "CRITICAL", worker.log_tail()
    assert refusal[0]["error"] == "CheckpointError" and "sha256" in refusal[0]["detail"], refusal[0]
