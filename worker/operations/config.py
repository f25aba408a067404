"""Worker configuration: the one place environment variables are read.

Every setting is a ``VITALWATCH_<NAME>`` environment variable with a documented default, so a
site can run the same image against the embedded stack, docker-compose or its own Kafka and
Redis by changing only the environment. A wrong value stops the worker at start with a message
that names the variable (``VITALWATCH_MAX_BATCH: must be >= 1, got 0``) instead of failing
later, mid-stream, with a stack trace.

``python -m worker.operations.config --markdown`` prints the table in docs/operations.md;
``python -m worker.operations.config --check`` validates the current environment.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VITALWATCH_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(ValueError):
    """The environment holds an unusable setting; the message names each offending variable."""


class Settings(BaseSettings):
    """All worker settings. Field descriptions feed the docs/operations.md table: keep them operator-facing."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore")

    kafka_bootstrap: str = Field(
        "localhost:9092",
        min_length=1,
        description="Kafka bootstrap servers, `host:port[,host:port…]`.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (required with SASL_*).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (required with SASL_*); never logged.")
    kafka_ssl_cafile: Path | None = Field(None, description="PEM file of CAs to trust for SSL/SASL_SSL (unset: system CAs).")
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate.")
    kafka_idempotence: bool = Field(
        False,
        description="Idempotent producer (real Kafka only: Tansu refuses InitProducerId). "
        "Outputs are at-least-once with deterministic ids either way.",
    )
    group_id: str = Field("vitalwatch", min_length=1, description="Kafka consumer group (and Faust app id).")
    session_timeout_s: float = Field(
        10.0,
        ge=1.0,
        le=300.0,
        description="Consumer group session timeout, seconds. Tansu holds a JoinGroup for half of it: use ~6 s there.",
    )
    topic_vitals: str = Field("vitals", min_length=1, description="Input topic for vitals.v1.")
    topic_labs: str = Field("labs", min_length=1, description="Input topic for labs.v1.")
    topic_fhir: str = Field("fhir-observations", min_length=1, description="Input topic for FHIR R4 Observation/Bundle.")
    topic_encounters: str = Field(
        "encounters",
        min_length=1,
        description="Input topic for encounters.v1 / FHIR R4 Encounter (admission, transfer, discharge).",
    )
    topic_outcomes: str = Field(
        "outcomes",
        min_length=1,
        description="Input topic for outcomes.v1 (sepsis onset, ICU transfer, rapid response, cardiac arrest, death): "
        "what labels the scores.",
    )
    outcome_delay_h: float = Field(
        2.0,
        ge=0.0,
        le=72.0,
        description="Longest delay, hours, between an outcome happening and its record reaching the outcomes topic. "
        "A score is labelled negative once the patient's event time passes its horizon plus this; each patient keeps "
        "its scores that long.",
    )
    score_history_cap: int = Field(
        512,
        ge=1,
        le=4096,
        description="Most unlabelled scores a patient keeps; the oldest beyond it leave unlabelled (counted).",
    )
    topic_risk_scores: str = Field("risk-scores", min_length=1, description="Output topic: one record per scored event.")
    topic_alerts: str = Field("alerts", min_length=1, description="Output topic: alert level changes.")
    topic_dead_letters: str = Field("dead-letters", min_length=1, description="Output topic: rejected input with reason.")
    topic_risk_scores_shadow: str = Field(
        "risk-scores-shadow", min_length=1,
        description="Output topic of the shadow model (VITALWATCH_SHADOW_CHECKPOINT): one record per scored event.",
    )
    topic_scored_outcomes: str = Field(
        "scored-outcomes", min_length=1, description="Output topic: each score once labelled by what followed it (retained, not compacted)."
    )
    max_message_bytes: int = Field(
        1_000_000, ge=1, description="Largest input payload accepted; larger ones are dead-lettered."
    )
    redis_url: str = Field(
        "redis://localhost:6379/0",
        min_length=1,
        description="Redis holding per-patient state (redis:// or rediss://). With Sentinel its host is not used: its "
        "scheme (rediss:// for TLS), credentials and database apply to the primary the sentinels name; with "
        "REDIS_CLUSTER it names any one node of the cluster (database 0), and its scheme and credentials apply to "
        "every node.",
    )
    redis_sentinels: str = Field(
        "",
        description="Redis Sentinel addresses, `host:port[,host:port…]` (unset: no Sentinel). The worker asks them "
        "for the primary of REDIS_SENTINEL_MASTER and follows a failover by itself.",
    )
    redis_sentinel_master: str = Field("mymaster", min_length=1, description="Sentinel's service name of the primary.")
    redis_sentinel_username: str | None = Field(None, description="User name on the sentinels themselves (ACL).")
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the sentinels themselves (their `requirepass`); never logged."
    )
    redis_cluster: bool = Field(
        False,
        description="REDIS_URL is a node of a Redis Cluster (7.0 or later): each batch reads and writes every "
        "primary it touches once, concurrently.",
    )
    redis_min_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="Replicas that must hold a batch's state (Redis WAIT, on every primary written to) before its "
        "Kafka offsets are committed; too few is a failed write, retried. 0 for a Redis without replicas.",
    )
    redis_replica_timeout_ms: int = Field(
        1000,
        ge=1,
        le=4000,
        description="Longest WAIT for REDIS_MIN_REPLICAS acknowledgements, ms, before the write counts as failed "
        "(below the worker's 5 s Redis timeout).",
    )
    redis_prefix: str = Field("vitalwatch:", description="Prefix of every Redis key the worker writes.")
    state_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="Seconds a patient's state survives in Redis without new events."
    )
    discharged_ttl_s: int = Field(
        24 * 3600,
        ge=60,
        description="Seconds a discharged patient's tombstone (watermark and recent event ids, nothing clinical) stays "
        "in Redis: a redelivered or resent event of the closed stay is recognised for this long.",
    )
    device: str = Field(
        "auto",
        description="Torch device for the model and state slab: auto (cuda if available), cpu, cuda or cuda:N.",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Torch intra-op threads of the model. 1 by default: the worker's event loop is one thread, and "
        "on a shared machine extra torch threads fight it (and the broker, Redis, other workers) for cores.",
    )
    checkpoint: Path | None = Field(
        None,
        description=(
            "Model checkpoint directory (unset: the checkpoint shipped in models/checkpoints/default). "
            "SIGHUP reloads it without a restart: point it at a symlink and move the link to switch."
        ),
    )
    shadow_checkpoint: Path | None = Field(
        None,
        description="A second model that scores every event beside the live one, its state under its own Redis "
        "prefix, its risks on the shadow risk-scores topic, never alerting (unset: no shadow model).",
    )
    max_batch: int = Field(
        512, ge=1, le=100_000, description="Most events scored in one micro-batch (the most records one fetch returns)."
    )
    max_wait_ms: int = Field(
        10,
        ge=1,
        le=60_000,
        description="Longest wait, ms, the broker may hold a fetch that finds no new records; each fetch's records "
        "are scored at once as one micro-batch. Short because some brokers (Tansu) hold a fetch for the whole wait.",
    )
    slab_capacity: int = Field(
        100_000, ge=1, description="Patients kept resident on the device; least recently seen are evicted to Redis."
    )
    metrics_port: int = Field(9108, ge=1, le=65_535, description="HTTP port serving /metrics and /health.")
    log_level: LogLevel = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_pseudonymise: bool = Field(True, description="Replace patient ids in logs with a keyed hash.")
    pseudonym_key: SecretStr | None = Field(
        None,
        description="Key of the log pseudonyms; set it to correlate logs across workers and restarts "
        "(unset: a random key per process).",
    )

    @field_validator("log_level", "kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for address in filter(None, (a.strip() for a in value.split(","))):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65_536:
                raise ValueError(f"must be host:port[,host:port…], not {address!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "checkpoint", "shadow_checkpoint")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError("no such file or directory")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "Settings":
        if self.kafka_security_protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"{ENV_PREFIX}KAFKA_SASL_USERNAME: required with {self.kafka_security_protocol}")
            if self.kafka_sasl_password is None:
                raise ValueError(f"{ENV_PREFIX}KAFKA_SASL_PASSWORD: required with {self.kafka_security_protocol}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(f"{ENV_PREFIX}KAFKA_SSL_CERTFILE and {ENV_PREFIX}KAFKA_SSL_KEYFILE: set both or neither")
        if self.redis_sentinels and self.redis_cluster:
            raise ValueError(f"{ENV_PREFIX}REDIS_SENTINELS and {ENV_PREFIX}REDIS_CLUSTER: choose one topology")
        inputs = [self.topic_vitals, self.topic_labs, self.topic_fhir, self.topic_encounters, self.topic_outcomes]
        if len(set(inputs)) != len(inputs):
            raise ValueError(
                f"{ENV_PREFIX}TOPIC_VITALS/LABS/FHIR/ENCOUNTERS/OUTCOMES: input topics must differ, got {inputs}"
            )
        if self.topic_risk_scores_shadow == self.topic_risk_scores:
            # The shadow's scores beside the live ones on one topic would read as a second score per event.
            raise ValueError(f"{ENV_PREFIX}TOPIC_RISK_SCORES_SHADOW: must differ from {ENV_PREFIX}TOPIC_RISK_SCORES")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty when no Sentinel is configured."""
        pairs = (a.strip().rpartition(":") for a in self.redis_sentinels.split(",") if a.strip())
        return [(host, int(port)) for host, _, port in pairs]

    @property
    def engine_options(self) -> dict[str, Any]:
        """The RiskEngine keyword arguments these settings fix, for every engine built from them
        (the worker's live and shadow ones, the bench's batch-cost ones)."""
        return {
            "capacity": self.slab_capacity, "outcome_delay_s": self.outcome_delay_h * 3600.0,
            "history_cap": self.score_history_cap,
        }

    @property
    def input_topics(self) -> dict[str, str]:
        """Input topic name -> the decode kind (schemas.decode) its payloads follow."""
        return {
            self.topic_vitals: "vitals", self.topic_labs: "labs", self.topic_fhir: "fhir",
            self.topic_encounters: "encounters", self.topic_outcomes: "outcomes",
        }


def resolve_device(device: str) -> str:
    """The torch device a VITALWATCH_DEVICE value means here: ``auto`` is cuda when torch sees
    a GPU, else cpu. Torch is imported only when asked, so reading settings stays cheap."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


_PROBLEMS: dict[str, str] = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "literal_error": "must be one of {expected}",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
}


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``VITALWATCH_X: problem, got value`` (secrets are never echoed)."""
    loc = [str(part) for part in error.get("loc", ()) if isinstance(part, str)]
    message = str(error.get("msg", "invalid"))
    if not loc:  # model-level check: its message already names the variables
        return message.removeprefix("Value error, ")
    field = loc[0]
    template = _PROBLEMS.get(str(error.get("type")))
    problem = template.format(**(error.get("ctx") or {})) if template else message.removeprefix("Value error, ")
    if field in ("kafka_sasl_password", "pseudonym_key", "redis_sentinel_password"):
        return f"{env_name(field)}: {problem}"
    value = error.get("input")
    shown = value if isinstance(value, str) and value and value.strip() == value else repr(value)
    return f"{env_name(field)}: {problem}, got {shown}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; raise ConfigError naming every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _default_text(field: str) -> str:
    info = Settings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "(unset)"
    if isinstance(default, bool):
        return str(default).lower()
    return f"`{default}`"


def settings_markdown() -> str:
    """The settings as a Markdown table (variable, default, description) for docs/operations.md."""
    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        rows.append(f"| `{env_name(field)}` | {_default_text(field)} | {info.description} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.operations.config", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the settings table (Markdown)")
    group.add_argument("--check", action="store_true", help="validate the environment and print the effective settings")
    args = parser.parse_args(argv)
    if args.markdown:
        print(settings_markdown())
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for field, value in settings.model_dump().items():
        print(f"{env_name(field)}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
