"""`vitalwatch dev` end to end, as `make demo` runs it: a subprocess with piped (non-TTY) output.

It must start the whole stack, score the simulator's events, end on its own with a summary and
exit code 0, and leave no process behind — also when a child crashes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.datasets.profiles import PROFILES
from worker.tools.commands.simulate import DEFAULT_PROFILE

REPO = Path(__file__).resolve().parents[2]


def _dev_env(redis_url: str) -> dict[str, str]:
    """Without a Redis URL when redis-server is installed, so `dev` starts (and must stop) its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALWATCH_") and k != "REDIS_URL"}
    if shutil.which("redis-server") is None:
        env["REDIS_URL"] = redis_url
    return env | {"VITALWATCH_DEVICE": "cpu"}


def _run_dev(args: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "dev", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _stopped_children(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("stopped: "))
    return {name: int(pid) for name, pid in re.findall(r"(\S+) pid (\d+)", line)}


def _summary(output: str) -> dict[str, int]:
    """The closing summary's counts by name ("events published", "scored", "dead letters", …)."""
    line = next(line for line in output.splitlines() if line.startswith("summary: "))
    return {name: int(n) for n, name in re.findall(r"(\d+) (events published|scored|alerts|dead letters|patients)\b", line)}


def _assert_gone(children: dict[str, int]) -> None:
    """No child survives: its pid is gone, or reused by an unrelated process."""
    for name, pid in children.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            continue
        assert "worker.cli" not in cmdline and "tansu" not in cmdline and "redis-server" not in cmdline, (
            f"{name} (pid {pid}) is still running: {cmdline}"
        )


def _shipped_model() -> str:
    """The line the board must show for the checkpoint the worker loads by default."""
    from models.checkpoint import DEFAULT_CHECKPOINT
    from worker.tools.running_model import describe, read_manifest

    manifest = read_manifest(DEFAULT_CHECKPOINT)
    assert manifest is not None
    return describe(manifest)


@pytest.mark.integration
@pytest.mark.parametrize(
    "profile",
    # The demo's own profile in `make test`; the other one with the soaks (`make test-faults`).
    [pytest.param(p, marks=[] if p == DEFAULT_PROFILE else [pytest.mark.faults]) for p in PROFILES],
)
def test_dev_scores_the_feed_prints_a_summary_and_stops_every_child(redis_url: str, profile: str) -> None:
    args = ["--seconds", "15", "--patients", "20", "--speed", "3600", "--profile", profile]
    code, output = _run_dev(args, _dev_env(redis_url), 180)

    assert code == 0, output
    summary = _summary(output)
    assert summary["scored"] > 0 and summary["events published"] > 0 and summary["dead letters"] == 0, summary
    assert "latency" in output
    model = _shipped_model()
    assert f"model: {model}\n" in output, output  # before the plain lines start
    summary_line = next(line for line in output.splitlines() if line.startswith("summary: "))
    assert re.match(rf"summary: \d+ s of feed, model {re.escape(model)}; \d+ events published", summary_line), summary_line
    assert re.search(r"\[\s*\d+ s\] \d+ events published", output), "no periodic plain lines on a pipe"
    children = _stopped_children(output)
    assert {"tansu", "worker", "simulator"} <= set(children), output
    _assert_gone(children)
    run_dir = re.search(r"logs in (\S+)\)", output).group(1)
    assert not Path(run_dir).exists(), "a clean run removes its run directory"


@pytest.mark.integration
@pytest.mark.faults  # dev's replay path runs in `make test` with the set-A fixtures (below)
def test_dev_with_the_demo_dataset_replays_real_stays_instead_of_simulating(redis_url: str) -> None:
    # --seconds counts from the first event: replay first reads and converts the whole demo (~10 s).
    code, output = _run_dev(["--dataset", "mimic-iv-demo", "--seconds", "4", "--patients", "2"], _dev_env(redis_url), 180)

    assert code == 0, output
    summary = _summary(output)
    assert summary["scored"] > 0 and summary["patients"] == 2, summary  # two real stays, not 60 simulated patients
    children = _stopped_children(output)
    assert "replay" in children and "simulator" not in children, output
    _assert_gone(children)


@pytest.mark.integration
def test_dev_with_physionet2019_replays_the_set_a_fixtures_on_the_board(redis_url: str) -> None:
    fixtures = REPO / "tests" / "fixtures" / "physionet2019"
    code, output = _run_dev(
        ["--dataset", "physionet2019", "--psv-dir", str(fixtures), "--seconds", "4", "--patients", "5"], _dev_env(redis_url), 180
    )

    assert code == 0, output
    summary = _summary(output)
    assert summary["scored"] > 0 and summary["patients"] == 5 and summary["dead letters"] == 0, summary
    children = _stopped_children(output)
    assert "replay" in children and "simulator" not in children, output
    _assert_gone(children)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--dataset", "physionet2019"], "--dataset physionet2019 needs --psv-dir"),
        (["--dataset", "physionet2019", "--psv-dir", "/nonexistent-psv"], "not a directory of PhysioNet/CinC 2019 .psv files"),
        (["--psv-dir", "/tmp"], "--clif-dir and --psv-dir need --dataset"),
        (["--dataset", "mimic-iv-demo", "--profile", "icu"], "--profile chooses the simulated cohort"),
    ],
)
def test_dev_refuses_a_psv_replay_it_could_not_read_before_starting_anything(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli import main

    assert main(["dev", *args]) == 2
    assert problem in capsys.readouterr().err


def test_dev_feeds_the_default_profile_unless_told() -> None:
    from worker.cli import build_parser
    from worker.tools.commands.dev import feed_command

    name, argv, activity = feed_command(build_parser().parse_args(["dev"]), "127.0.0.1:9092")
    assert name == "simulator" and argv[argv.index("--profile") + 1] == DEFAULT_PROFILE
    _, argv, activity = feed_command(build_parser().parse_args(["dev", "--profile", "icu", "--patients", "5"]), "b:1")
    assert argv[argv.index("--profile") + 1] == "icu" and activity == "feeding 5 simulated ICU patients at 3600x"


@pytest.mark.integration
def test_dev_reports_a_crashed_worker_and_stops_the_rest(redis_url: str, tmp_path: Path) -> None:
    env = _dev_env(redis_url) | {"VITALWATCH_CHECKPOINT": str(tmp_path)}  # exists, holds no model

    code, output = _run_dev(["--seconds", "30"], env, 120)

    assert code == 1, output
    assert re.search(r"worker \(pid \d+\) exited with \d+; its log:", output), output
    assert "cannot start the risk engine" in output
    children = _stopped_children(output)
    assert "tansu" in children
    _assert_gone(children)
    kept = Path(re.search(r"logs kept in (\S+)", output).group(1))
    assert (kept / "worker.log").is_file(), "a failed run keeps the logs it points to"
    shutil.rmtree(kept)
