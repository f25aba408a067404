"""Metrics exposition, the /health report, and what the logs may contain."""

from __future__ import annotations

import asyncio
import logging

import orjson

from worker.operations.health import HealthChecker
from worker.operations.logs import JsonFormatter, Pseudonymiser
from worker.operations.metrics import E2E_BUCKETS, Metrics, observe_many


def test_exposition_has_the_documented_series_and_bounded_labels() -> None:
    m = Metrics()
    m.events.labels(topic="vitals", outcome="scored").inc(3)
    m.admissions.labels(unit="icu").inc()
    m.discharges.labels(disposition="died").inc(2)
    m.consumer_lag.labels(topic="vitals", partition="1").set(12)
    m.set_model("lstm-2026.01", "cpu")
    m.set_model("lstm-2026.02", "cuda")  # a reload replaces, not adds, the info series
    m.set_model("shadow-2026.03", "cuda", role="shadow")  # the shadow has its own, beside it
    body, content_type = m.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'vitalwatch_events_total{outcome="scored",topic="vitals"} 3.0' in text
    assert 'vitalwatch_consumer_lag{partition="1",topic="vitals"} 12.0' in text
    assert 'vitalwatch_admissions_total{unit="icu"} 1.0' in text
    assert 'vitalwatch_discharges_total{disposition="died"} 2.0' in text
    assert 'vitalwatch_model_info{device="cuda",role="live",version="lstm-2026.02"} 1.0' in text
    assert 'vitalwatch_model_info{device="cuda",role="shadow",version="shadow-2026.03"} 1.0' in text
    assert "lstm-2026.01" not in text
    for name in (
        "vitalwatch_batch_size", "vitalwatch_inference_seconds", "vitalwatch_end_to_end_seconds",
        "vitalwatch_redis_seconds", "vitalwatch_redis_errors", "vitalwatch_alerts", "vitalwatch_resident_patients",
    ):
        assert f"# TYPE {name}" in text
    label_names = {label for metric in m.registry.collect() for s in metric.samples for label in s.labels}
    assert label_names <= {
        "topic", "outcome", "partition", "level", "operation", "stage", "version", "device", "role", "dependency", "le", "unit",
        "disposition",
    }


def test_two_pipelines_in_one_process_keep_separate_numbers() -> None:
    a, b = Metrics(), Metrics()
    a.alerts.labels(level="high").inc()
    assert b.registry.get_sample_value("vitalwatch_alerts_total", {"level": "high"}) is None


async def test_health_is_503_and_names_the_dependency_that_is_down() -> None:
    m = Metrics()

    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    checker = HealthChecker({"redis": ok, "kafka": ok}, m, lambda: True, describe=lambda: {"engine": {"ready": True}})
    assert await checker.report() == (200, {"status": "ok", "redis": {"ok": True}, "kafka": {"ok": True}, "engine": {"ready": True}})
    status, body = await HealthChecker({"redis": down, "kafka": hangs}, m, lambda: True, timeout_s=0.05).report()
    assert status == 503 and body["status"] == "unavailable" and body["not_ready"] == ["redis", "kafka"]
    assert body["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["kafka"] == {"ok": False, "error": "TimeoutError"}
    assert m.registry.get_sample_value("vitalwatch_dependency_up", {"dependency": "redis"}) == 0


async def test_health_is_503_naming_the_engine_until_the_model_is_loaded() -> None:
    """The image's health check and `vitalwatch dev` wait for 200: it must mean ready to score."""
    loaded = False

    async def ok() -> None:
        return None

    checker = HealthChecker(
        {"redis": ok, "kafka": ok}, Metrics(), lambda: loaded, describe=lambda: {"engine": {"ready": loaded}}
    )
    status, body = await checker.report()
    assert (status, body["status"], body["not_ready"]) == (503, "unavailable", ["engine"])
    assert body["redis"] == body["kafka"] == {"ok": True} and body["engine"] == {"ready": False}
    loaded = True
    assert (await checker.report())[0] == 200


def test_observing_a_batch_at_once_equals_observing_it_value_by_value() -> None:
    """observe_many reads prometheus_client's internals: this holds it to ``observe`` (the
    bounds themselves, 0, values between and past the last bound)."""
    values = [0.0, *E2E_BUCKETS, 0.003, 0.0051, 0.7, 0.7, 42.0, 301.0, 1e6]
    one_by_one, batched = Metrics(), Metrics()
    for value in values:
        one_by_one.end_to_end_seconds.observe(value)
    observe_many(batched.end_to_end_seconds, values[:7])
    observe_many(batched.end_to_end_seconds, values[7:])
    observe_many(batched.end_to_end_seconds, [])

    def samples(m: Metrics) -> dict:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in m.registry.collect() if metric.name == "vitalwatch_end_to_end_seconds"
            for s in metric.samples if not s.name.endswith("_created")
        }

    assert samples(batched) == samples(one_by_one)
    assert samples(batched)[("vitalwatch_end_to_end_seconds_count", ())] == len(values)


def test_pseudonyms_are_keyed_stable_and_not_the_id() -> None:
    one, same, other = Pseudonymiser(b"site-key"), Pseudonymiser(b"site-key"), Pseudonymiser(b"other-key")
    assert one("MRN-1234") == same("MRN-1234") != other("MRN-1234")
    assert "1234" not in one("MRN-1234") and one("MRN-1234").startswith("p-")
    assert Pseudonymiser(b"k", enabled=False)("MRN-1234") == "MRN-1234"


def test_json_log_lines_carry_extra_fields_without_clobbering_the_level() -> None:
    record = logging.makeLogRecord({"name": "worker.stream.pipeline", "levelno": logging.INFO, "levelname": "INFO", "msg": "alert"})
    record.level = "high"
    record.alert_id = "abc"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["msg"] == "alert" and line["alert_id"] == "abc"
