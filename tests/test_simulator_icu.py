"""The ICU profile of the simulator: stays that resemble PhysioNet 2019 set A's summary statistics.

One 1,500-stay cohort (a few seconds, decoded once through schemas.decode) serves the
distribution checks; the tolerances are wide enough for a cohort's sampling spread (measured
over several seeds) and narrow enough to catch a wrong unit, panel or rate. The sepsis checks
use a cohort with more septic stays, so that their shifts are measured on hundreds of stays.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import orjson
import pytest

from models.datasets import simulated_stay
from models.datasets.series import PatientSeries, series_from_simulated
from models.datasets.set_a_summary import MARGINALS, PANELS, QUANTILE_LEVELS, STAYS
from models.datasets.simulator import (
    DETERIORATING_FRACTION,
    SimulatedPatient,
    interleave,
    simulate_cohort,
    simulate_patient,
)
from schemas.decode import decode
from schemas.variables import VARIABLE_INDEX, VARIABLES

HOUR = 3600.0
SEPTIC = (1200, 5, 0.4)  # a cohort with 480 septic stays
COMMON = [name for name, m in MARGINALS.items() if m.rate >= 0.03]  # enough values per cohort for quantiles


@lru_cache(maxsize=None)
def cohort(n: int = 1500, seed: int = 3, fraction: float | None = None) -> tuple[SimulatedPatient, ...]:
    return tuple(simulate_cohort(n, seed=seed, profile="icu", deteriorating_fraction=fraction))


@lru_cache(maxsize=None)
def series(n: int = 1500, seed: int = 3, fraction: float | None = None) -> tuple[PatientSeries, ...]:
    return tuple(series_from_simulated(p, 6.0) for p in cohort(n, seed, fraction))


def icu_start(patient: SimulatedPatient) -> float:
    """When the stay reached the ICU: its admission there, or its transfer to it."""
    return next(e.observed_ts for e in patient.encounters if e.payload.get("unit") == "icu")


def hours_of(patient: SimulatedPatient, stay: PatientSeries) -> np.ndarray:
    """Each row's ICU hour (set A's ICULOS): labs are drawn before the hour, vitals charted after."""
    return np.round((stay.ts - icu_start(patient)) / HOUR)


def payload_bytes(patients: tuple[SimulatedPatient, ...] | list[SimulatedPatient]) -> list[bytes]:
    return [orjson.dumps(e.payload) for p in patients for e in p.feed()]


def test_the_same_seed_gives_the_same_icu_cohort_and_another_does_not() -> None:
    first, again, other = (simulate_cohort(10, seed=s, profile="icu") for s in (8, 8, 9))
    assert payload_bytes(first) == payload_bytes(again)
    assert payload_bytes(first) != payload_bytes(other)
    for patient in first:
        start = datetime.fromtimestamp(icu_start(patient), timezone.utc)
        alone = simulate_patient(patient.patient_id, seed=8, pattern=patient.pattern, start=start, profile="icu")
        assert payload_bytes([alone]) == payload_bytes([patient]) and alone.deterioration_at == patient.deterioration_at


def test_a_cohort_has_set_a_share_of_septic_stays_exactly() -> None:
    assert DETERIORATING_FRACTION["icu"] == STAYS.septic_share
    patterns = Counter(p.pattern for p in cohort())
    assert patterns == {"sepsis": round(1500 * STAYS.septic_share), "stable": 1500 - round(1500 * STAYS.septic_share)}
    assert Counter(p.pattern for p in simulate_cohort(20, seed=1, profile="icu", deteriorating_fraction=0.5))["sepsis"] == 10


def test_unknown_patterns_and_profiles_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown pattern 'respiratory' for the ICU profile"):
        simulate_patient("p", seed=1, pattern="respiratory", profile="icu")
    with pytest.raises(ValueError, match="unknown profile 'nicu'"):
        simulate_cohort(3, seed=1, profile="nicu")
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate_patient("p", seed=1, start=datetime(2026, 1, 5), profile="icu")


def test_every_payload_decodes_and_carries_only_what_set_a_charts() -> None:
    set_a = set(MARGINALS) | {"event_id", "patient_id", "observed_at", "source"}
    for patient in cohort()[:300]:
        for event in patient.feed():
            [item] = decode(event.topic, orjson.dumps(event.payload))
            assert item.patient_id == patient.patient_id
            if event.topic == "vitals":
                assert set(event.payload) <= set_a and item.observed_ts == event.observed_ts
            elif event.topic == "labs":
                assert set(item.values) <= set(MARGINALS) and item.observed_ts == event.observed_ts
    # consciousness, sodium and EtCO2 are not in set A, and not here either
    never = [VARIABLE_INDEX[name] for name in ("consciousness", "sodium", "etco2")]
    assert all(np.isnan(s.values[:, never]).all() for s in series())


def test_each_variable_is_charted_as_often_as_in_set_a() -> None:
    """Per ICU hour (rows from the stay's first to its last charted hour, as set A's rows)."""
    hours, counts = 0, np.zeros(len(VARIABLES))
    for patient, stay in zip(cohort(), series()):
        hour = hours_of(patient, stay)
        hours += hour.max() - hour.min() + 1
        counts += (~np.isnan(stay.values)).sum(axis=0)
    for name, marginal in MARGINALS.items():
        rate = counts[VARIABLE_INDEX[name]] / hours
        tolerance = 0.12 if marginal.rate >= 0.01 else 0.35  # rare labs: a few hundred values
        assert abs(rate - marginal.rate) <= tolerance * marginal.rate, (name, rate, marginal.rate)
    assert counts[VARIABLE_INDEX["heart_rate"]] / hours > 0.9 > 0.05 > counts[VARIABLE_INDEX["lactate"]] / hours


@pytest.mark.parametrize("name", COMMON)
def test_each_common_variable_is_distributed_as_in_set_a(name: str) -> None:
    """q10, median and q90 of all values within a quarter of set A's q10-q90 range of set A's."""
    marginal = MARGINALS[name]
    values = np.concatenate([s.values[:, VARIABLE_INDEX[name]] for s in series()])
    values = values[~np.isnan(values)]
    q10, q50, q90 = marginal.quantiles[3], marginal.quantiles[5], marginal.quantiles[7]
    tolerance = 0.25 * (q90 - q10)
    assert np.abs(np.quantile(values, [0.1, 0.5, 0.9]) - (q10, q50, q90)).max() <= tolerance
    assert abs(values.mean() - marginal.mean) <= 0.25 * marginal.sd


def test_pressures_stay_in_order_and_values_in_the_catalogue_range() -> None:
    for stay in series()[:500]:
        sbp, mean, dbp = (stay.values[:, VARIABLE_INDEX[n]] for n in ("sbp", "map", "dbp"))
        both = ~np.isnan(sbp) & ~np.isnan(dbp) & ~np.isnan(mean)
        assert (dbp[both] < mean[both]).all() and (mean[both] < sbp[both]).all()


def test_icu_length_of_stay_and_charting_start_follow_set_a() -> None:
    stable = [(p, s) for p, s in zip(cohort(), series()) if p.pattern == "stable"]
    last = np.array([hours_of(p, s).max() for p, s in stable])
    first = np.array([hours_of(p, s).min() for p, s in stable])
    expected = np.array(STAYS.last_hour_non_septic)[[4, 5, 6]]  # quartiles: 26, 40, 47 h
    assert np.abs(np.quantile(last, [0.25, 0.5, 0.75]) - expected).max() <= 3
    assert 8 <= last.min() and last.max() <= 60
    assert abs(np.mean(first == 1) - STAYS.first_hour[1]) < 0.05 and first.max() > 3


def test_septic_stays_turn_septic_when_set_as_do_and_their_records_end_soon_after() -> None:
    septic = [(p, s) for p, s in zip(cohort(*SEPTIC), series(*SEPTIC)) if p.pattern == "sepsis"]
    onset = np.array([(p.deterioration_at.timestamp() - icu_start(p)) / HOUR for p, _ in septic])
    for level, hour in ((0.25, STAYS.onset_hour[4]), (0.5, STAYS.onset_hour[5]), (0.75, STAYS.onset_hour[6])):
        assert abs(np.mean(onset <= hour) - level) <= 0.06  # set A's quartiles: 14, 35.5, 79 h
    after = np.array([hours_of(p, s).max() for p, s in septic]) - np.floor(onset)
    assert after.max() <= 3 and np.mean(after >= 2) > 0.8  # the last hour may chart nothing
    for patient, stay in septic:
        assert stay.event_at == patient.deterioration_at.timestamp()
        assert stay.labels[-1] == 1 and stay.labels[0] == (stay.ts[0] >= stay.event_at - 6 * HOUR)


def normal_scores(name: str, values: np.ndarray) -> np.ndarray:
    """Values as set A's normal scores (through its quantiles), the scale the shifts were measured on."""
    return np.interp(values, MARGINALS[name].quantiles, [NormalDist().inv_cdf(q) for q in QUANTILE_LEVELS])


