"""PhysioNet/CinC 2019 PSV loader on small files written here in the challenge's exact format,
and on the committed set-A fixtures (tests/fixtures/physionet2019, CC BY 4.0)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.checkpoint import load_checkpoint
from models.datasets.clif_demo import PHYSIONET_2019_LICENCE
from models.datasets.physionet import (
    COLUMN_VARIABLES,
    PSV_EPOCH,
    REQUIRED_COLUMNS,
    PsvFormatError,
    aligned_psv_events,
    load_psv_directory,
    load_psv_file,
    load_psv_stays,
)
from schemas.decode import decode
from schemas.variables import BY_NAME, VARIABLE_INDEX, VARIABLES
from worker.cli import main

HEADER = (
    "HR|O2Sat|Temp|SBP|MAP|DBP|Resp|EtCO2|BaseExcess|HCO3|FiO2|pH|PaCO2|SaO2|AST|BUN|Alkalinephos|"
    "Calcium|Chloride|Creatinine|Bilirubin_direct|Glucose|Lactate|Magnesium|Phosphate|Potassium|"
    "Bilirubin_total|TroponinI|Hct|Hgb|PTT|WBC|Fibrinogen|Platelets|Age|Gender|Unit1|Unit2|"
    "HospAdmTime|ICULOS|SepsisLabel"
).split("|")
T0 = PSV_EPOCH.timestamp()
HOUR = 3600.0
FIXTURES = Path(__file__).parent / "fixtures" / "physionet2019"


def psv_row(iculos: int, sepsis: int = 0, **values: float) -> dict[str, float]:
    """One hour of a stay: demographics filled in as the challenge does, the rest NaN unless given."""
    row = {name: math.nan for name in HEADER}
    row.update(Age=71.0, Gender=1.0, Unit1=0.0, Unit2=1.0, HospAdmTime=-12.5, ICULOS=float(iculos), SepsisLabel=float(sepsis))
    row.update(values)
    return row


def write_psv(path: Path, rows: list[dict[str, float]], header: list[str] = HEADER) -> Path:
    """Pipe-separated, header first, NaN spelled as the challenge spells it."""
    lines = ["|".join(header)]
    lines += ["|".join("NaN" if math.isnan(row[name]) else f"{row[name]:g}" for name in header) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def column(series, name: str) -> list[float]:
    return series.values[:, VARIABLE_INDEX[name]].tolist()


def test_a_septic_stay_is_mapped_to_catalogue_variables_with_the_event_six_hours_after_the_first_label(tmp_path: Path) -> None:
    rows = [
        psv_row(1, HR=88, O2Sat=97, Temp=37.1, SBP=121, MAP=85, DBP=67, Resp=18, FiO2=0.21, EtCO2=35),
        psv_row(2, HR=92, Lactate=2.1, WBC=13.4, Creatinine=1.3, Platelets=180, Bilirubin_total=0.9,
                Potassium=4.4, Glucose=141, Hgb=10.2, Bilirubin_direct=0.3, BUN=22),
        psv_row(3, sepsis=1, HR=104, Resp=24, FiO2=0.5),
        psv_row(4, sepsis=1, HR=111, FiO2=40),  # FiO2 charted as a percentage
        psv_row(5, sepsis=1, HR=118),
    ]
    series = load_psv_file(write_psv(tmp_path / "p000009.psv", rows), horizon_hours=12.0)

    assert series.patient_id == "p000009"
    # One row per message a replay sends: hour 2 is its labs, then its vital signs, 0 h apart.
    assert series.ts.tolist() == [T0 + h * HOUR for h in (1, 2, 2, 3, 4, 5)]
    is_lab = np.array([v.kind == "lab" for v in VARIABLES])
    measured = ~np.isnan(series.values)
    assert [bool(row[is_lab].any()) for row in measured] == [False, True, False, False, False, False]
    assert not measured[1][~is_lab].any() and not measured[2][is_lab].any()
    assert series.event_at == T0 + (3 + 6) * HOUR
    assert series.labels.tolist() == [1.0] * 6  # every hour lies within 12 h of the event
    assert column(series, "heart_rate") == pytest.approx([88, math.nan, 92, 104, 111, 118], nan_ok=True)
    assert column(series, "temperature")[0] == pytest.approx(37.1)
    assert [column(series, name)[0] for name in ("spo2", "sbp", "map", "dbp", "resp_rate")] == [97, 121, 85, 67, 18]
    labs = {name: column(series, name)[1] for name in (
        "lactate", "wbc", "creatinine", "platelets", "bilirubin", "potassium", "glucose", "hemoglobin")}
    assert labs == pytest.approx({"lactate": 2.1, "wbc": 13.4, "creatinine": 1.3, "platelets": 180,
                                  "bilirubin": 0.9, "potassium": 4.4, "glucose": 141, "hemoglobin": 10.2})
    assert column(series, "etco2")[0] == 35
    assert column(series, "bilirubin_direct")[1] == pytest.approx(0.3) and column(series, "bun")[1] == 22
    assert np.isnan(column(series, "on_oxygen")[2])  # no FiO2 charted that hour: not measured
    assert [column(series, "on_oxygen")[i] for i in (0, 3, 4)] == [0.0, 1.0, 1.0]
    assert [column(series, "fio2")[i] for i in (0, 3, 4)] == pytest.approx([0.21, 0.5, 0.4])  # 40 % is 0.40
    assert np.isnan(series.values[:, [VARIABLE_INDEX["sodium"], VARIABLE_INDEX["consciousness"]]]).all()


def test_labels_follow_the_requested_horizon_and_reproduce_sepsislabel_at_six_hours(tmp_path: Path) -> None:
    sepsis = [0] * 14 + [1] * 6
    rows = [psv_row(h + 1, sepsis=s, HR=80 + h) for h, s in enumerate(sepsis)]
    path = write_psv(tmp_path / "p000002.psv", rows)

    assert load_psv_file(path, horizon_hours=6.0).labels.tolist() == sepsis
    twelve = load_psv_file(path, horizon_hours=12.0)
    assert twelve.event_at == T0 + (15 + 6) * HOUR
    assert twelve.labels.tolist() == [0.0] * 8 + [1.0] * 12  # from hour 9 = 21 - 12


def test_a_stay_that_never_turns_septic_has_no_event_and_no_positive_label(tmp_path: Path) -> None:
    rows = [psv_row(h, HR=70 + h, O2Sat=98) for h in range(1, 9)]
    series = load_psv_file(write_psv(tmp_path / "p000003.psv", rows))
    assert series.event_at is None
    assert series.labels.tolist() == [0.0] * 8


def test_out_of_range_values_are_dropped_and_counted_per_column(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        psv_row(1, HR=900, O2Sat=140, Temp=98.6, Resp=20),  # a Fahrenheit export
        psv_row(2, HR=85, Temp=99.1, FiO2=0.1, Lactate=2.0),
        psv_row(3, HR=84, Temp=37.0),
    ]
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        series = load_psv_file(write_psv(tmp_path / "p000004.psv", rows))

    # Rows: hour 1's vital signs, hour 2's labs, hour 2's vital signs, hour 3's vital signs.
    assert np.isnan(column(series, "heart_rate")[:2]).all() and column(series, "heart_rate")[2:] == [85, 84]
    assert np.isnan(column(series, "spo2")[0]) and np.isnan(column(series, "temperature")[:3]).all()
    assert np.isnan(column(series, "on_oxygen")[2])
    assert column(series, "resp_rate")[0] == 20 and column(series, "lactate")[1] == pytest.approx(2.0)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {"HR": 1, "O2Sat": 1, "Temp": 2, "FiO2": 1}
    assert "dropped 5 PSV values outside the plausible range (FiO2 1, HR 1, O2Sat 1, Temp 2)" in record.getMessage()


def test_hours_without_any_catalogue_variable_are_not_events(tmp_path: Path) -> None:
    rows = [psv_row(1, HR=80), psv_row(2), psv_row(3, HR=900), psv_row(4, pH=7.38), psv_row(5, EtCO2=38)]
    series = load_psv_file(write_psv(tmp_path / "p000005.psv", rows))
    assert series.ts.tolist() == [T0 + HOUR, T0 + 4 * HOUR, T0 + 5 * HOUR]


def test_rows_are_ordered_by_iculos(tmp_path: Path) -> None:
    rows = [psv_row(3, HR=83), psv_row(1, HR=81), psv_row(2, HR=82)]
    series = load_psv_file(write_psv(tmp_path / "p000006.psv", rows))
    assert column(series, "heart_rate") == [81, 82, 83]
    assert series.ts.tolist() == [T0 + h * HOUR for h in (1, 2, 3)]


def test_a_file_missing_required_columns_is_refused_naming_file_and_columns(tmp_path: Path) -> None:
    header = [name for name in HEADER if name not in ("Lactate", "ICULOS")]
    path = write_psv(tmp_path / "p000007.psv", [psv_row(1, HR=80)], header)
    with pytest.raises(PsvFormatError, match=r"p000007\.psv: missing required column\(s\) Lactate, ICULOS"):
        load_psv_file(path)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("80|97", "line 3: 2 fields, but the header names 41 columns"),
        ("eighty" + "|NaN" * 40, "line 3, column HR: 'eighty' is not a number"),
        ("80|NaN|37.2" + "|NaN" * 36 + "||0", "line 3, column ICULOS: '' is not a number"),
    ],
)
def test_malformed_rows_are_refused_naming_file_line_and_column(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "p000008.psv"
    good = "|".join(["80"] + ["NaN"] * 38 + ["1", "0"])
    path.write_text("|".join(HEADER) + "\n" + good + "\n" + body + "\n")
    with pytest.raises(PsvFormatError, match=rf"p000008\.psv: {problem}"):
        load_psv_file(path)


def test_vitalwatch_train_refuses_a_bad_psv_directory_naming_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_psv(tmp_path / "p000001.psv", [psv_row(1, HR=80), psv_row(2, HR=81)])
    (tmp_path / "p000002.psv").write_text("|".join(HEADER) + "\n" + "|".join(["85", "n/a"] + ["NaN"] * 37 + ["1", "0"]) + "\n")

    code = main(["train", "--psv", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "ckpt"), "--no-progress"])

    assert code == 2
    err = capsys.readouterr().err
    assert "vitalwatch train:" in err and "p000002.psv: line 2, column O2Sat: 'n/a' is not a number" in err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(("name", "value"), [("ICULOS", math.nan), ("SepsisLabel", 2.0)])
def test_time_and_label_columns_must_be_valid_on_every_row(tmp_path: Path, name: str, value: float) -> None:
    path = write_psv(tmp_path / "p000010.psv", [psv_row(1, HR=80), psv_row(2, HR=81, **{name: value})])
    with pytest.raises(PsvFormatError, match=rf"p000010\.psv: column {name} must"):
        load_psv_file(path)


def test_a_directory_loads_every_stay_and_reports_rejections_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_psv(tmp_path / "p000002.psv", [psv_row(1, HR=80), psv_row(2, sepsis=1, HR=300.5)])
    write_psv(tmp_path / "p000001.psv", [psv_row(1, HR=75, Temp=101.2)])
    write_psv(tmp_path / "p000003.psv", [psv_row(1), psv_row(2)])  # demographics only: nothing measured
    (tmp_path / "notes.txt").write_text("not a stay")
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        stays = load_psv_directory(tmp_path, horizon_hours=12.0)

    assert [s.patient_id for s in stays] == ["p000001", "p000002"]
    assert stays[1].event_at == T0 + 8 * HOUR and stays[0].event_at is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "dropped 2 PSV values outside the plausible range (HR 1, Temp 1) in 2 of 3 files",
        "left out 1 of 3 PSV stays without any measured catalogue variable",
    ]


def test_a_directory_without_psv_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PsvFormatError, match="no .psv files"):
        load_psv_directory(tmp_path)


def test_vitalwatch_train_learns_from_a_directory_of_psv_stays(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = tmp_path / "site"
    data.mkdir()
    for k in range(10):
        septic = k % 5 != 0
        rows = []
        for h in range(1, 31):
            sick = septic and h >= 14
            rows.append(psv_row(
                h, sepsis=int(septic and h >= 20),
                HR=rng.normal(110 if sick else 80, 5), Resp=rng.normal(24 if sick else 16, 1.5),
                O2Sat=min(100, rng.normal(93 if sick else 97, 1)), SBP=rng.normal(100 if sick else 125, 6),
                **({"Lactate": rng.normal(3.5 if sick else 1.1, 0.2)} if h % 6 == 0 else {}),
            ))
        write_psv(data / f"p{k:06d}.psv", rows)
    out = tmp_path / "ckpt"

    code = main(["train", "--psv", str(data), "--hidden", "4", "--epochs", "2", "--batch-size", "4",
                 "--seed", "3", "--out", str(out), "--no-progress", "--threads", "1"])

    assert code == 0
    loaded = load_checkpoint(out)
    manifest = json.loads((out / "manifest.json").read_text())
    split = manifest["training"]["data"]["split"]
    assert manifest["training"]["data"]["n_patients"] == {"train": 7, "validation": 2, "test": 1}
    assert split["seed"] == 3 and len(split["validation_stays"]) == 2 and len(split["test_stays"]) == 1
    held_out = {*split["validation_stays"], *split["test_stays"]}
    assert held_out < {f"p{k:06d}" for k in range(10)}
    assert loaded.manifest["horizon_hours"] == 6.0  # the challenge's own horizon, unless --horizon says otherwise
    hr = loaded.manifest["normalisation"]["variables"]["heart_rate"]["mean"]
    assert 80 < hr < 110  # normalisation fitted on the PSV stays


# --- every column of the format --------------------------------------------------------------


def test_the_loader_reads_every_column_of_the_challenge_format() -> None:
    assert set(REQUIRED_COLUMNS) == set(HEADER)
    assert set(COLUMN_VARIABLES.values()) | {"fio2", "on_oxygen", "sodium", "consciousness"} == {v.name for v in VARIABLES}


def inside(name: str) -> float:
    """A value inside the variable's plausible range and away from its normal (so a mix-up shows)."""
    spec = BY_NAME[name]
    return round(spec.low + 0.37 * (spec.high - spec.low), 2)


