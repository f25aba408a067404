"""The bench's own Kafka-protocol broker and Redis, the topics each phase uses, and the
environment that points a contender's subprocess at them.

Input topics are produced once and read by every phase through its own consumer group; each
phase writes to its own output topics and its own Redis key prefix, so one phase's outputs or
state never count towards another's.
"""

from __future__ import annotations

import os
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from worker.bench.processes import Contender, stop_all
from worker.tools.commands.dev import delete_keys
from worker.tools.embedded import EmbeddedBroker, EmbeddedRedis, create_topics, free_port, operator_redis

#: Input partitions: enough for the scale-out phase (two workers, two partitions each).
PARTITIONS = 4
#: Consumer-group session timeout for Tansu, which holds a JoinGroup for half of it (DESIGN.md).
SESSION_TIMEOUT_S = 6


@dataclass(frozen=True)
class Topics:
    """Input and output topic names of one phase (the worker's eight, the shadow model's included)."""

    vitals: str
    labs: str
    fhir: str
    encounters: str
    risk_scores: str
    alerts: str
    dead_letters: str
    risk_scores_shadow: str

    @property
    def inputs(self) -> dict[str, str]:
        """Simulator topic kind -> topic name."""
        return {"vitals": self.vitals, "labs": self.labs, "encounters": self.encounters}

    @property
    def outputs(self) -> list[str]:
        return [self.risk_scores, self.alerts, self.dead_letters, self.risk_scores_shadow]

    @property
    def scored(self) -> list[str]:
        """The topics with exactly one record per input observation: a score or a dead-letter
        (an encounter has none: worker.bench.produce.scored_count)."""
        return [self.risk_scores, self.dead_letters]


@dataclass
class BenchStack:
    """Broker, Redis and a run id; ``close`` stops what this bench started and removes its keys."""

    broker: EmbeddedBroker
    redis_url: str
    run_id: str
    exits: ExitStack

    @classmethod
    def start(cls) -> "BenchStack":
        """A fresh Tansu and the Redis worker.tools.embedded.operator_redis chooses — decided
        first, so that an operator's Redis that does not answer, or no redis-server to start,
        stops the bench in one line (worker.tools.reach.Unavailable) before anything runs: the
        operator's (VITALWATCH_REDIS_URL, else REDIS_URL), else a throw-away redis-server."""
        redis_url = operator_redis()
        exits = ExitStack()
        try:
            broker = EmbeddedBroker().start()
            exits.callback(broker.stop)
            run_id = uuid.uuid4().hex[:8]
            if redis_url is not None:
                exits.callback(delete_keys, redis_url, f"bench-{run_id}-")
            else:
                server = EmbeddedRedis().start()
                exits.callback(server.stop)
                redis_url = server.url
        except BaseException:
            exits.close()
            raise
        return cls(broker, redis_url, run_id, exits)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def topics(self, inputs: str, outputs: str) -> Topics:
        """Names for a phase reading the ``inputs`` set and writing its own ``outputs`` set."""
        names = Topics(
            vitals=f"bench-{inputs}-vitals", labs=f"bench-{inputs}-labs", fhir=f"bench-{inputs}-fhir",
            encounters=f"bench-{inputs}-encounters", risk_scores=f"bench-{outputs}-risk-scores",
            alerts=f"bench-{outputs}-alerts", dead_letters=f"bench-{outputs}-dead-letters",
            risk_scores_shadow=f"bench-{outputs}-risk-scores-shadow",
        )
        create_topics(
            self.bootstrap, [names.vitals, names.labs, names.fhir, names.encounters, *names.outputs], partitions=PARTITIONS
        )
        return names

    def start_contender(self, name: str, argv: Sequence[str], env: Mapping[str, str], run_dir: Path) -> Contender:
        """Start a contender that ``close`` stops (and waits for) if it still runs then."""
        contender = Contender.start(name, argv, env, run_dir)
        self.exits.callback(stop_all, [contender])
        return contender

    def redis_prefix(self, phase: str) -> str:
        return f"bench-{self.run_id}-{phase}:"

    def env(self, topics: Topics, phase: str, *, device: str, run_dir: Path) -> dict[str, str]:
        """A contender's environment: the user's, pointed at this stack, this phase's topics,
        consumer group and Redis prefix, and a metrics port of its own."""
        return {
            **os.environ,
            "VITALWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "VITALWATCH_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "VITALWATCH_KAFKA_IDEMPOTENCE": "false",
            "VITALWATCH_REDIS_URL": self.redis_url,
            "VITALWATCH_REDIS_PREFIX": self.redis_prefix(phase),
            "VITALWATCH_GROUP_ID": f"bench-{self.run_id}-{phase}",
            "VITALWATCH_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
            "VITALWATCH_DEVICE": device,
            "VITALWATCH_METRICS_PORT": str(free_port()),
            "VITALWATCH_LOG_LEVEL": "INFO",  # the production default: its logging cost counts
            "VITALWATCH_TOPIC_VITALS": topics.vitals,
            "VITALWATCH_TOPIC_LABS": topics.labs,
            "VITALWATCH_TOPIC_FHIR": topics.fhir,
            "VITALWATCH_TOPIC_ENCOUNTERS": topics.encounters,
            "VITALWATCH_TOPIC_RISK_SCORES": topics.risk_scores,
            "VITALWATCH_TOPIC_ALERTS": topics.alerts,
            "VITALWATCH_TOPIC_DEAD_LETTERS": topics.dead_letters,
            "VITALWATCH_TOPIC_RISK_SCORES_SHADOW": topics.risk_scores_shadow,
            # Faust keeps a data directory under the temp dir: the bench's goes away with it.
            "TMPDIR": str(run_dir),
        }

    def close(self) -> None:
        self.exits.close()

