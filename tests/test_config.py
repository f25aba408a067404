"""Settings: documented defaults, and a wrong value stops the worker with the variable's name."""

from __future__ import annotations

import os

import pytest

from worker.operations.config import ENV_PREFIX, ConfigError, Settings, load_settings, main, settings_markdown


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own VITALWATCH_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_match_the_documented_contract() -> None:
    s = load_settings()
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.redis_prefix == "vitalwatch:"
    assert s.state_ttl_s == 7 * 24 * 3600
    assert s.metrics_port == 9108
    assert s.device == "auto"
    assert s.torch_threads == 1
    assert (s.max_batch, s.max_wait_ms, s.slab_capacity) == (512, 10, 100_000)
    assert s.max_message_bytes == 1_000_000
    assert (s.group_id, s.session_timeout_s) == ("vitalwatch", 10.0)
    assert s.input_topics == {
        "vitals": "vitals", "labs": "labs", "fhir-observations": "fhir", "encounters": "encounters", "outcomes": "outcomes",
    }
    assert (s.topic_risk_scores, s.topic_alerts, s.topic_dead_letters) == ("risk-scores", "alerts", "dead-letters")
    assert s.kafka_security_protocol == "PLAINTEXT" and s.kafka_idempotence is False
    assert s.log_level == "INFO" and s.log_pseudonymise is True and s.pseudonym_key is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALWATCH_MAX_BATCH", "64")
    monkeypatch.setenv("VITALWATCH_DEVICE", "cuda:1")
    monkeypatch.setenv("VITALWATCH_LOG_LEVEL", "debug")
    monkeypatch.setenv("VITALWATCH_TOPIC_VITALS", "ward7-vitals")
    s = load_settings()
    assert (s.max_batch, s.device, s.log_level) == (64, "cuda:1", "DEBUG")
    assert s.input_topics["ward7-vitals"] == "vitals"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_BATCH", "0", "VITALWATCH_MAX_BATCH: must be >= 1, got 0"),
        ("MAX_BATCH", "many", "VITALWATCH_MAX_BATCH: must be an integer, got many"),
        ("MAX_WAIT_MS", "0", "VITALWATCH_MAX_WAIT_MS: must be >= 1, got 0"),
        ("METRICS_PORT", "70000", "VITALWATCH_METRICS_PORT: must be <= 65535, got 70000"),
        ("DEVICE", "gpu", "VITALWATCH_DEVICE: must be auto, cpu, cuda or cuda:N, got gpu"),
        ("TORCH_THREADS", "0", "VITALWATCH_TORCH_THREADS: must be >= 1, got 0"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "VITALWATCH_KAFKA_SECURITY_PROTOCOL: must be one of"),
        ("LOG_PSEUDONYMISE", "maybe", "VITALWATCH_LOG_PSEUDONYMISE: must be true or false, got maybe"),
        ("CHECKPOINT", "/nonexistent/ckpt", "VITALWATCH_CHECKPOINT: no such file or directory"),
        ("REDIS_URL", "", "VITALWATCH_REDIS_URL: must not be empty"),
    ],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_sasl_needs_credentials_and_never_echoes_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITALWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VITALWATCH_KAFKA_SASL_PASSWORD", "hunter2")
    with pytest.raises(ConfigError, match="VITALWATCH_KAFKA_SASL_USERNAME: required with SASL_SSL"):
        load_settings()
    monkeypatch.setenv("VITALWATCH_KAFKA_SASL_USERNAME", "svc")
    s = load_settings()
    assert s.kafka_sasl_password is not None and "hunter2" not in repr(s)


@pytest.mark.parametrize("name", ["TOPIC_LABS", "TOPIC_ENCOUNTERS"])
def test_input_topics_must_differ(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV_PREFIX + name, "vitals")
    with pytest.raises(ConfigError, match="input topics must differ"):
        load_settings()


def test_markdown_table_lists_every_setting_with_default_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    table = settings_markdown()
    for field, info in Settings.model_fields.items():
        assert f"`{ENV_PREFIX}{field.upper()}`" in table
        assert info.description
    assert "| `VITALWATCH_MAX_BATCH` | `512` |" in table
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out.strip() == table


def test_check_exits_nonzero_on_bad_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VITALWATCH_MAX_BATCH", "0")
    assert main(["--check"]) == 2
    assert "VITALWATCH_MAX_BATCH" in capsys.readouterr().err
