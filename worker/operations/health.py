"""The /health report: can this worker reach Redis and Kafka right now?

Orchestrators restart or stop routing to a worker on 503, so the check is live (a PING and a
metadata request, each bounded by a short timeout) rather than "the last batch went fine": a
quiet ward at night sends no events, and silence must not read as failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from worker.operations.metrics import Metrics

Probe = Callable[[], Awaitable[Any]]


@dataclass
class HealthChecker:
    """Runs the dependency probes and reports them as (HTTP status, JSON body)."""

    probes: dict[str, Probe]
    metrics: Metrics
    timeout_s: float = 2.0
    describe: Callable[[], dict[str, Any]] = dict

    async def _probe(self, name: str, probe: Probe) -> dict[str, Any]:
        try:
            await asyncio.wait_for(probe(), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; the type says why
            self.metrics.dependency_up.labels(dependency=name).set(0)
            return {"ok": False, "error": type(exc).__name__}
        self.metrics.dependency_up.labels(dependency=name).set(1)
        return {"ok": True}

    async def report(self) -> tuple[int, dict[str, Any]]:
        names = list(self.probes)
        results = await asyncio.gather(*(self._probe(n, self.probes[n]) for n in names))
        checks = dict(zip(names, results))
        healthy = all(r["ok"] for r in results)
        body = {"status": "ok" if healthy else "unavailable", **checks, **self.describe()}
        return (200 if healthy else 503), body
