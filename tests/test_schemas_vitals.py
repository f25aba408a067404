"""vitals.v1: the happy path and every class of bad value, each with its exact error."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from schemas.decode import decode
from schemas.errors import ContractError
from schemas.variables import ACVPU, VITALS

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()


def vitals(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": "mon-7-000123",
        "patient_id": "P000123",
        "observed_at": "2024-05-01T10:00:00.250+02:00",
        "heart_rate": 88,
    }
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not ...}


def errors(payload: Any, **kwargs: Any) -> list[tuple[str, str, Any]]:
    with pytest.raises(ContractError) as caught:
        decode("vitals", orjson.dumps(payload), **kwargs)
    return [(e.field, e.problem, e.value) for e in caught.value.errors]


def test_a_full_message_is_canonical_and_in_utc() -> None:
    payload = vitals(
        schema="vitals.v1",
        source="monitor-7",
        resp_rate=18,
        spo2=96.5,
        temperature=37.4,
        sbp=122,
        dbp=78,
        map=93,
        consciousness="V",
        on_oxygen=True,
    )
    [obs] = decode("vitals", orjson.dumps(payload), now=NOW)
    assert obs.event_id == "mon-7-000123"
    assert obs.patient_id == "P000123"
    assert obs.source == "monitor-7"
    assert obs.observed_at == datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=timezone.utc)
    assert obs.observed_at.tzinfo is timezone.utc
    assert obs.observed_ts == obs.observed_at.timestamp()
    assert obs.values == {
        "heart_rate": 88.0,
        "resp_rate": 18.0,
        "spo2": 96.5,
        "temperature": 37.4,
        "sbp": 122.0,
        "dbp": 78.0,
        "map": 93.0,
        "consciousness": 2.0,
        "on_oxygen": 1.0,
    }
    assert all(type(v) is float for v in obs.values.values())


@pytest.mark.parametrize("level", ACVPU)
def test_consciousness_is_its_acvpu_ordinal(level: str) -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(heart_rate=..., consciousness=level)))
    assert obs.values == {"consciousness": float(ACVPU.index(level))}


def test_null_means_not_measured() -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(spo2=None, temperature=None)))
    assert obs.values == {"heart_rate": 88.0}


@pytest.mark.parametrize("stamp", ["2024-05-01T08:00:00Z", "2024-05-01t08:00:00z",
                                   "2024-05-01 08:00:00+00:00", "2024-05-01T04:00:00-04:00",
                                   "2024-05-01T08:00:00.000000001Z"])
def test_rfc3339_spellings_of_one_instant(stamp: str) -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(observed_at=stamp)))
    assert obs.observed_at == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)


@pytest.mark.parametrize("variable", [v for v in VITALS if v.name not in ("consciousness",
                                                                          "on_oxygen")])
def test_range_bounds_are_inclusive(variable: Any) -> None:
    for value in (variable.low, variable.high):
        [obs] = decode("vitals", orjson.dumps({**vitals(heart_rate=...), variable.name: value}))
        derived = {"on_oxygen": float(value > 0.21)} if variable.name == "fio2" else {}
        assert obs.values == {variable.name: value, **derived}


# --- bad values: one test per class, each pinning field and problem exactly -----------------


def test_impossible_value_names_field_range_and_value() -> None:
    assert errors(vitals(heart_rate=900)) == [
        ("heart_rate", "out of plausible range 20–300 /min", 900)
    ]


def test_every_impossible_value_is_reported_at_once() -> None:
    assert errors(vitals(spo2=140, temperature=20, dbp=5)) == [
        ("spo2", "out of plausible range 40–100 %", 140),
        ("temperature", "out of plausible range 25–45 Cel", 20),
        ("dbp", "out of plausible range 10–200 mm[Hg]", 5),
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("heart_rate", True, "must be a number"),
        ("heart_rate", "72", "must be a number"),
        ("heart_rate", [72], "must be a number"),
        ("on_oxygen", 1, "must be true or false"),
        ("on_oxygen", "yes", "must be true or false"),
        ("consciousness", "X", "must be one of 'A', 'C', 'V', 'P' or 'U'"),
        ("consciousness", 0, "must be one of 'A', 'C', 'V', 'P' or 'U'"),
        ("event_id", 17, "must be a string"),
        ("event_id", "", "must not be empty"),
        ("event_id", "e" * 129, "must be at most 128 characters"),
        ("source", "", "must not be empty"),
        ("schema", "vitals.v2", "must be one of 'vitals.v1'"),
    ],
)
def test_wrong_type(field: str, value: Any, problem: str) -> None:
    assert errors(vitals(**{field: value})) == [(field, problem, value)]


@pytest.mark.parametrize("field", ["event_id", "patient_id", "observed_at"])
def test_missing_required_field(field: str) -> None:
    assert errors(vitals(**{field: ...})) == [(field, "required field is missing", None)]


def test_no_measurement_at_all() -> None:
    assert errors(vitals(heart_rate=None)) == [
        (
            "$",
            "no measurement: expected at least one of heart_rate, resp_rate, spo2, "
            "temperature, sbp, dbp, map, consciousness, on_oxygen, fio2, etco2",
            None,
        )
    ]


@pytest.mark.parametrize("patient_id", ["", "p" * 65, "P 1", "P/1", "Pé", "P\n"])
def test_bad_patient_id(patient_id: str) -> None:
    assert errors(vitals(patient_id=patient_id)) == [
        ("patient_id", "must match ^[A-Za-z0-9._:-]{1,64}$", patient_id)
    ]


def test_patient_id_alphabet_limits() -> None:
    pid = "Ab9._:-" + "x" * 57
    [obs] = decode("vitals", orjson.dumps(vitals(patient_id=pid)))
    assert obs.patient_id == pid


def test_unknown_field_is_refused_with_a_hint() -> None:
    assert errors(vitals(heartrate=80)) == [
        ("heartrate", "unknown field; did you mean 'heart_rate'?", 80)
    ]
    assert errors(vitals(ward="4B")) == [("ward", "unknown field", "4B")]


def test_naive_timestamp() -> None:
    assert errors(vitals(observed_at="2024-05-01T10:00:00")) == [
        ("observed_at", "bad timestamp: no UTC offset (add Z or ±hh:mm)", "2024-05-01T10:00:00")
    ]


@pytest.mark.parametrize(
    ("stamp", "problem"),
    [
        ("2024-05-01", "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
        (1714550400, "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
        ("1714550400", "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
        ("yesterday", "bad timestamp: not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] with Z or ±hh:mm)"),
        ("2024-13-01T10:00:00Z", "bad timestamp: month value is outside expected range of 1-12"),
        ("2024-02-30T10:00:00Z", "bad timestamp: day value is outside expected range"),
    ],
)
def test_malformed_timestamp(stamp: Any, problem: str) -> None:
    assert errors(vitals(observed_at=stamp)) == [("observed_at", problem, stamp)]


def test_timestamp_before_2000() -> None:
    [(field, problem, _)] = errors(vitals(observed_at="1999-12-31T23:59:59Z"))
    assert (field, problem) == ("observed_at", "bad timestamp: before 2000-01-01")


def test_timestamp_in_the_future_only_when_now_is_given() -> None:
    stamp = "2024-05-01T12:05:01Z"  # NOW + 301 s
    assert errors(vitals(observed_at=stamp), now=NOW) == [
        (
            "observed_at",
            "bad timestamp: 301 s in the future (tolerance 300 s)",
            "2024-05-01T12:05:01+00:00",
        )
    ]
    decode("vitals", orjson.dumps(vitals(observed_at="2024-05-01T12:05:00Z")), now=NOW)
    decode("vitals", orjson.dumps(vitals(observed_at=stamp)))


def test_problems_of_different_kinds_come_together() -> None:
    assert [(f, p) for f, p, _ in errors(vitals(patient_id="", heart_rate="x", hr=1))] == [
        ("patient_id", "must match ^[A-Za-z0-9._:-]{1,64}$"),
        ("heart_rate", "must be a number"),
        ("hr", "unknown field"),
    ]


# --- FiO2 and EtCO2 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "fio2", "on_oxygen"),
    [(0.4, 0.4, 1.0), (1.0, 1.0, 1.0), (0.21, 0.21, 0.0), (40, 0.4, 1.0), (21, 0.21, 0.0),
     (100, 1.0, 1.0), (28.5, 0.285, 1.0)],
)
def test_fio2_as_a_fraction_or_a_percentage_sets_on_oxygen(
    sent: float, fio2: float, on_oxygen: float
) -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(heart_rate=..., fio2=sent)))
    assert obs.values == pytest.approx({"fio2": fio2, "on_oxygen": on_oxygen}, rel=1e-12)


@pytest.mark.parametrize("sent", [5.0, 1.01, 20.9, 0.2, 0.0, 100.5, -0.4])
def test_fio2_between_or_beyond_the_two_forms_is_refused(sent: float) -> None:
    assert errors(vitals(fio2=sent)) == [
        ("fio2", "out of plausible range: a fraction 0.21–1 or a percentage 21–100", sent)
    ]


@pytest.mark.parametrize(("on_oxygen", "fio2"), [(True, 0.4), (True, 0.21), (False, 0.21), (False, 21)])
def test_on_oxygen_sent_with_a_fio2_that_agrees_is_kept(on_oxygen: bool, fio2: float) -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(on_oxygen=on_oxygen, fio2=fio2)))
    assert obs.values["on_oxygen"] == float(on_oxygen)


def test_room_air_with_supplemental_fio2_is_a_conflict() -> None:
    assert errors(vitals(on_oxygen=False, fio2=0.4)) == [
        ("on_oxygen", "conflicts with fio2 (0.4): room air is a FiO2 of 0.21", False)
    ]
    assert errors(vitals(on_oxygen=False, fio2=60)) == [
        ("on_oxygen", "conflicts with fio2 (0.6): room air is a FiO2 of 0.21", False)
    ]


def test_etco2_in_mm_hg() -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(heart_rate=..., etco2=0)))
    assert obs.values == {"etco2": 0.0}  # no exhaled CO2 is a reading (a displaced tube)
    assert errors(vitals(etco2=200)) == [("etco2", "out of plausible range 0–150 mm[Hg]", 200)]
    assert errors(vitals(etco2="38 mmHg")) == [("etco2", "must be a number", "38 mmHg")]


def test_fio2_and_etco2_alone_are_measurements() -> None:
    [obs] = decode("vitals", orjson.dumps(vitals(heart_rate=..., fio2=0.5, etco2=41)))
    assert obs.values == {"fio2": 0.5, "etco2": 41.0, "on_oxygen": 1.0}
