"""`vitalwatch worker` hands Faust a --loglevel it accepts for every VITALWATCH_LOG_LEVEL."""

from __future__ import annotations

from typing import get_args

import click
import pytest
from faust.cli.base import LOGLEVELS
from faust.cli.params import CaseInsensitiveChoice

from worker.tools.commands.worker_cmd import faust_loglevel
from worker.operations.config import LogLevel


@pytest.mark.parametrize(("ours", "faust"), [("WARNING", "warn"), ("CRITICAL", "crit"), ("INFO", "info")])
def test_python_level_names_become_faust_spellings(ours: str, faust: str) -> None:
    assert faust_loglevel(ours) == faust


@pytest.mark.parametrize("level", get_args(LogLevel))
def test_every_configurable_level_passes_faust_option_check(level: str) -> None:
    choice = CaseInsensitiveChoice(LOGLEVELS)
    assert choice.convert(faust_loglevel(level), None, None).upper() in LOGLEVELS


def test_python_spelling_alone_is_refused_by_faust() -> None:
    """Why the mapping exists: Faust's option refuses Python's own names for these levels."""
    with pytest.raises(click.BadParameter):
        CaseInsensitiveChoice(LOGLEVELS).convert("warning", None, None)
