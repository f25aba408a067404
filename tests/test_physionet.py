"""PhysioNet/CinC 2019 PSV loader on small files written here in the challenge's exact format."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import load_checkpoint
from models.datasets.physionet import PSV_EPOCH, PsvFormatError, load_psv_directory, load_psv_file
from schemas.variables import VARIABLE_INDEX
from worker.cli import main

HEADER = (
    "HR|O2Sat|Temp|SBP|MAP|DBP|Resp|EtCO2|BaseExcess|HCO3|FiO2|pH|PaCO2|SaO2|AST|BUN|Alkalinephos|"
    "Calcium|Chloride|Creatinine|Bilirubin_direct|Glucose|Lactate|Magnesium|Phosphate|Potassium|"
    "Bilirubin_total|TroponinI|Hct|Hgb|PTT|WBC|Fibrinogen|Platelets|Age|Gender|Unit1|Unit2|"
    "HospAdmTime|ICULOS|SepsisLabel"
).split("|")
T0 = PSV_EPOCH.timestamp()
HOUR = 3600.0


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
    assert series.ts.tolist() == [T0 + h * HOUR for h in (1, 2, 3, 4, 5)]
    assert series.event_at == T0 + (3 + 6) * HOUR
    assert series.labels.tolist() == [1.0] * 5  # every hour lies within 12 h of the event
    assert column(series, "heart_rate") == [88, 92, 104, 111, 118]
    assert column(series, "temperature")[0] == pytest.approx(37.1)
    assert [column(series, name)[0] for name in ("spo2", "sbp", "map", "dbp", "resp_rate")] == [97, 121, 85, 67, 18]
    labs = {name: column(series, name)[1] for name in (
        "lactate", "wbc", "creatinine", "platelets", "bilirubin", "potassium", "glucose", "hemoglobin")}
    assert labs == pytest.approx({"lactate": 2.1, "wbc": 13.4, "creatinine": 1.3, "platelets": 180,
                                  "bilirubin": 0.9, "potassium": 4.4, "glucose": 141, "hemoglobin": 10.2})
    assert np.isnan(column(series, "on_oxygen")[1])  # no FiO2 charted that hour: not measured
    assert [column(series, "on_oxygen")[i] for i in (0, 2, 3)] == [0.0, 1.0, 1.0]
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

    assert np.isnan(column(series, "heart_rate")[0]) and column(series, "heart_rate")[1:] == [85, 84]
    assert np.isnan(column(series, "spo2")[0]) and np.isnan(column(series, "temperature")[:2]).all()
    assert np.isnan(column(series, "on_oxygen")[1])
    assert column(series, "resp_rate")[0] == 20 and column(series, "lactate")[1] == pytest.approx(2.0)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.rejected == {"HR": 1, "O2Sat": 1, "Temp": 2, "FiO2": 1}
    assert "dropped 5 PSV values outside the plausible range (FiO2 1, HR 1, O2Sat 1, Temp 2)" in record.getMessage()


def test_hours_without_any_catalogue_variable_are_not_events(tmp_path: Path) -> None:
    rows = [psv_row(1, HR=80), psv_row(2, EtCO2=38, pH=7.38), psv_row(3, HR=900), psv_row(4, Resp=18)]
    series = load_psv_file(write_psv(tmp_path / "p000005.psv", rows))
    assert series.ts.tolist() == [T0 + HOUR, T0 + 4 * HOUR]


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
    write_psv(tmp_path / "p000003.psv", [psv_row(1, EtCO2=40)])  # nothing the model reads
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
    assert manifest["training"]["data"]["n_patients"] == {"train": 8, "val": 2}
    assert loaded.manifest["horizon_hours"] == 12.0
    hr = loaded.manifest["normalisation"]["variables"]["heart_rate"]["mean"]
    assert 80 < hr < 110  # normalisation fitted on the PSV stays
