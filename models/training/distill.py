"""Knowledge distillation: a smaller student LSTM trained to reproduce a larger teacher.

The worker pays one LSTM step per event for every patient, so a site with a large census or a
slow machine may want a narrower network. Training that narrow network from scratch on the
hard labels alone throws away what the teacher knows about *how* risky each moment is (the
labels only say "within 12 h of the event or not"); distillation trains the student on the
teacher's per-event outputs as soft targets, mixed with the hard labels:

    loss = soft_weight * T^2 * BCE(student / T, sigmoid(teacher / T))
           + (1 - soft_weight) * BCE_pos_weighted(student, label)

on every scored event (the same events training and evaluation use: a stable stay whole, a
deteriorating one up to its event). Both terms work on raw logits: the teacher's raw logits
were trained with the positive-class weight, so the hard term uses the same weighting and the
two targets agree in scale. The temperature T softens the teacher's confident outputs so the
student also learns the ranking among low-risk moments, and T^2 keeps the soft term's gradient
size independent of T (Hinton et al., 2015).

The student reads the teacher's features and normalisation unchanged (one FeatureEncoder, so
the worker's slab layout and the checkpoint's normalisation stay the same), keeps the best
validation-AUROC epoch, and is then recalibrated (Platt scaling) and given alert thresholds on
the validation split exactly as ``models.training.train`` does for a trained model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from models.checkpoint import LoadedModel
from models.features import FeatureEncoder
from models.evaluation.metrics import auprc, auroc, expected_calibration_error
from models.network import RiskLSTM
from models.datasets.series import PatientSeries
from models.training.train import (
    TrainConfig,
    TrainResult,
    balanced_pos_weight,
    choose_thresholds,
    collate,
    descend,
    fit_with_early_stopping,
    fit_platt,
    predict_series,
    scored_mask,
)


@dataclass(frozen=True, slots=True)
class DistillConfig:
    """The student's architecture and optimisation (``train``) plus the distillation mix.

    From ``train``: hidden_size, num_layers, dropout, epochs, batch_size, lr, weight_decay,
    grad_clip, patience, lr_patience, lr_decay, seed, pos_weight, the alert specificities and
    device. Its horizon_hours does not apply (the teacher's horizon does), nor max_steps:
    stays are used whole, so the student learns from the same history the teacher saw.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(hidden_size=32))
    temperature: float = 2.0
    #: Share of the loss given to the teacher's soft targets; the rest goes to the hard labels.
    soft_weight: float = 0.7

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if not 0.0 <= self.soft_weight <= 1.0:
            raise ValueError("soft_weight must be within [0, 1]")


@dataclass(slots=True)
class _Batch:
    """Stays of similar length, padded: features, hard labels, teacher logits, scored mask."""

    x: torch.Tensor
    labels: torch.Tensor
    teacher: torch.Tensor
    mask: torch.Tensor


def distill(
    teacher: LoadedModel,
    train: Sequence[PatientSeries],
    val: Sequence[PatientSeries],
    config: DistillConfig = DistillConfig(),
    *,
    progress: bool = True,
) -> TrainResult:
    """Train a student of ``config.train``'s size on ``teacher``'s outputs over ``train``;
    early-stop, calibrate and pick thresholds on ``val`` (hard labels). The result's encoder
    is the teacher's."""
    tc = config.train
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    device = torch.device(tc.device)
    encoder = copy.deepcopy(teacher.encoder).to(device)
    teacher_model = copy.deepcopy(teacher.model).to(device).eval()
    train_batches = _targets(teacher_model, encoder, train, tc.batch_size)
    val_batches = _targets(teacher_model, encoder, val, tc.batch_size)
    pos_weight = tc.pos_weight if tc.pos_weight is not None else balanced_pos_weight([b.labels[b.mask] for b in train_batches], "distillation")

    student = RiskLSTM(teacher.encoder.n_features, tc.hidden_size, tc.num_layers, tc.dropout).to(device)
    optimiser = torch.optim.AdamW(student.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    history, best_auroc = fit_with_early_stopping(
        student,
        optimiser,
        tc,
        lambda: _epoch(student, train_batches, optimiser, config, pos_weight, rng, device),
        lambda: _scored_logits(student, val_batches, device),
        desc="distilling",
        progress=progress,
    )

    val_logits, val_labels = _scored_logits(student, val_batches, device)
    student.set_calibration(*fit_platt(val_logits, val_labels))
    risk = student.risk(torch.from_numpy(val_logits)).numpy()
    return TrainResult(student, encoder, history, best_auroc, choose_thresholds(val_labels, risk, tc))


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, temperature: float, soft_weight: float, pos_weight: float
) -> torch.Tensor:
    """Summed loss over the given events (1-D logits of student and teacher, hard labels)."""
    soft_target = torch.sigmoid(teacher / temperature)
    soft = nn.functional.binary_cross_entropy_with_logits(student / temperature, soft_target, reduction="sum") * temperature**2
    hard = nn.functional.binary_cross_entropy_with_logits(
        student, labels, pos_weight=torch.tensor(pos_weight, device=student.device), reduction="sum"
    )
    return soft_weight * soft + (1.0 - soft_weight) * hard