@pytest.mark.parametrize("psv_column", sorted(COLUMN_VARIABLES))
def test_each_column_is_kept_in_its_catalogue_variable_when_plausible(tmp_path: Path, psv_column: str) -> None:
    name = COLUMN_VARIABLES[psv_column]
    series = load_psv_file(write_psv(tmp_path / "p000011.psv", [psv_row(1, **{psv_column: inside(name)})]))
    measured = [n for n in VARIABLES if not np.isnan(series.values[0, VARIABLE_INDEX[n.name]])]
    assert [v.name for v in measured] == [name]
    assert column(series, name)[0] == pytest.approx(inside(name))


@pytest.mark.parametrize("psv_column", sorted(COLUMN_VARIABLES))
def test_each_column_drops_and_counts_an_impossible_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, psv_column: str
) -> None:
    spec = BY_NAME[COLUMN_VARIABLES[psv_column]]
    carrier = "Resp" if psv_column == "HR" else "HR"  # keeps the hours events
    rows = [psv_row(1, **{carrier: 20, psv_column: spec.high * 2 + 1}), psv_row(2, **{carrier: 21, psv_column: spec.low - 1})]
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        series = load_psv_file(write_psv(tmp_path / "p000012.psv", rows))
    assert np.isnan(column(series, spec.name)).all()
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {psv_column: 2}


