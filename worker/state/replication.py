"""Acknowledged means replicated: how many replicas must hold a batch's state before it counts.

Redis replicates asynchronously. The pipeline commits a batch's Kafka offsets once ``persist``
returns; if the primary then dies before a replica received the write, the promoted replica
holds older state while Kafka never redelivers those events. So with ``replicas`` > 0 a write
is followed, on the same connection, by ``WAIT replicas timeout_ms`` (the count of replicas
that acknowledged every write this connection made), and fewer than asked is a failed write:
``NotReplicated``, a RedisError, so the pipeline retries it like any Redis outage and commits
nothing meanwhile. The retry rewrites the same bytes (the engine still holds them), so a
write that reached the primary but not enough replicas costs nothing but time.

The health probe asks each primary how many replicas are attached and online
(``online_replicas``): a worker waiting for a replica that is gone says so on /health.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import redis.exceptions


class NotReplicated(redis.exceptions.RedisError):
    """Fewer replicas than required acknowledged a write (or are online) at ``node``."""

    def __init__(self, node: str, acknowledged: int, wanted: int, timeout_ms: int | None = None) -> None:
        how = f"acknowledged the write within {timeout_ms} ms" if timeout_ms is not None else "online"
        super().__init__(f"{acknowledged} of {wanted} replicas of {node} {how}")
        self.node = node
        self.acknowledged = acknowledged
        self.wanted = wanted


@dataclass(frozen=True)
class Replication:
    """The WAIT rule: ``replicas`` acknowledgements within ``timeout_ms`` per primary written to."""

    replicas: int = 0
    timeout_ms: int = 1000

    def __post_init__(self) -> None:
        if self.replicas < 0 or self.timeout_ms <= 0:
            raise ValueError(f"replicas must be >= 0 and timeout_ms > 0, got {self.replicas}, {self.timeout_ms}")

    @property
    def wanted(self) -> bool:
        return self.replicas > 0

    def wait_args(self) -> tuple[str, int, int]:
        """The WAIT command to send after a write, on the write's connection."""
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, node: str, acknowledged: int) -> None:
        """Raise NotReplicated unless WAIT at ``node`` counted enough replicas."""
        if acknowledged < self.replicas:
            raise NotReplicated(node, acknowledged, self.replicas, self.timeout_ms)

    def check_online(self, node: str, info: Mapping[str, Any]) -> None:
        """Raise NotReplicated unless ``node``'s INFO replication lists enough online replicas."""
        online = online_replicas(info)
        if online < self.replicas:
            raise NotReplicated(node, online, self.replicas)


def online_replicas(info: Mapping[str, Any]) -> int:
    """Replicas attached and streaming, from a primary's parsed ``INFO replication``
    (redis-py turns each ``slaveN:ip=…,state=online,…`` line into a dict)."""
    return sum(
        1 for key, value in info.items()
        if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict) and value.get("state") == "online"
    )