def septic_shift(name: str, low_h: float, high_h: float) -> float:
    """Mean score of septic stays' rows from ``low_h`` to ``high_h`` around onset, minus non-septic stays'."""
    column, stays = VARIABLE_INDEX[name], series(*SEPTIC)
    others = np.concatenate([normal_scores(name, s.values[:, column]) for s in stays if s.event_at is None])
    window = [
        normal_scores(name, s.values[(s.ts > s.event_at + low_h * HOUR) & (s.ts <= s.event_at + high_h * HOUR), column])
        for s in stays if s.event_at is not None
    ]
    return float(np.nanmean(np.concatenate(window)) - np.nanmean(others))


@pytest.mark.parametrize(("name", "direction"), [
    ("heart_rate", 1), ("resp_rate", 1), ("temperature", 1), ("sbp", -1), ("map", -1), ("creatinine", 1),
])
def test_septic_stays_shift_before_onset_as_set_a_septic_stays_do(name: str, direction: int) -> None:
    """The hours -5 ... +3 around onset sit where set A's do against non-septic stays, and
    septic stays move from their own earlier level (hours up to 18 h before onset) the way set
    A's do: heart rate, breathing, temperature and creatinine up, pressures down."""
    late, early = septic_shift(name, -6, 3), septic_shift(name, -1e6, -18)
    assert abs(late - MARGINALS[name].septic_late) <= 0.15
    assert abs(early - MARGINALS[name].septic_offset) <= 0.15
    assert np.sign(late - early) == direction == np.sign(MARGINALS[name].septic_late - MARGINALS[name].septic_offset)