@pytest.mark.parametrize(
    ("fio2", "kept", "on_oxygen"),
    [(0.21, 0.21, 0.0), (0.35, 0.35, 1.0), (1.0, 1.0, 1.0), (21, 0.21, 0.0), (60, 0.6, 1.0), (100, 1.0, 1.0)],
)
def test_fio2_is_a_fraction_or_a_percentage_and_gives_on_oxygen(tmp_path: Path, fio2: float, kept: float, on_oxygen: float) -> None:
    series = load_psv_file(write_psv(tmp_path / "p000013.psv", [psv_row(1, FiO2=fio2)]))
    assert column(series, "fio2") == pytest.approx([kept])
    assert column(series, "on_oxygen") == [on_oxygen]


@pytest.mark.parametrize("fio2", [0.0, 0.04, 0.2, 7.0, 10.0, 101.0])
def test_a_fio2_that_is_neither_fraction_nor_percentage_is_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fio2: float
) -> None:
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        series = load_psv_file(write_psv(tmp_path / "p000014.psv", [psv_row(1, HR=80, FiO2=fio2)]))
    assert np.isnan(column(series, "fio2")).all() and np.isnan(column(series, "on_oxygen")).all()
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {"FiO2": 1}


# --- the stay's context ----------------------------------------------------------------------


