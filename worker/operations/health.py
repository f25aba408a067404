"""The /health report: is the model loaded, and can this worker reach Redis and Kafka right now?

Orchestrators restart or stop routing to a worker on 503, and the image's health check, the
compose file and ``vitalwatch dev`` wait for 200 before they start feeding it, so 200 means
ready to score: the engine is built (model loaded) and both dependencies answer. The
dependency checks are live (a PING and a metadata request, each bounded by a short timeout)
rather than "the last batch went fine": a quiet ward at night sends no events, and silence
must not read as failure. A failed check may say what the worker is waiting for
(``waiting_for``: the primary a Sentinel set has yet to name, replicas that are not online),
since the same words tell an operator why batches are held.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from worker.operations.metrics import Metrics

Probe = Callable[[], Awaitable[Any]]


@dataclass
class HealthChecker:
    """Runs the dependency probes and reports them as (HTTP status, JSON body)."""

    probes: dict[str, Probe]
    metrics: Metrics
    engine_ready: Callable[[], bool]  # the model is loaded and the pipeline built
    timeout_s: float = 2.0
    describe: Callable[[], dict[str, Any]] = dict
    #: Per dependency: what the worker waits for when its probe failed with this error (a
    #: Sentinel set's primary, a number of replicas), shown as ``waiting_for``.
    waiting_for: dict[str, Callable[[BaseException], str]] = field(default_factory=dict)

    async def _probe(self, name: str, probe: Probe) -> dict[str, Any]:
        try:
            await asyncio.wait_for(probe(), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; the type says why
            self.metrics.dependency_up.labels(dependency=name).set(0)
            report: dict[str, Any] = {"ok": False, "error": type(exc).__name__}
            if name in self.waiting_for:
                report["waiting_for"] = self.waiting_for[name](exc)
            return report
        self.metrics.dependency_up.labels(dependency=name).set(1)
        return {"ok": True}

    async def report(self) -> tuple[int, dict[str, Any]]:
        """200 when the engine is ready and every probe passed, else 503 with ``not_ready``
        naming each part that is not (``engine`` while the model is still loading)."""
        names = list(self.probes)
        results = await asyncio.gather(*(self._probe(n, self.probes[n]) for n in names))
        checks = dict(zip(names, results))
        not_ready = ([] if self.engine_ready() else ["engine"]) + [n for n, r in checks.items() if not r["ok"]]
        if not not_ready:
            return 200, {"status": "ok", **checks, **self.describe()}
        return 503, {"status": "unavailable", "not_ready": not_ready, **checks, **self.describe()}