@pytest.mark.parametrize(("name", "shift", "tolerance"), [("heart_rate", 5.2, 2.5), ("resp_rate", 2.1, 1.0)])
def test_septic_stays_last_12_hours_read_higher_as_in_set_a(name: str, shift: float, tolerance: float) -> None:
    """In the catalogue's units: set A's septic stays' last 12 h before onset against non-septic stays."""
    column, stays = VARIABLE_INDEX[name], series(*SEPTIC)
    others = np.concatenate([s.values[:, column] for s in stays if s.event_at is None])
    before = np.concatenate([
        s.values[(s.ts > s.event_at - 12 * HOUR) & (s.ts <= s.event_at), column] for s in stays if s.event_at is not None
    ])
    assert abs((np.nanmean(before) - np.nanmean(others)) - shift) <= tolerance


def test_septic_stays_are_more_often_ventilated_and_tested_for_lactate() -> None:
    def share(name: str, septic: bool) -> float:
        stays = [s for s in series(*SEPTIC) if (s.event_at is not None) == septic]
        return float(np.mean([(~np.isnan(s.values[:, VARIABLE_INDEX[name]])).any() for s in stays]))

    for panel, name in (("ventilation", "fio2"), ("lactate", "lactate")):
        assert abs(share(name, True) - PANELS[panel].share_septic) < 0.1
        assert abs(share(name, False) - PANELS[panel].share) < 0.1