def test_a_hospital_admission_before_the_icu_is_an_admission_then_a_transfer_to_the_icu(tmp_path: Path) -> None:
    series = load_psv_file(write_psv(tmp_path / "p000015.psv", [psv_row(1, HR=80), psv_row(2, HR=82)]))

    admission, transfer = series.encounters
    assert (admission.kind, admission.occurred_ts, admission.unit) == ("admission", T0 - 12.5 * HOUR, None)
    assert (admission.age, admission.sex) == (71.0, "male")
    assert (transfer.kind, transfer.occurred_ts, transfer.unit) == ("transfer", T0, "icu")
    assert series.admission is admission and series.icu_type == "SICU"
    assert not any(e.kind == "discharge" for e in series.encounters)  # the file does not say the stay ended


@pytest.mark.parametrize("offset", [-0.03, 0.0, 2.5, math.nan])
def test_an_icu_admission_at_the_hospital_admission_is_one_admission_to_the_icu(tmp_path: Path, offset: float) -> None:
    rows = [psv_row(1, HR=80, HospAdmTime=offset, Unit1=1.0, Unit2=0.0, Gender=0.0)]
    series = load_psv_file(write_psv(tmp_path / "p000016.psv", rows))
    [admission] = series.encounters
    assert (admission.kind, admission.occurred_ts, admission.unit, admission.sex) == ("admission", T0, "icu", "female")
    assert series.icu_type == "MICU"


