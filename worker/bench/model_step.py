"""The model step alone: patient-steps/s of one encoder step plus one LSTM step (and the
calibrated risk), at several batch sizes, on the worker's device.

This is the compute the worker pays per micro-batch round, without Kafka, Redis or Python
per-event work: what batching buys shows as the ratio between batch 1 and batch 512.
"""

from __future__ import annotations

import time

import torch

BATCH_SIZES = (1, 64, 512, 4096)
#: Time spent per batch size: thousands of steps at batch 1, still dozens at 4096.
SECONDS = 0.5


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def model_step_rates(device: str, batch_sizes: tuple[int, ...] = BATCH_SIZES, seconds: float = SECONDS) -> dict[str, float]:
    """Batch size (as a JSON key) -> patient-steps/s with the shipped checkpoint."""
    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from schemas.variables import VARIABLES

    where = torch.device(device)
    loaded = load_checkpoint(DEFAULT_CHECKPOINT, device)
    model, encoder = loaded.model.eval(), loaded.encoder
    generator = torch.Generator().manual_seed(0)
    rates: dict[str, float] = {}
    for batch in batch_sizes:
        values = torch.randn(batch, len(VARIABLES), generator=generator)
        values[torch.rand(batch, len(VARIABLES), generator=generator) < 0.6] = float("nan")  # partial sets
        values = values.to(where)
        memory = encoder.initial_memory(batch)
        t = torch.full((batch,), 1.7e9, dtype=torch.float64, device=where)
        h = torch.zeros(model.num_layers, batch, model.hidden_size, device=where)
        c = torch.zeros_like(h)

        def step() -> None:
            x, _ = encoder.step(values, t, memory)
            logits, _, _ = model.step(x, h, c)
            model.risk(logits)

        for _ in range(3):  # warm-up: allocator, kernels, CUDA context
            step()
        _synchronize(where)
        steps = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            steps += 1
            if steps % 16 == 0:
                _synchronize(where)
        _synchronize(where)
        elapsed = time.perf_counter() - started
        rates[str(batch)] = batch * steps / elapsed
    return rates