def test_encounters_admit_to_the_icu_or_transfer_into_it_and_only_stable_stays_are_discharged() -> None:
    transferred, ages, males, icu_types = 0, [], 0, Counter()
    for patient in cohort():
        kinds = [e.payload["kind"] for e in patient.encounters]
        admission = decode("encounters", orjson.dumps(patient.encounters[0].payload))[0]
        assert admission.kind == "admission" and admission.occurred_ts == patient.admitted_at.timestamp()
        if admission.unit == "ward":
            transferred += 1
            assert kinds[:2] == ["admission", "transfer"] and patient.admitted_at.timestamp() < icu_start(patient)
        else:
            assert admission.unit == "icu" and kinds[0] == "admission"
        assert kinds[-1] == ("discharge" if patient.pattern == "stable" else "transfer" if admission.unit == "ward" else "admission")
        assert patient.discharged_at.timestamp() >= patient.events[-1].observed_ts
        opening = [e for e in patient.encounters if e.payload["kind"] != "discharge"]
        feed = patient.feed()
        assert feed[: len(opening)] == opening and (patient.pattern == "sepsis" or feed[-1] == patient.encounters[-1])
        assert [e.observed_ts for e in feed] == sorted(e.observed_ts for e in feed)
        ages.append(admission.age)
        males += admission.sex == "male"
        icu_types[(patient.pattern, patient.icu_type)] += 1
    n = len(cohort())
    assert abs(transferred / n - STAYS.hospital_before_icu_share) < 0.05
    assert 18 <= min(ages) and max(ages) <= 89 and abs(np.median(ages) - STAYS.age[5]) < 3
    assert abs(males / n - STAYS.male_share) < 0.05
    stable = sum(v for (pattern, _), v in icu_types.items() if pattern == "stable")
    for icu_type, share in STAYS.icu_type_non_septic.items():
        assert abs(icu_types[("stable", icu_type)] / stable - share) < 0.05


def test_the_encounter_context_never_moves_an_icu_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    before = simulate_cohort(12, seed=5, profile="icu")
    monkeypatch.setattr(simulated_stay, "CONTEXT_STREAM", simulated_stay.CONTEXT_STREAM + 1)
    after = simulate_cohort(12, seed=5, profile="icu")
    assert [orjson.dumps(e.payload) for p in after for e in p.events] == [orjson.dumps(e.payload) for p in before for e in p.events]
    assert [p.encounters[0].payload["age"] for p in before] != [p.encounters[0].payload["age"] for p in after]


def test_each_hour_reaches_the_feed_as_its_labs_then_its_vital_signs() -> None:
    patient = next(p for p in cohort() if sum(e.topic == "labs" for e in p.events) > 3)
    merged = [e for _, e in interleave([patient], with_encounters=True)]
    assert merged == patient.feed()
    hours: dict[float, list[str]] = {}
    for event in patient.events:
        hours.setdefault(round((event.observed_ts - icu_start(patient)) / HOUR), []).append(event.topic)
    assert all(topics in (["vitals"], ["labs"], ["labs", "vitals"]) for topics in hours.values())
    gaps = np.diff([e.observed_ts for e in patient.events if e.topic == "vitals"]) / HOUR
    assert np.median(gaps) == pytest.approx(1.0, abs=0.1)


def test_a_cohort_spreads_its_icu_admissions_over_the_window() -> None:
    start = datetime(2026, 2, 2, tzinfo=timezone.utc)
    patients = simulate_cohort(40, seed=2, profile="icu", start=start, admission_window_hours=24)
    starts = [icu_start(p) for p in patients]
    assert start.timestamp() <= min(starts) and max(starts) < (start + timedelta(hours=24)).timestamp()
    assert len({p.patient_id for p in patients}) == 40 and all(p.patient_id.startswith("icu2-") for p in patients)
