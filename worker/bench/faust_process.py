"""What the bench's own Faust contenders share with the real worker: its Faust settings, its
input topics and Faust's run loop, so they differ from it only in the agent body."""

from __future__ import annotations

import sys
from typing import Any

import faust

from worker.operations.config import Settings
from worker.stream.faust_options import faust_options


def build_app(settings: Settings, app_class: type[faust.App] = faust.App) -> tuple[faust.App, Any]:
    """A Faust app with the worker's own settings (worker.stream.faust_options) and its input topic.

    The web server is off: these contenders serve no /health or /metrics."""
    app = app_class(settings.group_id, **{**faust_options(settings), "web_enabled": False})
    topic = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    return app, topic


def run(app: faust.App) -> None:
    """Run the app's worker until SIGTERM, as `faust -A … worker` does (our own arguments are
    already parsed, so Faust's command line sees none)."""
    sys.argv = sys.argv[:1]
    faust.Worker(app, loglevel="warning").execute_from_commandline()
