"""What a bench run measured: which worker (its code and its model) on how many cores.

Figures from two runs only compare when both ran the same worker on a like machine; a table
without the commit, the model version and the core count cannot be read against another, so
every result carries them.
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The distribution name in pyproject.toml.
DISTRIBUTION = "vitalwatch"


def git_describe(repo: Path = REPO) -> str | None:
    """``git describe --always --dirty --tags`` of the checkout the bench runs from, or None
    outside a git checkout (an installed wheel) or without git."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=repo, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def package_version() -> str | None:
    """The installed vitalwatch distribution's version, or None when it is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def model_version(checkpoint: Path | None) -> str:
    """The version in the manifest of the checkpoint the worker loads (the shipped one when unset)."""
    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    return str(load_checkpoint(checkpoint or DEFAULT_CHECKPOINT).manifest.get("version") or "unversioned")


def run_facts(checkpoint: Path | None) -> dict[str, str | int | None]:
    """The result's ``worker_version``, ``package_version``, ``model_version`` and ``cpu_count``
    (the cores this process may run on, which the contenders share)."""
    return {
        "worker_version": git_describe(),
        "package_version": package_version(),
        "model_version": model_version(checkpoint),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
