"""FeatureEncoder: carry-forward with decay, masks, ages, step gaps, fitting, batch independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from schemas.variables import VARIABLE_NAMES
from models.features import AGE_CAP_HOURS, FeatureEncoder, Z_CLIP, n_features
from schemas.variables import VARIABLE_INDEX, VARIABLES

N_FEATURES = n_features(len(VARIABLE_NAMES))  # an encoder over the whole catalogue

V = len(VARIABLES)
HR = VARIABLE_INDEX["heart_rate"]
LACTATE = VARIABLE_INDEX["lactate"]
NORMAL = torch.tensor([v.normal for v in VARIABLES])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
T0 = 1_750_000_000.0


def encoder(device: str = "cpu") -> FeatureEncoder:
    return FeatureEncoder(NORMAL + 1.0, torch.full((V,), 2.0)).to(device)


def nothing(batch: int = 1, device: str = "cpu") -> torch.Tensor:
    return torch.full((batch, V), math.nan, device=device)


def log_hours(h: float) -> float:
    return math.log1p(min(h, AGE_CAP_HOURS)) / math.log1p(AGE_CAP_HOURS)


def parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return x[:, :V], x[:, V : 2 * V], x[:, 2 * V : 3 * V], x[:, 3 * V]


@pytest.mark.parametrize("device", DEVICES)
def test_first_event_encodes_measured_values_and_normals_for_the_rest(device: str) -> None:
    enc = encoder(device)
    values = nothing(device=device)
    values[0, HR] = 85.0
    t = torch.tensor([T0], dtype=torch.float64, device=device)
    x, last_value, last_time, prev_time = enc.step(values, t, *enc.initial_state(1))
    assert x.shape == (1, N_FEATURES) and x.dtype == torch.float32 and not x.isnan().any()
    z, mask, age, gap = (p.cpu() for p in parts(x))
    assert z[0, HR] == pytest.approx((85.0 - (75 + 1)) / 2.0)
    others = torch.arange(V) != HR
    assert torch.allclose(z[0, others], torch.full((V - 1,), -0.5))  # normal - mean = -1, / std 2
    assert mask[0].tolist() == [1.0 if j == HR else 0.0 for j in range(V)]
    assert age[0, HR] == 0.0 and torch.all(age[0, others] == 1.0)  # never seen = the cap
    assert gap[0] == 0.0
    assert last_value[0, HR] == 85.0 and last_value[0, others].isnan().all()
    assert last_time[0, HR] == T0 and prev_time.tolist() == [T0]


def test_carried_value_decays_toward_normal_with_the_catalogue_time_constant() -> None:
    enc = encoder()
    decay = VARIABLES[LACTATE].decay_hours
    values = nothing()
    values[0, LACTATE] = 5.0
    t0 = torch.tensor([T0], dtype=torch.float64)
    _, lv, lt, pt = enc.step(values, t0, *enc.initial_state(1))
    later = t0 + decay * 3600.0
    x, lv2, lt2, _ = enc.step(nothing(), later, lv, lt, pt)
    z, mask, age, gap = parts(x)
    expected = 1.0 + math.exp(-1.0) * (5.0 - 1.0)  # normal 1.0 + e^-1 of the excess
    assert z[0, LACTATE] == pytest.approx((expected - 2.0) / 2.0, rel=1e-5)
    assert mask[0, LACTATE] == 0.0
    assert age[0, LACTATE] == pytest.approx(log_hours(decay))
    assert gap == pytest.approx(log_hours(decay))
    assert lv2[0, LACTATE] == 5.0 and lt2[0, LACTATE] == T0  # memory keeps the raw value


def test_step_does_not_modify_its_inputs_and_clips_extremes() -> None:
    enc = encoder()
    first = nothing()
    first[0, LACTATE] = 2.0
    _, *state = enc.step(first, torch.tensor([T0], dtype=torch.float64), *enc.initial_state(1))
    values = nothing()
    values[0, HR] = 290.0
    snapshot = [s.clone() for s in (values, *state)]
    x, *_ = enc.step(values, torch.tensor([T0 + 60], dtype=torch.float64), *state)
    for before, now in zip(snapshot, (values, *state)):
        torch.testing.assert_close(now, before, rtol=0, atol=0, equal_nan=True)
    assert x[0, HR] == Z_CLIP


def test_encode_matches_each_patient_stepped_alone() -> None:
    enc = encoder()
    gen = torch.Generator().manual_seed(3)
    B, T = 4, 9
    values = NORMAL + 10 * torch.randn(B, T, V, generator=gen)
    values[torch.rand(B, T, V, generator=gen) < 0.7] = math.nan
    ts = T0 + torch.cumsum(torch.rand(B, T, generator=gen, dtype=torch.float64) * 7200, dim=1)
    batched = enc.encode(values, ts)
    for b in range(B):
        alone = enc.encode(values[b : b + 1], ts[b : b + 1])
        assert torch.equal(batched[b], alone[0])
    assert batched.shape == (B, T, N_FEATURES) and not batched.isnan().any()


@pytest.mark.parametrize("device", DEVICES)
def test_steps_at_once_equal_one_step_after_another_from_any_memory(device: str) -> None:
    """The worker folds a patient's K events of one micro-batch in one ``steps`` call; it must
    give what K ``step`` calls (the recurrence) give, rows, memory and all, padding included."""
    enc = encoder(device)
    gen = torch.Generator().manual_seed(11)
    B, K = 6, 7
    values = NORMAL + 10 * torch.randn(B, K, V, generator=gen)
    values[torch.rand(B, K, V, generator=gen) < 0.75] = math.nan
    values[0] = math.nan  # a patient whose events measure nothing new
    values[1, 4:] = math.nan  # padding after a shorter run of events
    ts = T0 + torch.cumsum(torch.rand(B, K, generator=gen, dtype=torch.float64) * 3600, dim=1)
    ts[1, 4:] = ts[1, 3]
    values[2, :3, HR] = math.nan  # carried from the memory for three events
    # Memory from earlier events for some patients, none for others.
    last_value, last_time, prev_time = enc.initial_state(B)
    last_value[2:, HR], last_time[2:, HR], prev_time[2:] = 91.0, T0 - 5000.0, T0 - 100.0
    values, ts = values.to(device), ts.to(device)
    last_value, last_time, prev_time = last_value.to(device), last_time.to(device), prev_time.to(device)

    x_all, value_all, time_all = enc.steps(values, ts, last_value, last_time, prev_time)

    memory = (last_value, last_time, prev_time)
    for k in range(K):
        x, *memory = enc.step(values[:, k], ts[:, k], *memory)
        torch.testing.assert_close(x_all[:, k], x, rtol=0, atol=1e-6)
        torch.testing.assert_close(value_all[:, k], memory[0], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(time_all[:, k], memory[1], rtol=0, atol=0, equal_nan=True)
    # Padding leaves the memory as it was.
    torch.testing.assert_close(value_all[1, K - 1], value_all[1, 3], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(time_all[1, K - 1], time_all[1, 3], rtol=0, atol=0, equal_nan=True)
    assert value_all[2, :3, HR].tolist() == [91.0] * 3 and time_all[2, :3, HR].tolist() == [T0 - 5000.0] * 3


def test_fit_uses_observed_values_and_falls_back_for_unmeasured_variables() -> None:
    a = np.full((3, V), np.nan, dtype=np.float32)
    b = np.full((2, V), np.nan, dtype=np.float32)
    a[:, HR] = [60, 80, 100]
    b[:, HR] = [70, 90]
    enc = FeatureEncoder.fit([a, b])
    assert enc.mean[HR] == pytest.approx(80.0)
    assert enc.std[HR] == pytest.approx(np.std([60, 80, 100, 70, 90]), rel=1e-5)
    assert enc.mean[LACTATE] == pytest.approx(VARIABLES[LACTATE].normal) and enc.std[LACTATE] == 1.0


@pytest.mark.parametrize(
    "mean, std",
    [(torch.zeros(V - 1), torch.ones(V - 1)), (torch.zeros(V), torch.zeros(V)), (torch.full((V,), math.nan), torch.ones(V))],
)
def test_rejects_bad_statistics(mean: torch.Tensor, std: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        FeatureEncoder(mean, std)