@pytest.mark.parametrize(("unit1", "unit2"), [(math.nan, math.nan), (1.0, 1.0), (0.0, 0.0)])
def test_no_icu_type_unless_exactly_one_unit_column_says_so(tmp_path: Path, unit1: float, unit2: float) -> None:
    series = load_psv_file(write_psv(tmp_path / "p000017.psv", [psv_row(1, HR=80, Unit1=unit1, Unit2=unit2)]))
    assert series.icu_type is None
    assert series.encounters[-1].unit == "icu"  # every challenge stay is an ICU stay


def test_implausible_demographics_are_dropped_and_counted_the_stay_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [psv_row(1, HR=80, Age=130.0, Gender=2.0, Unit1=3.0, Unit2=0.0)]
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        series = load_psv_file(write_psv(tmp_path / "p000018.psv", rows))
    assert (series.admission.age, series.admission.sex, series.icu_type) == (None, None, None)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {"Age": 1, "Gender": 1, "Unit1": 1}


# --- the replay's events ---------------------------------------------------------------------


def test_replay_events_decode_to_exactly_the_series(tmp_path: Path) -> None:
    rows = [
        psv_row(1, HR=88, O2Sat=97, FiO2=40, pH=7.31, PaCO2=48, SaO2=95, HCO3=22),
        psv_row(2, TroponinI=0.8, Hct=31.5, Fibrinogen=410, AST=65),
        psv_row(3, Temp=38.2, EtCO2=33),
        psv_row(4, sepsis=1, HR=900),  # nothing left: no event
    ]
    write_psv(tmp_path / "p000019.psv", rows)
    [stay] = load_psv_stays(tmp_path)

    assert stay.stay_id == "p000019"
    assert [(e.topic, e.payload.get("kind")) for e in stay.events] == [
        ("encounters", "admission"), ("encounters", "transfer"), ("labs", None), ("vitals", None), ("labs", None), ("vitals", None),
        ("outcomes", "sepsis_onset"),
    ]
    assert all(e.payload["patient_id"] == "p000019" for e in stay.events)
    assert {e.payload["source"] for e in stay.events} == {"physionet2019", "site_rule"}
    [onset] = decode("outcomes", orjson.dumps(stay.events[-1].payload))
    assert onset.occurred_ts == stay.events[-1].observed_ts == stay.series.event_at, "first SepsisLabel hour + 6 h"
    observations = stay.events[2:-1]
    assert len(observations) == len(stay.series.ts), "one series row per message: the steps the worker takes"
    for row, event in enumerate(observations):
        [observation] = decode(event.topic, orjson.dumps(event.payload))
        assert observation.observed_ts == event.observed_ts == stay.series.ts[row]
        expected = {v.name: float(stay.series.values[row, i]) for i, v in enumerate(VARIABLES) if not np.isnan(stay.series.values[row, i])}
        assert dict(observation.values) == pytest.approx(expected, rel=1e-6)


