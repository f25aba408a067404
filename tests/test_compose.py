"""docker-compose.yml, the Dockerfile and the Prometheus/Grafana files agree with the code.

No Docker engine runs here, so the stack cannot be started; instead every place where the
deployment files name something the code defines — a subcommand, a flag, a VITALWATCH_*
variable, a port, a topic, a metric — is checked against the code itself.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from worker.cli import build_parser
from worker.operations.config import ENV_PREFIX, Settings, env_name, load_settings
from worker.operations.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                   "gauge": ("",)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def _parse(argv: list[str]) -> Any:
    assert argv[0] == "vitalwatch", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse exits on an unknown subcommand or flag
        raise AssertionError(f"`{' '.join(argv)}` does not parse with worker.cli: exit {exc.code}") from None


def test_worker_and_simulator_commands_parse_with_the_real_cli(services: dict[str, Any]) -> None:
    assert _parse(_command(services["worker"])).command == "worker"
    simulate = _parse(_command(services["simulator"]))
    assert simulate.command == "simulate" and simulate.patients > 0 and simulate.speed > 0


def test_every_vitalwatch_variable_is_a_valid_setting(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {env_name(field) for field in Settings.model_fields}
    for name, service in services.items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items() if k.startswith(ENV_PREFIX)}
        assert set(env) <= known, f"{name}: unknown settings {sorted(set(env) - known)}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        load_settings()  # raises ConfigError naming a bad value
        for key in env:
            monkeypatch.delenv(key)


def test_worker_reaches_the_compose_kafka_and_redis(services: dict[str, Any]) -> None:
    env = services["worker"]["environment"]
    kafka = services["kafka"]["environment"]
    assert f"PLAINTEXT://{env['VITALWATCH_KAFKA_BOOTSTRAP']}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert re.fullmatch(r"redis://redis:6379/\d+", env["VITALWATCH_REDIS_URL"])
    assert "redis" in services["worker"]["depends_on"] and "kafka-init" in services["worker"]["depends_on"]


def test_metrics_port_is_the_same_everywhere(services: dict[str, Any]) -> None:
    port = Settings.model_fields["metrics_port"].default
    worker = services["worker"]
    assert int(worker["environment"]["VITALWATCH_METRICS_PORT"]) == port
    assert [int(p) for p in worker["expose"]] == [port]
    scrape = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())["scrape_configs"]
    targets = [(sd["names"], sd["port"]) for job in scrape for sd in job["dns_sd_configs"]]
    assert targets == [(["worker"], port)]
    assert f"EXPOSE {port}" in (REPO / "Dockerfile").read_text()


def test_init_container_creates_exactly_the_settings_topics(services: dict[str, Any]) -> None:
    env = services["kafka-init"]["environment"]
    created = set(env["TOPICS"].split()) | {env["DEAD_LETTER_TOPIC"], env["SCORED_OUTCOMES_TOPIC"]}
    defaults = Settings.model_fields
    expected = {defaults[f].default for f in defaults if f.startswith("topic_")}
    assert created == expected and len(expected) == 10
    assert int(env["SCORED_OUTCOMES_RETENTION_MS"]) == -1  # retained, never deleted by age
    assert int(env["PARTITIONS"]) > 1
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_nothing_is_published_beyond_loopback_and_kafka_redis_not_at_all(services: dict[str, Any]) -> None:
    for name in ("kafka", "kafka-init", "redis", "worker", "simulator"):
        assert not services[name].get("ports"), f"{name} publishes ports"
    for name, service in services.items():
        for mapping in service.get("ports") or []:
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} on every interface"


def test_mounted_deploy_files_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "--interval" in health
    assert any("/health" in line for line in lines[lines.index(health):])
    assert "torch==2.13.0" in (REPO / "Dockerfile").read_text()


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    return {family.name + suffix for family in registry.collect() for suffix in SAMPLE_SUFFIXES[family.type]}


def test_grafana_queries_only_metrics_the_worker_exports() -> None:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/vitalwatch.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bvitalwatch_[a-z0-9_]+", expr)}
    assert used and used <= _exported_names(), sorted(used - _exported_names())
    for family in ("events_total", "end_to_end_seconds_bucket", "batch_size_bucket", "inference_seconds_bucket",
                   "alerts_total", "consumer_lag", "redis_errors_total", "admissions_total", "transfers_total",
                   "discharges_total"):
        assert f"vitalwatch_{family}" in used, f"no panel shows vitalwatch_{family}"


def test_grafana_has_the_clinical_performance_row() -> None:
    """AUROC over 7 and 30 days for the model and NEWS2, PPV, sensitivity, alert burden, lead
    time and calibration, from the live-accuracy counters (docs/operations.md's PromQL)."""
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/vitalwatch.json").read_text())
    row = next(i for i, p in enumerate(dashboard["panels"]) if p["type"] == "row" and p["title"] == "Clinical performance")
    exprs = " ".join(t["expr"] for p in dashboard["panels"][row + 1 :] for t in p["targets"])
    for needed in (
        "vitalwatch_labelled_negatives_total[7d]", "vitalwatch_labelled_positives_ranked_total[30d]",
        "vitalwatch_labelled_news2_positives_ranked_total[7d]", 'vitalwatch_labelled_alerts_total{label="positive"}',
        'vitalwatch_outcomes_total{alerted="true"}', "vitalwatch_patient_hours_total", "vitalwatch_alert_lead_hours_bucket",
        "vitalwatch_calibration_observed_total", "vitalwatch_calibration_predicted_total",
    ):
        assert needed in exprs, needed


def test_grafana_provisioning_points_at_the_dashboard_and_datasource(services: dict[str, Any]) -> None:
    provisioning = REPO / "deploy/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/vitalwatch.json").read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {datasource["uid"]}
    provider = yaml.safe_load((provisioning / "dashboards/vitalwatch.yml").read_text())["providers"][0]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
