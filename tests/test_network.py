"""RiskLSTM: the incremental step scores exactly like the full-sequence forward; calibration."""

from __future__ import annotations

import pytest
import torch

from schemas.variables import VARIABLE_NAMES
from models.features import n_features
from models.network import RiskLSTM

N_FEATURES = n_features(len(VARIABLE_NAMES))  # an encoder over the whole catalogue

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_by_step_equals_forward(device: str, num_layers: int) -> None:
    torch.manual_seed(num_layers)
    model = RiskLSTM(N_FEATURES, hidden_size=32, num_layers=num_layers).to(device).eval()
    x = torch.randn(5, 40, N_FEATURES, device=device)
    with torch.no_grad():
        full = model(x)
        h = torch.zeros(num_layers, 5, 32, device=device)
        c = torch.zeros_like(h)
        stepped = []
        for k in range(x.shape[1]):
            logits, h, c = model.step(x[:, k], h, c)
            stepped.append(logits)
    assert full.shape == (5, 40)
    assert h.shape == c.shape == (num_layers, 5, 32)
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, rtol=0, atol=1e-5)
    # The written-out cell carries nn.LSTM's state too, the cell state included.
    _, (h_full, c_full) = model.lstm(x)
    torch.testing.assert_close(h, h_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(c, c_full, rtol=0, atol=1e-5)


def test_risk_applies_the_stored_platt_calibration() -> None:
    model = RiskLSTM(N_FEATURES, hidden_size=8)
    logits = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(model.risk(logits), torch.sigmoid(logits))
    model.set_calibration(0.5, -1.0)
    torch.testing.assert_close(model.risk(logits), torch.sigmoid(0.5 * logits - 1.0))
    assert {"platt_scale", "platt_bias"} <= set(model.state_dict())