def test_stays_are_chosen_septic_first_or_by_id(tmp_path: Path) -> None:
    write_psv(tmp_path / "p000001.psv", [psv_row(1, HR=80)])
    write_psv(tmp_path / "p000002.psv", [psv_row(1, sepsis=1, HR=90)])
    write_psv(tmp_path / "p000003.psv", [psv_row(1, HR=85)])
    assert [s.stay_id for s in load_psv_stays(tmp_path, count=2)] == ["p000002", "p000001"]
    assert [s.stay_id for s in load_psv_stays(tmp_path, stay_ids=["p000003"])] == ["p000003"]
    with pytest.raises(PsvFormatError, match=r"no p000009\.psv"):
        load_psv_stays(tmp_path, stay_ids=["p000009", "p000001"])


def test_side_by_side_every_stay_starts_charting_at_one_instant(tmp_path: Path) -> None:
    write_psv(tmp_path / "p000001.psv", [psv_row(3, HR=80), psv_row(5, HR=81)])
    write_psv(tmp_path / "p000002.psv", [psv_row(1, HR=90, HospAdmTime=0.0), psv_row(4, HR=91, HospAdmTime=0.0)])
    events = aligned_psv_events(load_psv_stays(tmp_path))

    firsts = {}
    for event in events:
        if event.topic != "encounters":
            firsts.setdefault(event.payload["patient_id"], event.observed_ts)
    assert firsts == {"p000001": T0 + HOUR, "p000002": T0 + HOUR}
    assert [e.observed_ts for e in events] == sorted(e.observed_ts for e in events)
    one = [e.observed_ts for e in events if e.payload["patient_id"] == "p000001"]
    assert np.diff(one).tolist() == [12.5 * HOUR, 3 * HOUR, 2 * HOUR]  # admission, transfer, 3 h, 5 h: gaps kept


