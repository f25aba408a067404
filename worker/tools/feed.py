"""Publishing time-ordered events to the input topics in accelerated time.

`vitalwatch simulate` (simulated patients) and `vitalwatch replay` (real CLIF or PhysioNet
stays) differ only in where their events come from; both are fed to the worker the way a
hospital's interface engine would send them: vitals.v1 / labs.v1 / encounters.v1 JSON keyed by
patient id, with kafka-python (batched, acks=all), paced and stamped by this module.

Time: ``speed`` X plays X seconds of hospital time per wall second; 0 sends as fast as the
broker takes them. The worker rejects observations stamped more than five minutes in the
future, and the model reads the real gaps between observations, so payload timestamps keep
their spacing but the whole timeline is shifted into the past: the last event sent is stamped
a few seconds before the moment it is sent, every earlier one further back. At speed 1 that
is live time; faster, it replays the recent past at X times real speed.

The pacing starts at the first observation: a stay's admission may come hours before anything
is charted (a ward or ED stay before the ICU), and waiting those hours out would only delay
the scores. Encounters before the first observation are sent at once, stamped at their own
(earlier) times, so the worker learns each stay's context with the real intervals.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import orjson

from models.datasets.encounters import time_field

if TYPE_CHECKING:
    from models.datasets.events import SimEvent
    from worker.operations.config import Settings

#: Seconds by which the newest timestamp trails the wall clock, so clock skew between this
#: host and the worker's never makes an observation look like it comes from the future.
STAMP_MARGIN_S = 5
#: Seconds between progress lines.
PROGRESS_EVERY_S = 2.0
#: Longest wait for the broker to acknowledge what is still buffered at the end.
FLUSH_TIMEOUT_S = 30.0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of patients, stays, resamples)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (a duration)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0 (a speed, where 0 means unpaced)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


@dataclass(frozen=True)
class Timeline:
    """When each event is due on the wall clock, and the timestamp it carries.

    ``speed`` 0 means no pacing. ``shift_s`` (whole seconds, so stamps stay whole seconds) is
    chosen so that no event is stamped later than STAMP_MARGIN_S before its send time.
    """

    sim_start: float
    wall_start: float
    speed: float
    shift_s: int

    @classmethod
    def plan(cls, sim_start: float, sim_end: float, speed: float, wall_start: float, now: float) -> "Timeline":
        """Place events in [sim_start, sim_end] so the stamps never run ahead of the wall clock.

        Faster than real time the event clock gains on the wall clock, so the last event is
        the one to pin (it lands at ``now + wall span - margin``); slower than real time the
        first one is. ``now`` is POSIX time, ``wall_start`` the monotonic clock's.
        """
        span = sim_end - sim_start
        wall_span = span / speed if speed > 0 else 0.0
        first_stamp = now - STAMP_MARGIN_S + min(0.0, wall_span - span)
        return cls(sim_start, wall_start, speed, math.floor(first_stamp - sim_start))

    def due(self, observed_ts: float) -> float:
        """Monotonic time at which the event is to be sent (its own time, scaled; at once for
        an event before ``sim_start``)."""
        if self.speed == 0:
            return self.wall_start
        return self.wall_start + (observed_ts - self.sim_start) / self.speed


def shift_stamp(stamp: str, seconds: int) -> str:
    """An RFC 3339 timestamp moved by whole seconds, keeping its UTC offset ("Z" stays "Z")."""
    moved = (datetime.fromisoformat(stamp) + timedelta(seconds=seconds)).isoformat()
    return moved.removesuffix("+00:00") + "Z" if stamp.endswith("Z") else moved


def shifted_payload(event: "SimEvent", shift_s: int) -> bytes:
    """The payload with its time field (observed_at, or an encounter's admitted_at, ...) moved."""
    field = time_field(event.payload)
    return orjson.dumps({**event.payload, field: shift_stamp(event.payload[field], shift_s)})


def first_observation_ts(events: Sequence["SimEvent"]) -> float:
    """Where pacing starts: the first observation's time (the first event's when there is none)."""
    return next((e.observed_ts for e in events if e.topic in ("vitals", "labs")), events[0].observed_ts)


def events_to_send(events: Sequence["SimEvent"], speed: float, duration_s: float | None) -> Sequence["SimEvent"]:
    """The prefix of time-ordered events that a paced run of ``duration_s`` can reach."""
    if not events or duration_s is None or speed == 0:
        return events
    horizon = first_observation_ts(events) + duration_s * speed
    end = next((i for i, e in enumerate(events) if e.observed_ts > horizon), len(events))
    return events[:end]


class Progress:
    """Counts sends and failures and prints a progress line every PROGRESS_EVERY_S."""

    def __init__(self, name: str) -> None:
        self.name = name  # the command, first word of every line
        self.sent: dict[str, int] = {}
        self.failed = 0
        self.clock: float | None = None  # the (shifted) time of the latest event sent
        self._lock = threading.Lock()  # failures are counted on kafka-python's sender thread
        self._next_print = time.monotonic() + PROGRESS_EVERY_S

    def on_sent(self, topic: str, stamped_ts: float) -> None:
        self.sent[topic] = self.sent.get(topic, 0) + 1
        self.clock = stamped_ts
        if time.monotonic() >= self._next_print:
            self.print_line()
            self._next_print = time.monotonic() + PROGRESS_EVERY_S

    def on_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def line(self) -> str:
        by_topic = ", ".join(f"{topic} {n}" for topic, n in sorted(self.sent.items()))
        clock = "-" if self.clock is None else f"{datetime.fromtimestamp(self.clock, timezone.utc):%Y-%m-%d %H:%M:%S}Z"
        return f"{self.name}: {sum(self.sent.values())} events sent ({by_topic or 'none'}), clock {clock}"

    def print_line(self) -> None:
        print(self.line(), flush=True)


@contextmanager
def signals_handled(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (docker stop, `vitalwatch dev`) and SIGINT end the run after a flush, not mid-batch."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def publish(
    producer: Any, events: Sequence["SimEvent"], topics: dict[str, str], timeline: Timeline,
    progress: Progress, stop: threading.Event, deadline: float | None,
) -> None:
    """Send each event when it is due, until the events run out, the deadline passes or stop."""
    for event in events:
        wait = timeline.due(event.observed_ts) - time.monotonic()
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        if (wait > 0 and stop.wait(wait)) or stop.is_set():
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        topic = topics[event.topic]
        value = shifted_payload(event, timeline.shift_s)
        future = producer.send(topic, key=event.payload["patient_id"].encode(), value=value)
        future.add_errback(progress.on_failed)
        progress.on_sent(topic, event.observed_ts + timeline.shift_s)


def feed(name: str, settings: "Settings", events: Sequence["SimEvent"], speed: float, duration_s: float | None, what: str) -> int:
    """Publish time-ordered ``events`` paced at ``speed`` (for at most ``duration_s`` wall
    seconds) to the input topics of ``settings``, reporting progress as ``name``; ``what``
    describes the events on the opening line. The exit code: 0, or 1 when Kafka cannot be
    reached or a send failed. SIGTERM/SIGINT stop it after a flush."""
    from kafka.errors import KafkaError

    from worker.tools import kafka_clients

    try:
        producer = kafka_clients.producer(settings)
    except KafkaError as exc:
        print(f"vitalwatch {name}: cannot reach Kafka at {settings.kafka_bootstrap}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{name}: {what}, {len(events)} events to {settings.kafka_bootstrap} at {'full speed' if speed == 0 else f'{speed:g}x'}",
        flush=True,
    )
    start = time.monotonic()
    timeline = Timeline.plan(first_observation_ts(events), events[-1].observed_ts, speed, start, time.time())
    progress = Progress(name)
    deadline = start + duration_s if duration_s else None
    topics = {
        "vitals": settings.topic_vitals, "labs": settings.topic_labs, "encounters": settings.topic_encounters,
        "outcomes": settings.topic_outcomes,
    }
    stop = threading.Event()
    try:
        with signals_handled(stop):
            publish(producer, events, topics, timeline, progress, stop, deadline)
            producer.flush(timeout=FLUSH_TIMEOUT_S)
    except KafkaError as exc:
        print(f"vitalwatch {name}: Kafka error: {exc}", file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=5)
    progress.print_line()
    print(f"{name}: done in {time.monotonic() - start:.1f} s, {progress.failed} failed sends", flush=True)
    return 1 if progress.failed else 0
