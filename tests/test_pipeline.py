"""BatchPipeline with a fake engine and publisher: the per-batch order and failure rules.

What matters here is sequencing — publish before persist, discard before a re-score, nothing
raised — which a real broker and Redis would only make slow and flaky to observe. The stream
tests (tests/integration) cover the same rules end to end.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import orjson
import pytest
import redis.exceptions

from schemas.encounter import Encounter
from worker.scoring.engine import AlertDecision, BatchOutcome, InputEvent, ScoredEvent
from worker.operations.logs import Pseudonymiser
from worker.operations.metrics import Metrics
from worker.stream.messages import OutRecord, RawMessage
from worker.stream.pipeline import Backoff, BatchPipeline, OutputTopics, ShadowModel, Stopping

TOPICS = OutputTopics("risk-scores", "alerts", "dead-letters")


class FakeEngine:
    """Scores risk = heart_rate / 200; alerts when it crosses 0.5; applies encounters unscored;
    fails on demand."""

    model_version = "test-1"
    role = "live"
    horizon_h = 6.0

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.score_failures: list[BaseException] = []
        self.persist_failures: list[BaseException] = []
        self.poison_event: str | None = None
        self.persisted = 0
        self.sealed = 0
        self.seen: list[InputEvent] = []  # every event handed to score, in order

    @property
    def resident(self) -> int:
        return 3

    async def score(self, events: Sequence[InputEvent]) -> BatchOutcome:
        self.calls.append(f"score:{len(events)}")
        if self.score_failures:
            raise self.score_failures.pop(0)
        if any(e.event_id == self.poison_event for e in events):
            raise ValueError("engine bug")
        self.seen.extend(events)
        scored, encounters = [], []
        for e in events:
            if isinstance(e.item, Encounter):
                encounters.append(e)
                continue
            risk = e.item.values.get("heart_rate", 60.0) / 200
            alert = AlertDecision(f"a-{e.event_id}", "high", "none", [], {"heart_rate": 3}) if risk > 0.5 else None
            scored.append(ScoredEvent(e, risk, 3 if alert else 0, "high" if alert else "none", alert))
        return BatchOutcome(scored=scored, duplicates=[], encounters=encounters)

    async def persist(self, sealed: Any = None) -> int:
        """Records "persist" (everything), or "persist:sN" for the N-th sealed batch."""
        self.calls.append("persist" if sealed is None else f"persist:{sealed}")
        if self.persist_failures:
            raise self.persist_failures.pop(0)
        self.persisted += 1
        return 1

    def seal(self) -> Any:
        self.sealed += 1
        return f"s{self.sealed}"

    def discard_unpersisted(self) -> None:
        self.calls.append("discard")


class FakePublisher:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.failures: list[BaseException] = []
        self.published: list[OutRecord] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.calls.append(f"publish:{len(records)}")
        if self.failures:
            raise self.failures.pop(0)
        self.published.extend(records)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.published if r.topic == topic]


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def engine(calls: list[str]) -> FakeEngine:
    return FakeEngine(calls)


@pytest.fixture
def publisher(calls: list[str]) -> FakePublisher:
    return FakePublisher(calls)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def pipeline(engine: FakeEngine, publisher: FakePublisher, metrics: Metrics) -> BatchPipeline:
    return BatchPipeline(
        engine, publisher, input_kinds={"vitals": "vitals", "labs": "labs", "encounters": "encounters"}, topics=TOPICS,
        metrics=metrics,
        worker_name="test", max_message_bytes=10_000, pseudonym=Pseudonymiser(b"k"), backoff=Backoff(sleep=no_sleep),
    )


def vitals(offset: int, patient: str = "p1", hr: float = 80, **extra: Any) -> RawMessage:
    body = {"event_id": f"e{offset}", "patient_id": patient, "observed_at": "2026-01-05T08:00:00Z", "heart_rate": hr, **extra}
    return RawMessage("vitals", 0, offset, patient.encode(), orjson.dumps(body), 1_767_600_000.0)


def encounter(offset: int, kind: str, patient: str = "p1", **fields: Any) -> RawMessage:
    times = {"admission": "admitted_at", "transfer": "transferred_at", "discharge": "discharged_at"}
    body = {"event_id": f"adt{offset}", "patient_id": patient, "kind": kind, times[kind]: "2026-01-05T07:00:00Z", **fields}
    return RawMessage("encounters", 0, offset, patient.encode(), orjson.dumps(body), 1_767_600_000.0)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_scores_good_messages_and_dead_letters_bad_ones_in_one_publish(
    pipeline: BatchPipeline, publisher: FakePublisher, calls: list[str], metrics: Metrics
) -> None:
    bad = RawMessage("vitals", 0, 1, b"p1", b"{not json", None)
    await pipeline.process([vitals(0), bad, vitals(2, hr=180)])
    assert calls == ["score:2", "publish:4", "persist"]
    scores = publisher.on("risk-scores")
    assert [s["event_id"] for s in scores] == ["e0", "e2"]
    assert scores[0]["model_version"] == "test-1" and scores[0]["risk"] == pytest.approx(0.4)
    assert [a["triggered_by"] for a in publisher.on("alerts")] == ["e2"]
    (letter,) = publisher.on("dead-letters")
    assert letter["source"] == {"topic": "vitals", "partition": 0, "offset": 1, "key": "p1"}
    assert letter["reason"]["stage"] == "decode" and letter["reason"]["errors"][0]["field"] == "$"
    assert letter["original"] == "{not json"
    assert sample(metrics, "vitalwatch_events_total", topic="vitals", outcome="scored") == 2
    assert sample(metrics, "vitalwatch_events_total", topic="vitals", outcome="invalid") == 1
    assert sample(metrics, "vitalwatch_alerts_total", level="high") == 1


async def test_encounters_travel_with_the_observations_unscored_and_are_counted(
    pipeline: BatchPipeline, engine: FakeEngine, publisher: FakePublisher, calls: list[str], metrics: Metrics
) -> None:
    batch = [
        vitals(0),  # before its admission: scored all the same
        encounter(0, "admission", unit="icu", age=64, sex="male"),
        encounter(1, "admission", patient="p2"),
        vitals(1, patient="p2"),
        encounter(2, "transfer", unit="step_down"),
        encounter(3, "discharge", disposition="died"),
        encounter(4, "discharge", patient="p2"),
    ]
    await pipeline.process(batch)
    assert calls == ["score:7", "publish:2", "persist"], "no output for an encounter: nothing was measured"
    assert [(e.topic, e.offset) for e in engine.seen] == [(m.topic, m.offset) for m in batch], "in offset order"
    assert [s["event_id"] for s in publisher.on("risk-scores")] == ["e0", "e1"]
    assert sample(metrics, "vitalwatch_events_total", topic="encounters", outcome="applied") == 5
    assert sample(metrics, "vitalwatch_events_total", topic="vitals", outcome="scored") == 2
    assert sample(metrics, "vitalwatch_admissions_total", unit="icu") == 1
    assert sample(metrics, "vitalwatch_admissions_total", unit="unknown") == 1
    assert sample(metrics, "vitalwatch_transfers_total", unit="step_down") == 1
    assert sample(metrics, "vitalwatch_discharges_total", disposition="died") == 1
    assert sample(metrics, "vitalwatch_discharges_total", disposition="unknown") == 1


async def test_an_invalid_encounter_is_dead_lettered_naming_the_field(
    pipeline: BatchPipeline, engine: FakeEngine, publisher: FakePublisher, metrics: Metrics
) -> None:
    bad_unit = encounter(0, "transfer", unit="bedroom")
    wrong_key = RawMessage("encounters", 0, 1, b"someone-else", encounter(1, "discharge").value, None)
    await pipeline.process([bad_unit, wrong_key, encounter(2, "admission")])
    letters = publisher.on("dead-letters")
    assert [letter["source"]["offset"] for letter in letters] == [0, 1]
    assert letters[0]["reason"]["errors"][0]["field"] == "unit"
    assert letters[1]["reason"]["errors"][0]["field"] == "key"
    assert [e.offset for e in engine.seen] == [2]
    assert sample(metrics, "vitalwatch_events_total", topic="encounters", outcome="invalid") == 2
    assert sample(metrics, "vitalwatch_admissions_total", unit="unknown") == 1


async def test_key_must_be_the_patient_id(pipeline: BatchPipeline, publisher: FakePublisher) -> None:
    wrong = RawMessage("vitals", 0, 5, b"someone-else", vitals(5).value, None)
    await pipeline.process([wrong])
    (letter,) = publisher.on("dead-letters")
    assert letter["reason"]["errors"][0]["field"] == "key"
    assert publisher.on("risk-scores") == []


async def test_failed_publish_discards_state_and_rescores_before_persisting(
    pipeline: BatchPipeline, engine: FakeEngine, publisher: FakePublisher, calls: list[str], metrics: Metrics
) -> None:
    publisher.failures = [ConnectionError("broker gone"), TimeoutError()]
    await pipeline.process([vitals(0), vitals(1)])
    assert calls == [
        "score:2", "publish:2", "discard",
        "score:2", "publish:2", "discard",
        "score:2", "publish:2", "persist",
    ]
    assert len(publisher.on("risk-scores")) == 2
    assert sample(metrics, "vitalwatch_batch_retries_total", stage="publish") == 2
    assert sample(metrics, "vitalwatch_events_total", topic="vitals", outcome="scored") == 2


async def test_redis_outage_while_restoring_state_is_retried(
    pipeline: BatchPipeline, engine: FakeEngine, calls: list[str], metrics: Metrics
) -> None:
    engine.score_failures = [redis.exceptions.ConnectionError()] * 5  # more than ENGINE_ATTEMPTS: an outage, not a bug
    await pipeline.process([vitals(0)])
    assert calls[-3:] == ["score:1", "publish:1", "persist"]
    assert calls.count("discard") == 5
    assert sample(metrics, "vitalwatch_redis_errors_total", operation="load") == 5


async def test_failed_persist_is_retried_without_republishing(
    pipeline: BatchPipeline, engine: FakeEngine, calls: list[str], metrics: Metrics
) -> None:
    engine.persist_failures = [redis.exceptions.TimeoutError()] * 3
    await pipeline.process([vitals(0)])
    assert calls == ["score:1", "publish:1", "persist", "persist", "persist", "persist"]
    assert sample(metrics, "vitalwatch_redis_errors_total", operation="persist") == 3


async def test_a_message_the_engine_cannot_score_is_isolated_and_dead_lettered(
    pipeline: BatchPipeline, engine: FakeEngine, publisher: FakePublisher
) -> None:
    engine.poison_event = "e1"
    await pipeline.process([vitals(0), vitals(1, patient="p2"), vitals(2, patient="p3")])
    assert sorted(s["event_id"] for s in publisher.on("risk-scores")) == ["e0", "e2"]
    (letter,) = publisher.on("dead-letters")
    assert letter["source"]["offset"] == 1
    assert letter["reason"] == {"errors": [{"field": "$", "problem": "scoring failed: ValueError", "value": None}], "stage": "score"}
    assert engine.persisted == 2


async def test_stopping_during_an_outage_raises_instead_of_returning(
    engine: FakeEngine, publisher: FakePublisher, metrics: Metrics, calls: list[str]
) -> None:
    stop = asyncio.Event()
    pipeline = BatchPipeline(
        engine, publisher, input_kinds={"vitals": "vitals"}, topics=TOPICS, metrics=metrics, worker_name="t",
        max_message_bytes=10_000, pseudonym=Pseudonymiser(None), backoff=Backoff(should_stop=stop.is_set, sleep=no_sleep),
    )
    publisher.failures = [ConnectionError()] * 3
    stop.set()
    with pytest.raises(Stopping):
        await pipeline.process([vitals(0)])
    assert "persist" not in calls


def test_backoff_grows_to_a_cap() -> None:
    backoff = Backoff(first_s=0.1, cap_s=5.0)
    assert [backoff.delay(a) for a in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


class ShadowEngine(FakeEngine):
    """A second model: another version, every risk a little higher, so its scores are told apart."""

    model_version = "shadow-1"

    async def score(self, events: Sequence[InputEvent]) -> BatchOutcome:
        outcome = await super().score(events)
        for scored in outcome.scored:
            scored.risk = min(1.0, scored.risk + 0.1)
        return outcome


@pytest.fixture
def shadow_engine(calls: list[str]) -> FakeEngine:
    return ShadowEngine(calls)


@pytest.fixture
def shadowed(engine: FakeEngine, shadow_engine: FakeEngine, publisher: FakePublisher, metrics: Metrics) -> BatchPipeline:
    return BatchPipeline(
        engine, publisher, input_kinds={"vitals": "vitals", "encounters": "encounters"}, topics=TOPICS, metrics=metrics,
        worker_name="test", max_message_bytes=10_000, pseudonym=Pseudonymiser(b"k"), backoff=Backoff(sleep=no_sleep),
        shadow=ShadowModel(shadow_engine, "risk-scores-shadow"),
    )


async def test_a_shadow_scores_every_event_in_the_same_publish_and_never_alerts(
    shadowed: BatchPipeline, publisher: FakePublisher, calls: list[str], metrics: Metrics
) -> None:
    await shadowed.process([vitals(0, hr=80), vitals(1, "p2", hr=150), encounter(2, "admission", "p3")])
    # One publish holding both models' scores, then both engines persisted: only then may Faust commit.
    assert calls == ["score:3", "score:3", "publish:5", "persist", "persist"]
    live, shadow = publisher.on("risk-scores"), publisher.on("risk-scores-shadow")
    assert [r["event_id"] for r in live] == [r["event_id"] for r in shadow] == ["e0", "e1"]
    assert {r["model_version"] for r in shadow} == {"shadow-1"} and {r["model_version"] for r in live} == {"test-1"}
    assert [s["risk"] - l["risk"] for l, s in zip(live, shadow)] == pytest.approx([0.1, 0.1])
    # The live model alerted on p2; the shadow, scoring p2 high as well, alerted nobody.
    assert [a["patient_id"] for a in publisher.on("alerts")] == ["p2"]
    assert sample(metrics, "vitalwatch_shadow_inference_seconds_count") == 1
    assert sample(metrics, "vitalwatch_events_total", topic="vitals", outcome="scored") == 2


async def test_a_failed_publish_discards_both_engines_and_rescores_both(
    shadowed: BatchPipeline, publisher: FakePublisher, calls: list[str]
) -> None:
    publisher.failures.append(OSError("broker down"))
    await shadowed.process([vitals(0)])
    assert calls == [
        "score:1", "score:1", "publish:2", "discard", "discard",
        "score:1", "score:1", "publish:2", "persist", "persist",
    ]


async def test_a_shadow_persist_failure_retries_until_both_states_are_in_redis(
    shadowed: BatchPipeline, shadow_engine: FakeEngine, engine: FakeEngine, calls: list[str]
) -> None:
    shadow_engine.persist_failures.append(redis.exceptions.ConnectionError("down"))
    await shadowed.process([vitals(0)])
    assert calls[-4:] == ["persist", "persist", "persist", "persist"]
    assert (engine.persisted, shadow_engine.persisted) == (2, 1)
