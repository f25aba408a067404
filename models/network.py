"""RiskLSTM: encoded events in, P(deterioration within the horizon) out, one step per event.

The worker cannot rerun a patient's history for every new event, so the network exposes the
LSTM's recurrence directly: ``step`` takes the previous (h, c) of a batch of patients and one
encoded row each. ``forward`` runs whole sequences for training and evaluation; both go through
the same ``nn.LSTM`` and head, so a patient scored event by event gets the score the full
sequence would give (tests/test_network.py holds them to 1e-5).

Calibration lives in the model: the head's logit is trained with a class weight (deterioration
is rare), which inflates raw probabilities, so ``risk`` applies Platt scaling
(``sigmoid(scale * logit + bias)``) fitted afterwards on a validation split. The two numbers
are buffers, saved and loaded with the weights, so no consumer can forget to calibrate.
"""

from __future__ import annotations

import torch
from torch import nn


class RiskLSTM(nn.Module):
    """A stacked LSTM over encoded events with a linear head and stored Platt calibration."""

    platt_scale: torch.Tensor
    platt_bias: torch.Tensor

    def __init__(self, n_features: int, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(
            n_features, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)  # training only: identity in eval, so step == forward
        self.head = nn.Linear(hidden_size, 1)
        self.register_buffer("platt_scale", torch.ones(()))
        self.register_buffer("platt_bias", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits [B, T] for sequences x [B, T, F] that start from an empty state."""
        out, _ = self.lstm(x)
        return self.head(self.dropout(out)).squeeze(-1)

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One event per patient: x [B, F], h and c [L, B, H] -> (logits [B], h, c).

        Zero h and c are the state of a patient never seen."""
        h, c = self.step_state(x, h, c)
        return self.logits(h[-1]), h, c

    def step_state(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` without the head: the new (h, c) only. The worker steps the recurrence
        alone and reads the logits of every step with one ``logits`` call after the last.

        It stays one ``nn.LSTM`` call per step: on the CPU that call gives a patient the same
        bits whatever else is in the batch (a written-out cell's matmuls do not, for one or two
        rows), so a state does not depend on how the stream was cut into batches."""
        _, (h, c) = self.lstm(x.unsqueeze(1), (h, c))
        return h, c

    def logits(self, h_top: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits [...] from the top layer's output [..., H]."""
        return self.head(self.dropout(h_top)).squeeze(-1)

    def risk(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities from logits of any shape."""
        return torch.sigmoid(self.platt_scale * logits + self.platt_bias)

    def set_calibration(self, scale: float, bias: float) -> None:
        self.platt_scale.fill_(scale)
        self.platt_bias.fill_(bias)
