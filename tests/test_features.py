"""FeatureEncoder: carry-forward with decay, masks, ages, counts, step gaps, the encounter context,
fitting, batch independence, and one ``steps`` equal to step after step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.features import AGE_CAP_HOURS, COUNT_CAP, INPUTS, STAY_CAP_HOURS, Z_CLIP, Context, FeatureEncoder, Memory, Runs, n_features
from schemas.encounter import SEXES
from schemas.variables import VARIABLE_INDEX, VARIABLE_NAMES, VARIABLES

N_FEATURES = n_features(len(VARIABLE_NAMES))  # an encoder over the whole catalogue, legacy inputs

V = len(VARIABLES)
HR = VARIABLE_INDEX["heart_rate"]
LACTATE = VARIABLE_INDEX["lactate"]
NORMAL = torch.tensor([v.normal for v in VARIABLES])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
T0 = 1_750_000_000.0


def encoder(device: str = "cpu", inputs: tuple[str, ...] | None = None) -> FeatureEncoder:
    extra = {} if inputs is None else {"inputs": inputs}
    return FeatureEncoder(NORMAL + 1.0, torch.full((V,), 2.0), VARIABLE_NAMES, **extra).to(device)


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
    x, after = enc.step(values, t, enc.initial_memory(1))
    last_value, last_time, prev_time = after.last_value, after.last_time, after.prev_time
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
    _, memory = enc.step(values, t0, enc.initial_memory(1))
    later = t0 + decay * 3600.0
    x, after = enc.step(nothing(), later, memory)
    lv2, lt2 = after.last_value, after.last_time
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
    _, state = enc.step(first, torch.tensor([T0], dtype=torch.float64), enc.initial_memory(1))
    values = nothing()
    values[0, HR] = 290.0
    snapshot = [s.clone() for s in (values, *state.fields())]
    x, _ = enc.step(values, torch.tensor([T0 + 60], dtype=torch.float64), state)
    for before, now in zip(snapshot, (values, *state.fields())):
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


@pytest.mark.parametrize("inputs", [None, INPUTS], ids=["legacy inputs", "every input"])
@pytest.mark.parametrize("device", DEVICES)
def test_steps_at_once_equal_one_step_after_another_from_any_memory(device: str, inputs) -> None:
    """The worker folds a patient's K events of one micro-batch in one ``steps`` call; it must
    give what K ``step`` calls (the recurrence) give, rows, memory and all, padding included,
    with the context of each event (an admission arriving mid-run)."""
    enc = encoder(device, inputs)
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
    memory = enc.initial_memory(B)
    memory.last_value[2:, HR], memory.last_time[2:, HR], memory.prev_time[2:] = 91.0, T0 - 5000.0, T0 - 100.0
    memory.counts[2:, HR], memory.first_time[2:] = 12.0, T0 - 86400.0
    context = Context.unknown((B, K), "cpu")
    context.age[3, 2:], context.sex[3, 2:], context.admitted[3, 2:] = 71.5, SEXES.index("male"), T0 - 7200.0
    values, ts = values.to(device), ts.to(device)
    memory = Memory(*(f.to(device) for f in memory.fields()))
    context = Context(context.age.to(device), context.sex.to(device), context.admitted.to(device))

    x_all, trail = enc.steps(values, ts, memory, context)

    for k in range(K):
        x, memory = enc.step(values[:, k], ts[:, k], memory, Context(context.age[:, k], context.sex[:, k], context.admitted[:, k]))
        torch.testing.assert_close(x_all[:, k], x, rtol=0, atol=1e-6)
        torch.testing.assert_close(trail.last_value[:, k], memory.last_value, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(trail.last_time[:, k], memory.last_time, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(trail.counts[:, k], memory.counts, rtol=0, atol=0)
    torch.testing.assert_close(trail.first_time, memory.first_time, rtol=0, atol=0, equal_nan=True)
    # Padding leaves the memory as it was.
    torch.testing.assert_close(trail.last_value[1, K - 1], trail.last_value[1, 3], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(trail.last_time[1, K - 1], trail.last_time[1, 3], rtol=0, atol=0, equal_nan=True)
    assert trail.last_value[2, :3, HR].tolist() == [91.0] * 3 and trail.last_time[2, :3, HR].tolist() == [T0 - 5000.0] * 3


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_runs_equal_the_padded_grid_bit_for_bit(device: str) -> None:
    """The worker folds only a batch's real events (runs of different lengths, patient after
    patient, ``FeatureEncoder.runs``); training folds a padded grid (``steps``). Each real
    event must get the same bits either way, whoever else is in the batch."""
    enc = encoder(device, INPUTS)
    gen = torch.Generator().manual_seed(5)
    lengths = [5, 1, 3, 5, 2]
    B, K = len(lengths), max(lengths)
    values = NORMAL + 10 * torch.randn(B, K, V, generator=gen)
    values[torch.rand(B, K, V, generator=gen) < 0.7] = math.nan
    ts = T0 + torch.cumsum(torch.rand(B, K, generator=gen, dtype=torch.float64) * 3600, dim=1)
    for p, n in enumerate(lengths):  # padding, as the grid has it
        values[p, n:], ts[p, n:] = math.nan, ts[p, n - 1]
    memory = enc.initial_memory(B)
    memory.last_value[::2, HR], memory.last_time[::2, HR], memory.prev_time[::2] = 88.0, T0 - 900.0, T0 - 60.0
    memory.counts[::2, HR], memory.first_time[::2] = 4.0, T0 - 3600.0
    context = Context.unknown((B, K), "cpu")
    context.age[1], context.admitted[1] = 60.0, T0 - 86400.0
    values, ts = values.to(device), ts.to(device)
    memory = Memory(*(f.to(device) for f in memory.fields()))
    context = Context(context.age.to(device), context.sex.to(device), context.admitted.to(device))
    x_grid, grid = enc.steps(values, ts, memory, context)

    patient = torch.tensor([p for p, n in enumerate(lengths) for _ in range(n)], device=device)
    step = torch.tensor([k for n in lengths for k in range(n)], device=device)
    start = torch.tensor([sum(lengths[:p]) for p, n in enumerate(lengths) for _ in range(n)], device=device)
    at = Context(context.age[patient, step], context.sex[patient, step], context.admitted[patient, step])
    x, after = enc.runs(values[patient, step], ts[patient, step], memory, Runs(patient, start), at)

    assert torch.equal(x, x_grid[patient, step])
    for name in ("last_value", "last_time", "counts"):
        assert torch.equal(getattr(after, name).nan_to_num(-1.0), getattr(grid, name)[patient, step].nan_to_num(-1.0)), name
    assert torch.equal(after.first_time, grid.first_time)


def test_counts_time_since_admission_age_and_sex() -> None:
    """The inputs a real feed supports beyond the values: how often each variable was measured,
    hours since the admission (since the first event when none is known), age and sex."""
    enc = encoder(inputs=INPUTS)
    assert enc.n_features == 4 * V + 1 + 1 + 2 + 2
    first, second = nothing(), nothing()
    first[0, HR] = second[0, HR] = 90.0
    second[0, LACTATE] = 3.0
    t0, t1 = torch.tensor([T0], dtype=torch.float64), torch.tensor([T0 + 5 * 3600.0], dtype=torch.float64)
    unknown = Context.unknown((1,), "cpu")
    x0, memory = enc.step(first, t0, enc.initial_memory(1), unknown)
    x1, memory = enc.step(second, t1, memory, unknown)
    counts, stay, age, sex = x1[0, 3 * V : 4 * V], x1[0, 4 * V + 1], x1[0, 4 * V + 2 : 4 * V + 4], x1[0, 4 * V + 4 :]
    assert counts[HR] == pytest.approx(math.log1p(2) / math.log1p(COUNT_CAP)) and counts[LACTATE] == pytest.approx(math.log1p(1) / math.log1p(COUNT_CAP))
    assert memory.counts[0, HR] == 2 and memory.first_time.tolist() == [T0]
    assert stay == pytest.approx(math.log1p(5) / math.log1p(STAY_CAP_HOURS))  # since the first event: no admission known
    assert age.tolist() == [0.0, 0.0] and sex.tolist() == [0.0, 0.0]  # unknown
    admitted = Context(torch.tensor([68.0]), torch.tensor([SEXES.index("female")], dtype=torch.int8), t0 - 19 * 3600.0)
    x2, _ = enc.step(nothing(), t1, memory, admitted)
    assert x2[0, 4 * V + 1] == pytest.approx(math.log1p(24) / math.log1p(STAY_CAP_HOURS))  # since the admission
    assert x2[0, 4 * V + 2 :].tolist() == pytest.approx([0.68, 1.0, 1.0, 0.0])


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
