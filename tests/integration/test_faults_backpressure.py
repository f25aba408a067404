"""Input arriving faster than the worker can score must not grow its memory without bound.

The worker pulls (Kafka consumers do), and what it holds in flight is capped by configuration:
Faust's stream buffer (``stream_buffer_maxsize``), aiokafka's fetch sizes and one micro-batch.
So a backlog four times larger must not need more memory than a smaller one once the
steady state is reached. The test floods the input with a small backlog, then a four times
larger one, sampling the worker's VmRSS from /proc throughout, and checks that the larger
flood adds only a small, fixed amount on top of the smaller one's peak — where a worker that
buffered its backlog would add memory in proportion to it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.integration.fault_harness import all_scored, metric, produce_now, rss_mib, vitals_events

pytestmark = [pytest.mark.integration]


class RssSampler:
    """Samples a process's VmRSS every 50 ms from a thread; ``peak`` since the last reset."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, AssertionError):
                return

    def reset(self) -> float:
        self.peak = rss_mib(self.pid)
        return self.peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def flood_run(
    start_worker: Any, producer: Any, topics: dict[str, str], read_output: Any, *, small: int, bound_mib: float,
    warmup: int = 0,
) -> None:
    """``warmup`` events are scored before anything is measured. The worker's native heap
    (torch's tensors of every batch shape, through glibc malloc) grows over its first ~230 000
    events to a steady size and stays there (measured in one process: +76 MiB, then flat for
    another 550 000 events), so a soak that compares floods of tens of thousands of events
    must start from that steady state, or it measures the allocator's warm-up, not buffering."""
    started = time.monotonic()
    events = vitals_events(warmup + small * 5, seed=51)
    warm, first, second = events[:warmup], events[warmup : warmup + small], events[warmup + small :]
    worker = start_worker()
    worker.wait_ready()
    sampler = RssSampler(worker.proc.pid)
    scores = read_output(topics["risk_scores"])
    try:
        if warm:
            produce_now(producer, topics, warm)
            scores.until(all_scored([e.payload["event_id"] for e in warm]), 300, [worker])
        ready = sampler.reset()
        produce_now(producer, topics, first)
        scores.until(all_scored([e.payload["event_id"] for e in first]), 120, [worker])
        after_small = sampler.peak

        flooded = time.monotonic()
        produce_now(producer, topics, second)
        produced_s = time.monotonic() - flooded
        lag = 0.0
        while not all_scored([e.payload["event_id"] for e in second])(scores.poll()):
            worker.assert_alive()
            lag = max(lag, metric(worker.metrics(), "vitalwatch_consumer_lag"))
            assert time.monotonic() - flooded < 240, "the worker did not catch up"
        drained_s = time.monotonic() - flooded
        after_large = sampler.peak
    finally:
        sampler.stop()
    growth = after_large - after_small
    assert lag > 0, "the flood must outrun the worker for this test to mean anything"
    assert growth < bound_mib, (
        f"RSS grew {growth:.0f} MiB more for a {len(second)}-event backlog than for {len(first)} "
        f"(ready {ready:.0f}, peaks {after_small:.0f} / {after_large:.0f} MiB)"
    )
    print(
        f"\nRSS ready {ready:.0f} MiB, peak {after_small:.0f} MiB after {len(first)} events, {after_large:.0f} MiB after a "
        f"{len(second)}-event flood produced in {produced_s:.1f} s and drained in {drained_s:.1f} s "
        f"(max lag seen {lag:.0f}); growth {growth:.1f} MiB; {time.monotonic() - started:.1f} s"
    )


@pytest.mark.timeout(150)
def test_a_flood_four_times_larger_does_not_need_more_memory(start_worker, producer, topics, read_output) -> None:
    flood_run(start_worker, producer, topics, read_output, small=1_200, bound_mib=40)


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_soak_flood_of_100000_events_memory_stays_bounded(start_worker, producer, topics, read_output) -> None:
    flood_run(start_worker, producer, topics, read_output, small=25_000, bound_mib=40, warmup=200_000)