def compare_models(series: Sequence[PatientSeries], models: dict[str, LoadedModel]) -> dict[str, dict[str, float]]:
    """AUROC, AUPRC and calibration error (ECE) of each model on the scored events of ``series``."""
    masks = [scored_mask(s) for s in series]
    labels = np.concatenate([s.labels[m] for s, m in zip(series, masks)])
    report = {}
    for name, loaded in models.items():
        risk = np.concatenate([r[m] for r, m in zip(predict_series(loaded, None, series), masks)])
        report[name] = {"auroc": auroc(labels, risk), "auprc": auprc(labels, risk), "ece": expected_calibration_error(labels, risk)}
    return report


def step_rate(model: RiskLSTM, *, batch: int = 512, steps: int = 200, warmup: int = 20) -> float:
    """Patient-steps per second of one batched incremental step (``step`` + ``risk``), the
    worker's per-event cost, on the model's device; a measurement to report, not a guarantee."""
    device = next(model.parameters()).device
    x = torch.randn(batch, model.n_features, device=device)
    h = torch.zeros(model.num_layers, batch, model.hidden_size, device=device)
    c = torch.zeros_like(h)
    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model.risk(model.step(x, h, c)[0])
        _synchronise(device)
        start = time.perf_counter()
        for _ in range(steps):
            logits, h, c = model.step(x, h, c)
            model.risk(logits)
        _synchronise(device)
        elapsed = time.perf_counter() - start
    return batch * steps / elapsed


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(teacher: RiskLSTM, encoder: FeatureEncoder, series: Sequence[PatientSeries], batch_size: int) -> list[_Batch]:
    """Every non-empty stay encoded once and scored by the teacher, in batches of similar
    length (sorted, so padding stays small); kept on the host between epochs."""
    ordered = sorted((s for s in series if len(s.ts)), key=lambda s: len(s.ts))
    batches = []
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            x, labels, mask = collate(ordered[start : start + batch_size], encoder)
            batches.append(_Batch(x.cpu(), labels.cpu(), teacher(x).cpu(), mask.cpu()))
    return batches


def _epoch(
    student: RiskLSTM,
    batches: Sequence[_Batch],
    optimiser: torch.optim.Optimizer,
    config: DistillConfig,
    pos_weight: float,
    rng: np.random.Generator,
    device: torch.device,
) -> float:
    """One pass over the batches in random order; returns the mean loss per scored event."""
    student.train()
    total, count = 0.0, 0
    for k in rng.permutation(len(batches)):
        batch = batches[k]
        mask = batch.mask.to(device)
        logits = student(batch.x.to(device))[mask]
        loss = distillation_loss(
            logits, batch.teacher.to(device)[mask], batch.labels.to(device)[mask],
            temperature=config.temperature, soft_weight=config.soft_weight, pos_weight=pos_weight,
        )
        n = int(mask.sum())
        total += descend(student, optimiser, loss, n, config.train.grad_clip)
        count += n
    return total / max(count, 1)


def _scored_logits(model: RiskLSTM, batches: Sequence[_Batch], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and hard labels of every scored event."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in batches:
            mask = batch.mask.to(device)
            logits.append(model(batch.x.to(device))[mask].cpu().numpy())
            labels.append(batch.labels[batch.mask].numpy())
    return np.concatenate(logits).astype(np.float64), np.concatenate(labels)
