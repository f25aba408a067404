"""Training the risk model: batching, class weighting, early stopping, calibration, thresholds.

The recipe, and why:

* Every stay is encoded once with the same ``FeatureEncoder.step`` the worker runs (the
  encoder has no trainable parameters), then batched by similar length so a 3-day monitored
  stay does not pad a batch of 40-event ward stays to 800 steps.
* Events after the clinical event are dropped: the deterioration has happened, nobody is
  warned by a score then, and evaluation excludes them too (``scored_mask``).
* Deterioration events are rare (~7 % of events), so the loss weights positives by
  negatives/positives unless ``pos_weight`` is given; the resulting over-estimated
  probabilities are fixed by Platt scaling on the validation split at the end.
* Early stopping keeps the epoch with the best validation AUROC, the quantity the model is
  judged on; the calibration and the alert thresholds are then fitted on the same split
  (medium where specificity is 0.90, high at 0.97 on calibrated risk: one in ten resp.
  thirty events not followed by a deterioration within the horizon is flagged — an alarm
  load a ward can act on, which is why the thresholds are set on specificity rather than
  on a risk a clinician would pick; evaluation reports the resulting alerts per patient-day).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from models.checkpoint import LoadedModel
from models.features import INPUTS, MEMORY_WIDTH, Context, FeatureEncoder
from models.evaluation.metrics import auroc, threshold_for_specificity
from models.network import RiskLSTM
from models.datasets.series import PatientSeries
from schemas.variables import VARIABLE_NAMES


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one training run (recorded in the checkpoint's manifest)."""

    #: 32 validates about as well on 20,000 simulated stays (AUROC 0.890 vs 0.889); the
    #: shipped model keeps 64 as the teacher `vitalwatch distill` shrinks to 32.
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    #: Epochs without a better validation AUROC before training stops ...
    patience: int = 6
    #: ... and before the learning rate is multiplied by ``lr_decay`` (noisy plateaus are
    #: where a smaller step helps most).
    lr_patience: int = 2
    lr_decay: float = 0.5
    seed: int = 0
    #: Longer stays keep their last ``max_steps`` events (a monitored 4-day stay has ~800).
    max_steps: int | None = 512
    #: Weight of a positive event in the loss; None = negatives/positives of the training set.
    pos_weight: float | None = None
    horizon_hours: float = 12.0
    #: The feature encoder's input groups (models.features.INPUTS).
    inputs: tuple[str, ...] = INPUTS
    medium_specificity: float = 0.90
    high_specificity: float = 0.97
    device: str = "cpu"


@dataclass(slots=True)
class TrainResult:
    """The trained (calibrated, best-epoch) model, its encoder, per-epoch history and the
    alert thresholds chosen on the validation split."""

    model: RiskLSTM
    encoder: FeatureEncoder
    history: list[dict[str, float]]
    best_val_auroc: float
    alert_thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Encoded:
    """One stay encoded on the host: features [T, F], labels [T], scored mask [T]."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor


def scored_mask(series: PatientSeries) -> np.ndarray:
    """Events a score can still warn about: all of a stable stay, and those up to and
    including the clinical event of a deteriorating one."""
    if series.event_at is None:
        return np.ones(series.ts.shape, dtype=bool)
    return series.ts <= series.event_at


def collate(series: Sequence[PatientSeries], encoder: FeatureEncoder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode and pad stays to the longest: (x [B, T, F] f32, labels [B, T] f32, mask [B, T] bool)
    on the encoder's device. ``mask`` is True on real, scored events (see ``scored_mask``);
    padding repeats the last time with nothing measured and is masked out."""
    device = encoder.mean.device
    longest = max(len(s.ts) for s in series)
    values = np.full((len(series), longest, MEMORY_WIDTH), np.nan, dtype=np.float32)
    ts = np.zeros((len(series), longest), dtype=np.float64)
    labels = np.zeros((len(series), longest), dtype=np.float32)
    mask = np.zeros((len(series), longest), dtype=bool)
    age = np.full((len(series), longest), np.nan, dtype=np.float32)
    sex = np.full((len(series), longest), -1, dtype=np.int8)
    admitted = np.full((len(series), longest), np.nan)
    for row, s in enumerate(series):
        n = len(s.ts)
        values[row, :n] = s.values
        ts[row, :n] = s.ts
        ts[row, n:] = s.ts[-1] if n else 0.0
        labels[row, :n] = s.labels
        mask[row, :n] = scored_mask(s)
        context = s.context()
        age[row, :n], sex[row, :n], admitted[row, :n] = context.age, context.sex, context.admitted

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    with torch.no_grad():
        x = encoder.encode(put(values), put(ts), Context(put(age), put(sex), put(admitted)))
    return x, put(labels), put(mask)


