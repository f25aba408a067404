"""What a first attempt at the worker looks like, as the yardstick for ``naive_eps``.

Per event, no batching: decode, read the patient's last WINDOW events from Redis, run the
same checkpoint (same encoder, same LSTM size) over that window from an empty state, write
the event back, publish a risk score. Every event pays two Redis round trips and a 24-step
sequence through the network, where the real worker pays a share of one MGET, one write and
one LSTM step per micro-batch. Encounters are decoded and passed over (the checkpoint does not
read the context, and a first attempt would not keep it).

Run as ``python -m worker.bench.naive_worker`` with the bench's VITALWATCH_* environment;
its throughput is read off its output topics like the real worker's.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import faust
import numpy as np
import orjson
import redis.asyncio as aioredis
import torch

from schemas.decode import decode
from schemas.encounter import Encounter
from schemas.errors import ContractError
from schemas.observation import Observation
from schemas.variables import VARIABLE_INDEX, VARIABLES
from worker.bench.faust_process import build_app, run
from worker.bench.output_watch import OutputWatch
from worker.bench.produce import Record, input_eps, scored_count
from worker.bench.stack import BenchStack
from worker.operations.config import Settings, load_settings

#: Longest wait for the first score (start-up: torch, the model, the group join).
START_S = 120.0
#: Events per patient the naive worker re-reads and re-runs for every new one.
WINDOW = 24
#: One stored row: the event time (float64) then every variable (float32, NaN = not measured).
_ROW = np.dtype([("ts", "<f8"), ("values", "<f4", (len(VARIABLES),))])


def pack_row(obs: Observation) -> bytes:
    row = np.zeros((), dtype=_ROW)
    row["ts"] = obs.observed_ts
    row["values"] = np.nan
    for name, value in obs.values.items():
        row["values"][VARIABLE_INDEX[name]] = value
    return row.tobytes()


class WindowScorer:
    """Scores one observation by re-running its patient's recent window through the model."""

    def __init__(self, settings: Settings) -> None:
        from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        from worker.operations.config import resolve_device

        self.device = resolve_device(settings.device)
        torch.set_num_threads(settings.torch_threads)  # as the worker does: same cores, same threads
        loaded = load_checkpoint(settings.checkpoint or DEFAULT_CHECKPOINT, self.device)
        self.model = loaded.model.eval()
        self.encoder = loaded.encoder
        self.model_version = str(loaded.manifest["version"])
        self.redis = aioredis.Redis.from_url(settings.redis_url)
        self.prefix = f"{settings.redis_prefix}window:"
        self.ttl_s = settings.state_ttl_s

    async def score(self, obs: Observation) -> float:
        key = self.prefix + obs.patient_id
        row = pack_row(obs)
        history = await self.redis.lrange(key, -(WINDOW - 1), -1)
        rows = np.frombuffer(b"".join([*history, row]), dtype=_ROW)
        ts = np.maximum.accumulate(rows["ts"])  # the encoder needs time that never goes back
        with torch.inference_mode():
            values = torch.from_numpy(rows["values"].copy()).unsqueeze(0).to(self.device)
            x = self.encoder.encode(values, torch.from_numpy(ts).unsqueeze(0).to(self.device))
            risk = float(self.model.risk(self.model(x)[0, -1]))
        await self.redis.pipeline(transaction=False).rpush(key, row).ltrim(key, -WINDOW, -1).expire(key, self.ttl_s).execute()
        return risk


def main() -> None:
    settings = load_settings()
    app, topic = build_app(settings)
    scores = app.topic(settings.topic_risk_scores, key_serializer="raw", value_serializer="raw")
    rejects = app.topic(settings.topic_dead_letters, key_serializer="raw", value_serializer="raw")
    kinds = settings.input_topics

    @app.agent(topic)
    async def score_each(stream: faust.StreamT) -> None:
        scorer = WindowScorer(settings)
        async for event in stream.events():
            message = event.message
            try:
                items = decode(kinds[message.topic], message.value or b"", now=time.time())
            except ContractError as exc:
                await rejects.send(key=message.key, value=orjson.dumps({"reason": {"errors": exc.to_list()}}))
                continue
            for obs in items:
                if isinstance(obs, Encounter):
                    continue
                risk = await scorer.score(obs)
                record = {
                    "event_id": obs.event_id, "patient_id": obs.patient_id, "observed_at": obs.observed_at,
                    "scored_at": datetime.now(timezone.utc), "risk": risk, "model_version": scorer.model_version,
                }
                await scores.send(key=message.key, value=orjson.dumps(record))

    run(app)


async def measure_naive(
    stack: BenchStack, inputs: str, workload: Sequence[Record], *, seconds: float, device: str, run_dir: Path
) -> float:
    """Input events/s of the naive worker (its outputs/s, worker.bench.produce.input_eps) over
    ``seconds`` from its first output (or until it has scored all of ``workload``, whichever
    comes first): it is too slow to wait for a whole topic."""
    topics = stack.topics(inputs=inputs, outputs="naive")
    env = stack.env(topics, "naive", device=device, run_dir=run_dir)
    contender = stack.start_contender("naive", ["-m", "worker.bench.naive_worker"], env, run_dir)
    try:
        async with OutputWatch(stack.bootstrap, topics.scored) as watch:
            await watch.wait_first(START_S, contender.check)
            await watch.wait_for(scored_count(workload), seconds, contender.check)
            span = watch.span()
    finally:
        contender.terminate()
    return input_eps(span.eps, workload)


if __name__ == "__main__":
    main()
