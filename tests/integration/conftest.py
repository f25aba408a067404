"""Harness for the stream tests: the worker as a real subprocess, kafka-python on both ends.

The worker is started exactly as docker-compose and `vitalwatch dev` start it — a separate
`python -m worker.cli worker` configured only by VITALWATCH_* variables — so a test can SIGKILL
it and exercise the crash path, and so nothing of the test process (event loop, imported
modules) leaks into what is being tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from worker.tools.embedded import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """One `vitalwatch worker` subprocess; its combined output goes to a temp file."""

    env: dict[str, str]
    metrics_port: int
    proc: subprocess.Popen | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="vitalwatch-worker-", suffix=".log")[1]))

    def start(self) -> "WorkerProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker"],
                cwd=REPO, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def health(self) -> tuple[int, dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/health", timeout=3) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3) as resp:
            return resp.read().decode()

    def wait_ready(self, timeout_s: float = 45.0) -> None:
        """Until /health answers 200: the engine is loaded and Kafka and Redis answer. Every
        answer on the way is checked to mean that (200 only once the engine is ready)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_alive()
            report = self.health()
            if report is not None:
                status, body = report
                assert (status == 200) == (body["engine"]["ready"] and body["redis"]["ok"] and body["kafka"]["ok"]), body
                if status == 200:
                    return
            time.sleep(0.25)
        raise AssertionError(f"worker not ready within {timeout_s} s; log:\n{self.log_tail()}")

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no offset is committed on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def worker_env(broker: EmbeddedBroker, redis_url: str, unique: str, topics: dict[str, str]) -> dict[str, str]:
    """VITALWATCH_* for a worker on this test's topics, group and Redis prefix."""
    return {
        "VITALWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VITALWATCH_REDIS_URL": redis_url,
        "VITALWATCH_REDIS_PREFIX": f"test-{unique}:",
        "VITALWATCH_GROUP_ID": f"vitalwatch-{unique}",
        "VITALWATCH_SESSION_TIMEOUT_S": "6",
        "VITALWATCH_DEVICE": "cpu",
        "VITALWATCH_TOPIC_VITALS": topics["vitals"],
        "VITALWATCH_TOPIC_LABS": topics["labs"],
        "VITALWATCH_TOPIC_FHIR": topics["fhir"],
        "VITALWATCH_TOPIC_ENCOUNTERS": topics["encounters"],
        "VITALWATCH_TOPIC_OUTCOMES": topics["outcomes"],
        "VITALWATCH_TOPIC_RISK_SCORES": topics["risk_scores"],
        "VITALWATCH_TOPIC_ALERTS": topics["alerts"],
        "VITALWATCH_TOPIC_SCORED_OUTCOMES": topics["scored_outcomes"],
        "VITALWATCH_TOPIC_DEAD_LETTERS": topics["dead_letters"],
        "VITALWATCH_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker (extra env overrides allowed); every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        port = free_port()
        env = {**worker_env, "VITALWATCH_METRICS_PORT": str(port), **overrides}
        worker = WorkerProcess(env, port).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def producer(broker: EmbeddedBroker) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5, max_request_size=4_000_000)
    yield p
    p.close(timeout=5)


def produce(producer: KafkaProducer, topic: str, key: str | None, value: bytes | dict) -> None:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    producer.send(topic, key=key.encode() if key is not None else None, value=raw)


class OutputReader:
    """Reads an output topic from the beginning, across polls, as decoded JSON records."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200)
        partitions = self.consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(orjson.loads(r.value) for r in batch)
        return self.records

    def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float, alive: Sequence[WorkerProcess] = ()) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.poll()):
                return self.records
            for worker in alive:
                worker.assert_alive()
        logs = "\n".join(w.log_tail() for w in alive)
        raise AssertionError(f"timed out after {timeout_s} s with {len(self.records)} records\n{logs}")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def read_output(broker: EmbeddedBroker) -> Iterator[Callable[[str], OutputReader]]:
    readers: list[OutputReader] = []

    def make(topic: str) -> OutputReader:
        reader = OutputReader(broker.bootstrap, topic)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()