# --- the set-A fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_stays() -> dict[str, object]:
    return {stay.stay_id: stay for stay in load_psv_stays(FIXTURES)}


def test_the_fixtures_measure_every_column_set_a_charts(fixture_stays: dict) -> None:
    values = np.concatenate([stay.series.values for stay in fixture_stays.values()])
    measured = {v.name for i, v in enumerate(VARIABLES) if not np.isnan(values[:, i]).all()}
    assert measured == set(COLUMN_VARIABLES.values()) - {"etco2"} | {"fio2", "on_oxygen"}  # set A charts no EtCO2


def test_the_fixtures_carry_their_outcomes_icus_and_encounters(fixture_stays: dict) -> None:
    assert sorted(fixture_stays) == ["p001183", "p001384", "p003259", "p006257", "p019481"]
    septic = fixture_stays["p001183"].series
    assert septic.event_at == T0 + (9 + 6) * HOUR and 0 < septic.labels.sum() < len(septic.labels)
    assert fixture_stays["p003259"].series.event_at is None
    assert {k: s.series.icu_type for k, s in fixture_stays.items()} == {
        "p001183": "MICU", "p001384": None, "p003259": "MICU", "p006257": "MICU", "p019481": "SICU",
    }
    kinds = {k: [(e.kind, e.unit) for e in s.series.encounters] for k, s in fixture_stays.items()}
    assert kinds["p001183"] == [("admission", None), ("transfer", "icu")]
    assert kinds["p001384"] == [("admission", "icu")]
    admission = fixture_stays["p001183"].series.admission
    assert (admission.occurred_ts, admission.age, admission.sex) == (T0 - round(33.09 * HOUR), 60.48, "male")
    first_row = fixture_stays["p019481"].series.ts[0]
    assert first_row >= T0 + 6 * HOUR  # charting starts at ICULOS 6


def test_every_fixture_event_is_one_the_worker_accepts(fixture_stays: dict) -> None:
    for stay in fixture_stays.values():
        assert [e.observed_ts for e in stay.events] == sorted(e.observed_ts for e in stay.events)
        for event in stay.events:
            [item] = decode(event.topic, orjson.dumps(event.payload))
            assert item.patient_id == stay.stay_id


def test_a_fixture_spo2_of_35_percent_is_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="models.datasets.physionet"):
        series = load_psv_file(FIXTURES / "p003259.psv")
    assert np.nanmin(column(series, "spo2")) >= 40
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {"O2Sat": 1}


def test_vitalwatch_train_learns_from_the_physionet2019_dataset_and_records_its_licence(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    # Seed 3 puts p001183, the one fixture stay with both labels, in validation (which needs both).
    code = main(["train", "--dataset", "physionet2019", "--psv-dir", str(FIXTURES), "--hidden", "4", "--epochs", "1",
                 "--batch-size", "2", "--seed", "3", "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    data = json.loads((out / "manifest.json").read_text())["training"]["data"]
    assert data["dataset"] == "physionet2019" and data["licence"] == PHYSIONET_2019_LICENCE
    assert "Challenge 2019, training set A" in data["attribution"]
    assert data["n_patients"] == {"train": 4, "validation": 1, "test": 0}
    assert data["split"]["validation_stays"] == ["p001183"] and data["split"]["test_stays"] == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--dataset", "physionet2019"], "--dataset physionet2019 needs --psv-dir"),
        (["--psv-dir", "somewhere"], "--psv-dir needs --dataset physionet2019"),
        (["--dataset", "clif", "--psv-dir", "somewhere"], "--psv-dir needs --dataset physionet2019"),
        (["--dataset", "physionet2019", "--psv-dir", "x", "--clif-dir", "y"], "--clif-dir needs --dataset clif"),
    ],
)
def test_vitalwatch_train_refuses_psv_options_that_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    assert main(["train", *argv, "--out", str(tmp_path / "ckpt"), "--no-progress"]) == 2
    assert problem in capsys.readouterr().err
