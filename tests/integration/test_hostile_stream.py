"""The whole hostile corpus, interleaved with a ward's good events, through a real worker.

Every bad message must land on dead-letters with the reason the corpus expects (matched by its
source topic, partition and offset), every good event must be scored exactly once, and the
worker must still be alive and healthy at the end: bad input never stops the worker and never
takes good events down with it.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from models.datasets.simulator import interleave, simulate_cohort
from tests.hostile_corpus import HOSTILE_KEY, BadMessage, encounter_corpus, hostile_corpus, outcome_corpus
from tests.integration.fault_harness import all_scored, metric

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_every_hostile_message_is_dead_lettered_with_its_reason_and_every_good_event_scored_once(
    start_worker, producer, topics, read_output
) -> None:
    started = time.monotonic()
    now = time.time()
    corpus = hostile_corpus(now) + encounter_corpus(now) + outcome_corpus(now)  # every input topic's
    good = [event for _, event in interleave(simulate_cohort(12, seed=61))][: 2 * len(corpus)]
    worker = start_worker()
    worker.wait_ready()

    pending_bad: list[tuple[BadMessage, object]] = []
    for i, message in enumerate(corpus):
        for event in good[2 * i : 2 * i + 2]:
            producer.send(topics[event.topic], key=event.payload["patient_id"].encode(), value=orjson.dumps(event.payload))
        pending_bad.append((message, producer.send(topics[message.kind], key=HOSTILE_KEY.encode(), value=message.raw)))
    producer.flush()
    at: dict[tuple[str, int, int], BadMessage] = {}
    for message, future in pending_bad:
        meta = future.get(timeout=30)  # type: ignore[attr-defined]
        at[(meta.topic, meta.partition, meta.offset)] = message

    good_ids = [e.payload["event_id"] for e in good]
    letters = read_output(topics["dead_letters"]).until(lambda r: len(r) >= len(corpus), 120, [worker])
    score_reader = read_output(topics["risk_scores"])
    score_reader.until(all_scored(good_ids), 60, [worker])
    time.sleep(1.0)  # a second score for any event would have arrived by now
    scores = score_reader.poll()

    assert len(letters) == len(corpus), f"{len(letters)} dead letters for {len(corpus)} bad messages"
    unexplained = []
    for letter in letters:
        source = letter["source"]
        message = at.pop((source["topic"], source["partition"], source["offset"]), None)
        assert message is not None, f"dead letter for an unknown source {source}"
        errors = letter["reason"]["errors"]
        if not any(e["field"] == message.field and message.problem in e["problem"] for e in errors):
            unexplained.append((message.label, errors[:3]))
        assert letter["original_size"] == len(message.raw), message.label
        assert letter["truncated"] == (len(message.raw) > 64 * 1024), message.label
        assert source["key"] == HOSTILE_KEY
    assert not at, f"never dead-lettered: {[m.label for m in at.values()][:10]}"
    assert not unexplained, f"{len(unexplained)} dead letters without the expected reason: {unexplained[:5]}"

    per_event = Counter(s["event_id"] for s in scores)
    assert set(per_event) == set(good_ids), "only good events are scored, and all of them"
    assert max(per_event.values()) == 1, [e for e, n in per_event.items() if n > 1][:5]

    worker.assert_alive()
    status, body = worker.health()  # type: ignore[misc]
    assert status == 200, body
    invalid = metric(worker.metrics(), "vitalwatch_events_total", outcome="invalid")
    assert invalid == len(corpus)
    print(
        f"\n{len(corpus)} hostile messages ({sum(len(m.raw) for m in corpus) / 1e6:.1f} MB) among {len(good)} good events: "
        f"{len(letters)} dead letters with their reasons, {len(scores)} scores; {time.monotonic() - started:.1f} s"
    )
