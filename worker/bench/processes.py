"""Contenders as subprocesses: started with an environment, watched, measured, stopped.

A contender that dies mid-phase must fail the bench with its own log, not leave the harness
waiting for outputs that will never come.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
#: Grace between SIGTERM and SIGKILL: a Faust worker finishes its batch and commits.
STOP_GRACE_S = 20.0


class ContenderDied(RuntimeError):
    """A contender exited on its own; the message quotes the tail of its log."""


@dataclass
class Contender:
    """One subprocess under test; its stdout and stderr go to ``log_path``."""

    name: str
    proc: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: Mapping[str, str], run_dir: Path) -> "Contender":
        log_path = run_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *argv], cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return cls(name, proc, log_path)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise ContenderDied(f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n{self.log_tail()}")

    def peak_rss_mb(self) -> float:
        """The process's high-water resident set (VmHWM), MiB; 0 where /proc has no such line."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def wait_healthy(self, port: int, timeout_s: float) -> None:
        """Until the worker's /health reports its engine loaded (model on the device, group joined)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if json.loads(response.read())["engine"]["ready"]:
                        return
            except (OSError, ValueError, KeyError):
                pass  # not listening yet, or 503 while a dependency is still coming up
            time.sleep(0.25)
        raise ContenderDied(f"{self.name} was not ready within {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM without waiting: the next phase starts while this one winds down (a
        contender takes seconds to start, a Faust worker about one to stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(contenders: Sequence[Contender]) -> None:
    """SIGTERM every contender at once, then wait for each (SIGKILL after STOP_GRACE_S)."""
    running = [c for c in contenders if c.proc.poll() is None]
    for contender in running:
        contender.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for contender in running:
        try:
            contender.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            contender.proc.kill()
            contender.proc.wait(timeout=STOP_GRACE_S)
