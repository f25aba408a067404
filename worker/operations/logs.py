"""Structured, pseudonymised logging for the worker.

Logs leave the clinical boundary (log shippers, tickets, vendors), so the worker logs as JSON
lines with fields passed through ``extra=``, never observation values or payload text at INFO
and above, and patient ids only as a keyed hash when LOG_PSEUDONYMISE is on. The hash is an
HMAC so nobody can confirm a guessed id without the key; a fixed PSEUDONYM_KEY keeps the
pseudonym stable across workers and restarts, so one patient's lines can still be followed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timezone
from typing import Any

import orjson

#: LogRecord attributes that are logging's own, not ``extra=`` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class Pseudonymiser:
    """Maps a patient id to a short keyed hash (or leaves it as is when disabled)."""

    def __init__(self, key: bytes | None, enabled: bool = True) -> None:
        self._key = key if key else secrets.token_bytes(32)
        self.enabled = enabled

    def __call__(self, patient_id: str | None) -> str | None:
        if patient_id is None or not self.enabled:
            return patient_id
        digest = hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"p-{digest[:16]}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extra fields
    (an extra field never overwrites the first four)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        entry: dict[str, Any] = {
            **extra,
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig for Faust's ``logging_config`` setting: JSON lines on stderr at ``level``.

    Faust's and aiokafka's own loggers go through the same handler, so an operator's log
    pipeline parses one format.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"aiokafka": {"level": "WARNING"}, "kafka": {"level": "WARNING"}},
    }