def train_model(
    train: Sequence[PatientSeries],
    val: Sequence[PatientSeries],
    config: TrainConfig,
    *,
    init_from: LoadedModel | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on ``train``, early-stop, calibrate and pick thresholds on ``val``.

    ``init_from`` fine-tunes an existing checkpoint: its architecture and normalisation are
    kept (the config's hidden_size/num_layers are ignored), so its features mean the same.
    """
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model, encoder = _starting_point(train, config, init_from)
    model = model.to(device)
    train_set = _encode_all(list(train), encoder, max_steps=config.max_steps)
    val_set = _encode_all(list(val), encoder)
    history, best_auroc = _fit(model, train_set, val_set, config, device, progress)

    val_logits, val_labels = _logits(model, val_set, config.batch_size, device)
    model.set_calibration(*fit_platt(val_logits, val_labels))
    risk = model.risk(torch.from_numpy(val_logits).to(device)).cpu().numpy()
    return TrainResult(model, encoder.to(device), history, best_auroc, choose_thresholds(val_labels, risk, config))


def _starting_point(
    train: Sequence[PatientSeries], config: TrainConfig, init_from: LoadedModel | None
) -> tuple[RiskLSTM, FeatureEncoder]:
    """A fresh network with normalisation fitted on ``train``, or a copy of ``init_from``;
    uncalibrated either way (calibration is refitted after training), encoder on the CPU."""
    if init_from is not None:
        encoder = copy.deepcopy(init_from.encoder).cpu()
        model = copy.deepcopy(init_from.model)
        model.dropout.p = config.dropout
    else:
        encoder = FeatureEncoder.fit((s.values for s in train), measured_variables(train), config.inputs)
        model = RiskLSTM(encoder.n_features, config.hidden_size, config.num_layers, config.dropout)
    model.set_calibration(1.0, 0.0)
    return model, encoder


def measured_variables(series: Sequence[PatientSeries]) -> tuple[str, ...]:
    """The catalogue variables the training data measures at least once, in catalogue order: a
    model learns nothing from a column that is always absent, so it does not read one (and a
    model trained on the simulator reads exactly the variables it read before the catalogue grew)."""
    measured = np.zeros(MEMORY_WIDTH, dtype=bool)
    for s in series:
        measured |= ~np.isnan(s.values).all(axis=0)
    if not measured.any():
        raise ValueError("the training data measures no variable at all")
    return tuple(name for name, seen in zip(VARIABLE_NAMES, measured) if seen)


def _fit(
    model: RiskLSTM, train_set: list[_Encoded], val_set: list[_Encoded], config: TrainConfig, device: torch.device, progress: bool
) -> tuple[list[dict[str, float]], float]:
    """Epochs until ``patience`` runs out; leaves ``model`` at its best validation AUROC, in
    eval mode. Returns the per-epoch history and that AUROC."""
    rng = np.random.default_rng(config.seed)
    pos_weight = config.pos_weight if config.pos_weight is not None else balanced_pos_weight([e.y[e.mask] for e in train_set], "training")
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device), reduction="sum")
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return fit_with_early_stopping(
        model,
        optimiser,
        config,
        lambda: _train_epoch(model, train_set, loss_fn, optimiser, config, rng, device),
        lambda: _logits(model, val_set, config.batch_size, device),
        desc="training",
        progress=progress,
    )


def fit_with_early_stopping(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    config: TrainConfig,
    train_epoch: Callable[[], float],
    validate: Callable[[], tuple[np.ndarray, np.ndarray]],
    *,
    desc: str,
    progress: bool,
) -> tuple[list[dict[str, float]], float]:
    """Epochs until ``config.patience`` runs out, halving the learning rate on plateaus of
    validation AUROC (the ranking is what alerts depend on; calibration is fitted afterwards).
    Leaves ``model`` at its best epoch, in eval mode; returns the per-epoch history and that AUROC.
    ``train_epoch`` runs one epoch and returns its mean loss; ``validate`` returns logits and labels."""
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=config.lr_decay, patience=config.lr_patience)
    history: list[dict[str, float]] = []
    best_auroc, best_state, stale = -math.inf, copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(config.epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        lr = optimiser.param_groups[0]["lr"]
        loss = train_epoch()
        val_logits, val_labels = validate()
        val_auroc = auroc(val_labels, val_logits)
        history.append({"epoch": epoch + 1, "loss": loss, "val_auroc": val_auroc, "lr": lr})
        bar.set_postfix(loss=f"{loss:.4f}", val_auroc=f"{val_auroc:.4f}")
        schedule.step(val_auroc)
        if val_auroc > best_auroc:
            best_auroc, best_state, stale = val_auroc, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return history, float(best_auroc)


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Scale and bias minimising the log loss of ``sigmoid(scale * logit + bias)``."""
    z = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    y = torch.from_numpy(np.asarray(labels, dtype=np.float64))
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([params], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
        loss.backward()
        return loss

    optimiser.step(closure)
    scale, bias = params.detach().tolist()
    return float(scale), float(bias)


def choose_thresholds(labels: np.ndarray, risk: np.ndarray, config: TrainConfig) -> dict[str, float]:
    """Medium and high alert thresholds on calibrated risk at the configured specificities,
    kept strictly ordered inside (0, 1] as the alert policy requires."""
    medium = threshold_for_specificity(labels, risk, config.medium_specificity)
    high = max(threshold_for_specificity(labels, risk, config.high_specificity), float(np.nextafter(medium, 1.0)))
    return {"medium": float(min(medium, 1.0 - 1e-6)), "high": float(min(high, 1.0))}


def predict_series(
    model: RiskLSTM | LoadedModel,
    encoder: FeatureEncoder | None,
    series: Sequence[PatientSeries],
    *,
    batch_size: int = 128,
) -> list[np.ndarray]:
    """Calibrated risk of every event of every stay (post-event ones included), via forward.

    ``model`` may be a LoadedModel, whose encoder is used when ``encoder`` is None."""
    if isinstance(model, LoadedModel):
        encoder = encoder or model.encoder
        model = model.model
    if encoder is None:
        raise ValueError("predict_series needs an encoder with a bare RiskLSTM")
    device = next(model.parameters()).device
    model.eval()
    order = sorted(range(len(series)), key=lambda i: len(series[i].ts))
    out: list[np.ndarray] = [np.empty(0)] * len(series)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x, _, _ = collate([series[i] for i in chunk], encoder)
            risk = model.risk(model(x.to(device))).cpu().numpy()
            for row, i in enumerate(chunk):
                out[i] = risk[row, : len(series[i].ts)].astype(np.float64)
    return out


def training_manifest(
    result: TrainResult, config: TrainConfig, *, version: str, training_data: dict[str, Any], metrics: dict[str, Any] | None = None,
    described: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The caller-supplied half of a checkpoint manifest (``save_checkpoint`` adds the rest);
    ``described`` adds what the data says the model is for (its outcome, its population)."""
    return {
        **(described or {}),
        "version": version,
        "horizon_hours": config.horizon_hours,
        "alert_thresholds": result.alert_thresholds,
        "training": {"config": asdict(config), "data": training_data, "history": result.history},
        "metrics": {"best_val_auroc": result.best_val_auroc, **(metrics or {})},
    }


def _encode_all(
    series: list[PatientSeries], encoder: FeatureEncoder, *, max_steps: int | None = None, chunk: int = 256
) -> list[_Encoded]:
    """Every non-empty stay encoded once, shortest first (encoding and scoring in chunks of
    similar length keeps padding small). With ``max_steps``, a training stay keeps its scored
    events (up to and including its clinical event) and of those its last ``max_steps``: the
    rows are cut after encoding, so each keeps what the whole stay before it told the encoder
    (carried values, counts, time since admission), as in the worker."""
    ordered = sorted((s for s in series if len(s.ts)), key=lambda s: len(s.ts))
    encoded: list[_Encoded] = []
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        x, y, mask = collate(part, encoder)
        for row, s in enumerate(part):
            keep = np.arange(len(s.ts))
            if max_steps is not None:
                keep = np.flatnonzero(scored_mask(s))[-max_steps:]
            if not len(keep):
                continue
            rows = torch.from_numpy(keep).to(x.device)
            encoded.append(_Encoded(x[row, rows].cpu(), y[row, rows].cpu(), mask[row, rows].cpu()))
    return encoded


def balanced_pos_weight(labels: Sequence[torch.Tensor], dataset: str) -> float:
    """Negatives per positive among the scored events' labels: the loss weight that lets the
    rare deteriorations count as much as the many quiet events."""
    positives = sum(float(y.sum()) for y in labels)
    scored = sum(y.numel() for y in labels)
    if positives == 0:
        raise ValueError(f"the {dataset} set has no positive events: nothing deteriorates in it")
    return (scored - positives) / positives


def descend(model: nn.Module, optimiser: torch.optim.Optimizer, summed_loss: torch.Tensor, scored: int, grad_clip: float) -> float:
    """One clipped step on the mean loss per scored event (so long and short batches weigh
    their events alike); returns the summed loss for the epoch's mean."""
    optimiser.zero_grad()
    (summed_loss / max(scored, 1)).backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimiser.step()
    return float(summed_loss.detach())


def _batches(data: Sequence[_Encoded], batch_size: int, rng: np.random.Generator) -> Iterator[list[_Encoded]]:
    """Batches of similar-length stays (sorted by length with jitter), in random order."""
    lengths = np.array([len(e.y) for e in data], dtype=np.float64)
    order = np.argsort(lengths * rng.uniform(0.8, 1.25, lengths.size))
    chunks = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    for k in rng.permutation(len(chunks)):
        yield [data[i] for i in chunks[k]]


def _pad(batch: Sequence[_Encoded], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = pad_sequence([e.x for e in batch], batch_first=True)
    y = pad_sequence([e.y for e in batch], batch_first=True)
    mask = pad_sequence([e.mask for e in batch], batch_first=True)
    return x.to(device), y.to(device), mask.to(device)


def _train_epoch(
    model: RiskLSTM,
    data: Sequence[_Encoded],
    loss_fn: nn.Module,
    optimiser: torch.optim.Optimizer,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> float:
    """One pass over the training stays; returns the mean loss per scored event."""
    model.train()
    total, count = 0.0, 0
    for batch in _batches(data, config.batch_size, rng):
        x, y, mask = _pad(batch, device)
        logits = model(x)
        n = int(mask.sum())
        total += descend(model, optimiser, loss_fn(logits[mask], y[mask]), n, config.grad_clip)
        count += n
    return total / max(count, 1)


def _logits(model: RiskLSTM, data: Sequence[_Encoded], batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and labels of every scored event of ``data``."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x, y, mask = _pad(data[start : start + batch_size], device)
            logits.append(model(x)[mask].cpu().numpy())
            labels.append(y[mask].cpu().numpy())
    return np.concatenate(logits).astype(np.float64), np.concatenate(labels)
