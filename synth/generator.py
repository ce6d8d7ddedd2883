"""A deterministic generator of synthetic record streams in the spec's NDJSON format (domain.md §3).

How it works
------------
Each municipality is a small discrete-event simulation driven by its own `random.Random`, seeded
from the seed and the municipality code (so adding a municipality never changes another's data).
Children arrive as a Poisson stream sized to the municipality's share of the national volume
(`synth.targets`); each child lives as a few cooperating processes (Python generators that yield
the instant they want to run next) - its underretninger, their receipts, assessments and child
conversations, a case with investigations, a chain of measures down or up the staircase, their
follow-ups on the municipality's cadence (Herning's, the spec's default), supervision visits,
waiting lists, caseworker changes - on a heap ordered by (instant, sequence number). Memory holds
only what is alive (open cases, children in a spell of notifications), never the history, so it
does not grow with the number of years.

A municipality does not start empty: the simulation runs `warmup_years` before `start` without
writing, keeping a compact history (first and last follow-up, visit and assignment of each measure
and case; everything else) of every child still active at `start`, and writes that history, in
time order, as the first lines: the open cases, placements and caseloads a municipality already has
when the export begins. From `start` on, lines are written in time order, except a share
(`late_share`) that arrives late: each is held back by hours to weeks (a CaseOpened by at most two
days, so a child's next case can never overtake it) and written later in the file, as a DUBU
backfill would. Every reference still resolves within the same file.

Nothing is written after the end of the period (`start` + `years`), nothing uses the wall clock,
and the same configuration gives byte-identical output.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import heapq
import itertools
import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any, Final

from synth import targets as T
from synth.clock import (
    DAY,
    HOUR,
    MINUTE,
    add_months,
    add_years,
    at_work,
    iso,
    local_date,
    on_day_at_work,
    start_of,
    working_day_on_or_after,
    working_day_on_or_before,
)
from synth.municipalities import MUNICIPALITIES, NATIONAL_CHILDREN

Proc = Generator[int, None, Any]
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False).encode
Entry = tuple[int, int, str, str]  # (instant, record number, JSON line, record type)

# --- code lists and mixes ----------------------------------------------------------------------

PLACEMENT_TYPES: Final = frozenset(
    {"netvaerksanbringelse", "plejefamilie", "eget_vaerelse", "opholdssted", "doegninstitution"}
)
FOSTER_TYPES: Final = frozenset({"plejefamilie", "netvaerksanbringelse"})
OPENS_CASE: Final = frozenset({"afdaekning", "boernefaglig_undersoegelse", "akut_indsats"})
ANYTIME_NOTIFIERS: Final = frozenset({"6", "8", "12", "family", "99"})

MEASURE_AFTER_INVESTIGATION_NON_PLACEMENT: Final = {
    "raadgivning": 0.15,
    "stoette_i_hjemmet": 0.45,
    "familiebehandling": 0.40,
}
MEASURE_AFTER_INVESTIGATION_PLACEMENT: Final = {
    "netvaerksanbringelse": 0.20,
    "plejefamilie": 0.45,
    "eget_vaerelse": 0.05,
    "opholdssted": 0.15,
    "doegninstitution": 0.15,
}
EARLY_MEASURES: Final = {"raadgivning": 0.6, "stoette_i_hjemmet": 0.4}
ACUTE_PLACEMENTS: Final = {"doegninstitution": 0.40, "plejefamilie": 0.35, "netvaerksanbringelse": 0.25}
STEP_DOWN_AFTER_PLACEMENT: Final = {"stoette_i_hjemmet": 0.5, "familiebehandling": 0.3, "raadgivning": 0.2}
NEXT_NON_PLACEMENT: Final = {"stoette_i_hjemmet": 0.4, "familiebehandling": 0.4, "raadgivning": 0.2}
ESCALATION_PLACEMENTS: Final = {"plejefamilie": 0.5, "opholdssted": 0.25, "doegninstitution": 0.25}

MONTHLY_COST_DKK: Final[dict[str, tuple[int, int]]] = {
    "raadgivning": (2_000, 6_000),
    "stoette_i_hjemmet": (8_000, 22_000),
    "familiebehandling": (12_000, 30_000),
    "netvaerksanbringelse": (12_000, 25_000),
    "plejefamilie": (28_000, 55_000),
    "eget_vaerelse": (18_000, 35_000),
    "opholdssted": (55_000, 95_000),
    "doegninstitution": (80_000, 140_000),
}
PROVIDERS: Final[dict[str, tuple[str, ...]]] = {
    "raadgivning": ("Familierådgivningen", "Åben Anonym Rådgivning", "Ungeteamet"),
    "stoette_i_hjemmet": ("Familieteamet", "Kontaktpersonkorpset", "Aflastningsordningen"),
    "familiebehandling": ("Familiehuset", "Familiecentret", "Dagbehandlingen Egely"),
    "netvaerksanbringelse": ("Netværksfamilie",),
    "plejefamilie": ("Plejefamilie (kommunal)", "Forstærket plejefamilie", "Specialiseret plejefamilie"),
    "eget_vaerelse": ("Ungdomskollegiet", "Eget værelse med støtte"),
    "opholdssted": ("Opholdsstedet Lærkebo", "Opholdsstedet Skovly", "Opholdsstedet Havblik"),
    "doegninstitution": (
        "Døgninstitutionen Solhøj",
        "Børnehjemmet Egebakken",
        "Sikret institution Bakkegården",
    ),
}
TEAM_NAMES: Final = (
    "nord", "syd", "oest", "vest", "midt", "centrum", "havn", "skov",
    "eng", "aas", "fjord", "bakke", "dal", "mose", "strand", "kyst",
)  # fmt: skip

REASON_WEIGHTS: Final[dict[str, float]] = {
    "barn_adfaerd": 12, "barn_skole": 8, "barn_misbrug": 4, "barn_kriminalitet": 5,
    "barn_funktionsevne": 4, "barn_sundhed": 5, "foraeldre_misbrug": 8, "foraeldre_kriminalitet": 2,
    "foraeldre_adfaerd": 7, "foraeldre_funktionsevne": 5, "foraeldre_sundhed": 6,
    "overgreb_foraeldre": 4, "overgreb_andre": 3, "omsorgssvigt": 6, "vold_konflikt": 10,
    "utilstraekkelig_omsorg": 10, "hjemloeshed": 1, "andet": 6,
}  # fmt: skip
POLICE_REASON_WEIGHTS: Final[dict[str, float]] = {
    **REASON_WEIGHTS, "barn_kriminalitet": 30, "vold_konflikt": 25, "barn_misbrug": 8,
    "overgreb_andre": 6, "barn_skole": 1,
}  # fmt: skip
UNBORN_REASON_WEIGHTS: Final[dict[str, float]] = {
    "foraeldre_misbrug": 10, "foraeldre_sundhed": 8, "foraeldre_funktionsevne": 8,
    "foraeldre_adfaerd": 4, "foraeldre_kriminalitet": 2, "vold_konflikt": 4,
    "utilstraekkelig_omsorg": 5, "hjemloeshed": 2, "andet": 2,
}  # fmt: skip
REASON_COUNT: Final = {1: 0.55, 2: 0.30, 3: 0.15}
ABUSE: Final = frozenset({"overgreb_foraeldre", "overgreb_andre"})
REPEAT_SAME_NOTIFIER: Final = 0.5  # a repeat underretning comes from the same kind of notifier


class _Picker:
    """Weighted choice with precomputed cumulative weights (fast, deterministic)."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, weights: dict[Any, float]) -> None:
        self.items = list(weights)
        self.cum = list(itertools.accumulate(weights.values()))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        i = bisect.bisect_right(self.cum, rng.random() * self.total)
        return self.items[i if i < len(self.items) else -1]


def _decisions_by_severity() -> tuple[dict[str, float], dict[str, float]]:
    """Decision mix for `akut` underretninger and for the rest, keeping DECISION_SHARES overall."""
    acute = {
        "ingen_videre": 0.20,
        "afdaekning": 0.25,
        "boernefaglig_undersoegelse": 0.30,
        "akut_indsats": 0.25,
    }
    p_acute = T.SEVERITY_SHARES["akut"]
    other = {k: (v - p_acute * acute[k]) / (1 - p_acute) for k, v in T.DECISION_SHARES.items()}
    return acute, other


_ACUTE_DECISIONS, _OTHER_DECISIONS = _decisions_by_severity()
# P(assessed within 24 h) for the non-acute, so that the overall share is ASSESSED_WITHIN_24H
_ACUTE_ASSESSED_IN_TIME: Final = 0.98
_OTHER_ASSESSED_IN_TIME: Final = (
    T.ASSESSED_WITHIN_24H - T.SEVERITY_SHARES["akut"] * _ACUTE_ASSESSED_IN_TIME
) / (1 - T.SEVERITY_SHARES["akut"])
# Open cases at the steady state per child arriving a year (measured with this generator; sizes staff)
OPEN_CASES_PER_YEARLY_ARRIVAL: Final = 0.45


@dataclass(frozen=True, slots=True)
class Config:
    """What to generate. `start` is the first day of the period; the period ends before
    `start` + `years` (00:00 Copenhagen time), or at the instant `until` when that is given (an
    export taken "now": the caller passes the moment)."""

    seed: int
    start: date
    years: int = 1
    municipalities: tuple[str, ...] = tuple(MUNICIPALITIES)
    scale: float = 1.0
    late_share: float = T.LATE_SHARE_DEFAULT
    warmup_years: int = 2
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.years < 1:
            raise ValueError("years must be at least 1")
        if not 0 < self.scale <= 100:
            raise ValueError("scale must be in (0, 100]")
        if not 0 <= self.late_share < 0.5:
            raise ValueError("late_share must be in [0, 0.5)")
        if self.warmup_years < 0:
            raise ValueError("warmup_years must be >= 0")
        unknown = [m for m in self.municipalities if m not in MUNICIPALITIES]
        if unknown or not self.municipalities:
            raise ValueError(f"unknown municipality codes: {unknown}" if unknown else "no municipalities")
        if self.until is not None:
            if self.until.tzinfo is None or self.until.utcoffset() is None:
                raise ValueError("until needs a UTC offset")
            if self.until.timestamp() <= start_of(self.start) + DAY:
                raise ValueError("until must lie more than a day after the start")

    @property
    def t_end(self) -> int:
        """The end of the period (exclusive) as an instant."""
        if self.until is not None:
            return int(self.until.timestamp())
        return start_of(add_years(self.start, self.years))

    @property
    def end(self) -> date:
        """The first day after the period's last full day (its end's date when `until` is given)."""
        if self.until is not None:
            return local_date(self.t_end)
        return add_years(self.start, self.years)


# --- the simulated world -------------------------------------------------------------------------


class Child:
    __slots__ = ("serial", "ref", "team", "birth", "unborn_until", "case", "pending", "procs", "hist")

    def __init__(self, serial: int, ref: dict[str, Any], team: str, birth: date | None, unborn_until: int):
        self.serial = serial
        self.ref = ref  # the record's `child`: {"cpr"} or the unborn form
        self.team = team
        self.birth = birth
        self.unborn_until = unborn_until  # expected birth (instant) of an unborn child, else 0
        self.case: Case | None = None
        self.pending = False  # a case is about to be opened
        self.procs = 0
        self.hist: dict[Any, tuple[int, int, str, dict[str, Any]]] | None = {}

    def age(self, day: date) -> float:
        if self.birth is None:
            return -1.0
        return (day - self.birth).days / 365.25


class Case:
    __slots__ = ("case_id", "team", "worker", "closed", "busy_until")

    def __init__(self, case_id: str, team: str) -> None:
        self.case_id = case_id
        self.team = team
        self.worker: str | None = None
        self.closed = False
        self.busy_until = 0  # a parallel investigation ends then


class Team:
    __slots__ = ("team_id", "workers", "load")

    def __init__(self, team_id: str) -> None:
        self.team_id = team_id
        self.workers: list[str] = []
        self.load: dict[str, int] = {}


@dataclass
class MunicipalityResult:
    """What a finished stream knows besides its lines (for the demo and the CLI's summary)."""

    code: str
    lines: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    teams: dict[str, list[str]] = field(default_factory=dict)
    caseload_at_end: dict[str, int] = field(default_factory=dict)


class MunicipalityStream:
    """One municipality's simulation. Iterate `entries()` once."""

    def __init__(self, code: str, cfg: Config) -> None:
        self.code = code
        self.cfg = cfg
        self.rng = random.Random(f"synth/{cfg.seed}/{code}")
        self.late_rng = random.Random(f"synth-late/{cfg.seed}/{code}")
        self.t_start = start_of(cfg.start)
        self.t_end = cfg.t_end
        self.t_warm = start_of(add_years(cfg.start, -cfg.warmup_years))
        self.now = self.t_warm
        share = MUNICIPALITIES[code].children / NATIONAL_CHILDREN * cfg.scale
        mean_n = sum(k * p for k, p in T.NOTIFICATIONS_PER_CHILD_DIST.items())
        self.arrivals_per_year = T.NATIONAL_UNDERRETNINGER_PER_YEAR * share / mean_n
        self.result = MunicipalityResult(code)
        self._heap: list[tuple[int, int, Proc, Child | None]] = []
        self._seq = itertools.count()
        self._n_record = 0
        self._ids = dict.fromkeys(("UR", "S", "I", "child", "sb"), 0)
        self._cpr_counter: dict[date, int] = {}
        self._owed: dict[str, int] = {}  # notifier draws that did not fit their child, to hand out later
        self._warm = True
        self._live: dict[int, Child] = {}
        self._out: list[tuple[int, int, str, str, Any]] = []  # (instant, number, line, type, tag)
        self._history: list[tuple[int, int, str, dict[str, Any]]] = []
        self._teams = self._staff()
        self._team_ids = list(self._teams)
        # pickers
        self._notifier = _Picker(T.NOTIFIER_SHARES)
        self._severity = _Picker(T.SEVERITY_SHARES)
        self._n_notifications = _Picker(T.NOTIFICATIONS_PER_CHILD_DIST)
        self._reason_count = _Picker(REASON_COUNT)
        self._reasons = _Picker(REASON_WEIGHTS)
        self._police_reasons = _Picker(POLICE_REASON_WEIGHTS)
        self._unborn_reasons = _Picker(UNBORN_REASON_WEIGHTS)
        self._acute_decision = _Picker(_ACUTE_DECISIONS)
        self._other_decision = _Picker(_OTHER_DECISIONS)
        self._after_inv_non_placement = _Picker(MEASURE_AFTER_INVESTIGATION_NON_PLACEMENT)
        self._after_inv_placement = _Picker(MEASURE_AFTER_INVESTIGATION_PLACEMENT)
        self._early = _Picker(EARLY_MEASURES)
        self._acute_placement = _Picker(ACUTE_PLACEMENTS)
        self._step_down = _Picker(STEP_DOWN_AFTER_PLACEMENT)
        self._next_non_placement = _Picker(NEXT_NON_PLACEMENT)
        self._escalation = _Picker(ESCALATION_PLACEMENTS)

    # --- staff ------------------------------------------------------------------------------

    def _staff(self) -> dict[str, Team]:
        expected_open = self.arrivals_per_year * OPEN_CASES_PER_YEARLY_ARRIVAL
        expected_workers = max(1, math.ceil(expected_open / T.CASELOAD_TARGET))
        n_teams = max(1, round(expected_workers / T.CASEWORKERS_PER_TEAM))
        if expected_workers >= 6:
            n_teams = max(2, n_teams)  # a small (or scaled-down) department still has two teams
        names = [
            TEAM_NAMES[i % len(TEAM_NAMES)] + ("" if i < len(TEAM_NAMES) else str(i // len(TEAM_NAMES) + 1))
            for i in range(n_teams)
        ]
        teams = {n: Team(n) for n in names}
        # start with fewer than needed: teams hire as their caseloads reach CASELOAD_HIRE_AT
        for i in range(max(n_teams, int(expected_workers * 0.7))):
            self._hire(teams[names[i % n_teams]])
        return teams

    def _hire(self, team: Team) -> str:
        self._ids["sb"] += 1
        worker = f"sb-{self._ids['sb']:03d}"
        team.workers.append(worker)
        team.load[worker] = 0
        return worker

    def _assign(self, team: Team, avoid: str | None = None) -> str:
        """Power of two choices within the team; hire when even the lighter one is full."""
        workers = team.workers
        candidates = [w for w in workers if w != avoid] if avoid is not None else workers
        if not candidates:
            worker = self._hire(team)
        else:
            a = candidates[int(self.rng.random() * len(candidates))]
            b = candidates[int(self.rng.random() * len(candidates))]
            worker = a if team.load[a] <= team.load[b] else b
            if team.load[worker] >= T.CASELOAD_HIRE_AT:
                worker = self._hire(team)
        team.load[worker] += 1
        return worker

    def _release(self, case: Case) -> None:
        if case.worker is not None:
            self._teams[case.team].load[case.worker] -= 1

    # --- ids, records, scheduling -------------------------------------------------------------

    def _next_id(self, kind: str) -> str:
        self._ids[kind] += 1
        return f"{kind}-{self._ids[kind]:06d}"

    def emit(
        self,
        rtype: str,
        data: dict[str, Any],
        child: Child,
        key: tuple[str, str] | None = None,
        at: int | None = None,
        tag: Any = None,
    ) -> None:
        """A record at `self.now` (or `at`, only in the warm-up: a process running ahead). Before the
        period it goes to the child's compact history, where `key` keeps only the first and the
        last record of its kind (follow-ups of one measure, ...)."""
        self._n_record += 1
        n = self._n_record
        if at is not None:
            assert self._warm and at < self.t_start
        else:
            at = self.now
        if not self._warm:
            self._out.append((self.now, n, self._line(self.now, n, rtype, data), rtype, tag))
            by_type = self.result.by_type
            by_type[rtype] = by_type.get(rtype, 0) + 1
            return
        hist = child.hist
        assert hist is not None
        entry = (at, n, rtype, data)  # serialized at the cutover, if the child is still active
        if key is None:
            hist[n] = entry
        elif ("first", key) not in hist:
            hist[("first", key)] = entry
        else:
            hist[("last", key)] = entry

    def _line(self, t: int, n: int, rtype: str, data: dict[str, Any]) -> str:
        return _ENCODE(
            {
                "record_id": f"syn{self.cfg.seed}-{self.code}-{n:08d}",
                "type": rtype,
                "municipality": self.code,
                "occurred_at": iso(t),
                "data": data,
            }
        )

    def spawn(self, at: int, proc: Proc, child: Child | None, *, counted: bool = True) -> None:
        """Run `proc` from `at` on. A `counted` process keeps its child active (its history is
        written at the cutover); an uncounted one only acts while something else does."""
        heapq.heappush(self._heap, (max(at, self.now), next(self._seq), proc, child if counted else None))
        if child is not None and counted:
            child.procs += 1

    def once(
        self, at: int, rtype: str, data: dict[str, Any], child: Child, key: tuple[str, str] | None = None
    ) -> None:
        """Emit one record at `at` (if the period has not ended by then)."""

        def proc() -> Proc:
            self.emit(rtype, data, child, key)
            return
            yield  # a generator

        self.spawn(at, proc(), child)

    def _done(self, child: Child | None) -> None:
        if child is None:
            return
        child.procs -= 1
        if child.procs == 0 and self._warm:
            self._live.pop(child.serial, None)

    def _cutover(self) -> Proc:
        """At the start of the period: write the history of every child still active."""
        kept: list[tuple[int, int, str, dict[str, Any]]] = []
        for child in self._live.values():
            if child.hist:
                kept.extend(child.hist.values())
            child.hist = None
        self._live.clear()
        self._warm = False
        kept.sort(key=lambda e: (e[0], e[1]))
        by_type = self.result.by_type
        for _, _, rtype, _ in kept:
            by_type[rtype] = by_type.get(rtype, 0) + 1
        self._history = kept  # serialized as written (a national run holds 98 of these at once)
        return
        yield

    def entries(self) -> Iterator[Entry]:
        """The municipality's lines as (instant for ordering, record number, line, type), in file order."""
        self.spawn(self.t_start, self._cutover(), None)  # first of everything at t_start
        self.spawn(self.t_warm, self._arrivals(), None)
        heap, t_end, seq = self._heap, self.t_end, self._seq
        heappop, heappush = heapq.heappop, heapq.heappush
        delayed: list[tuple[int, int, str, str, Any]] = []  # held-back lines by release time
        held: dict[Any, tuple[int, int, str, str]] = {}  # held-back lines a CaseOpened may need
        forced: set[int] = set()  # held-back lines already written (skip them in `delayed`)
        share = self.cfg.late_share
        late_random = self.late_rng.random
        while heap:
            t, _, proc, child = heappop(heap)
            if t >= t_end:
                break  # the period is over: what is still scheduled never happens
            self.now = t
            try:
                nxt = next(proc)
            except StopIteration:
                self._done(child)
            else:
                if nxt >= t_end:
                    proc.close()
                    self._done(child)
                else:
                    heappush(heap, (nxt if nxt > t else t, next(seq), proc, child))
            if not self._out:
                continue
            out, self._out = self._out, []
            if self._history:
                # the history of the children active at the start, as it is (all before the period)
                line = self._line
                for t_h, n_h, rtype_h, data_h in self._history:
                    yield t_h, n_h, line(t_h, n_h, rtype_h, data_h), rtype_h
                self._history = []
            for t_o, n_o, line_o, rtype_o, tag in out:
                # a share of lines is held back (hours to weeks) and released once the stream passes that time
                while delayed and delayed[0][0] <= t_o:
                    item = heappop(delayed)
                    if item[1] in forced:
                        forced.discard(item[1])  # already written, ahead of a CaseOpened
                        continue
                    if item[4] is not None:
                        held.pop(item[4], None)
                    yield item[0], item[1], item[2], item[3]
                if rtype_o == "CaseOpened":
                    # never let a CaseOpened wait in intake's deferred lines (a child's next case could
                    # overtake it): write its underretning and the child's last CaseClosed first
                    for key in tag:
                        dep = held.pop(key, None)
                        if dep is not None:
                            forced.add(dep[1])
                            yield t_o, dep[1], dep[2], dep[3]
                if share and late_random() < share:
                    cap = 2 * DAY if rtype_o == "CaseOpened" else 45 * DAY
                    release = t_o + HOUR + int(late_random() * cap)
                    key = tag if rtype_o in ("UnderretningReceived", "CaseClosed") else None
                    heappush(delayed, (release, n_o, line_o, rtype_o, key))
                    if key is not None:
                        held[key] = (release, n_o, line_o, rtype_o)
                else:
                    yield t_o, n_o, line_o, rtype_o
        for t_h, n_h, rtype_h, data_h in self._history:  # a period without any line of its own
            yield t_h, n_h, self._line(t_h, n_h, rtype_h, data_h), rtype_h
        while delayed:
            item = heappop(delayed)
            if item[1] not in forced:
                yield item[0], item[1], item[2], item[3]
        for _, _, proc, _ in heap:  # what the period's end cut short (generators hold `self`: a cycle)
            proc.close()
        heap.clear()
        self._live.clear()
        self.result.lines = sum(self.result.by_type.values())
        for team in self._teams.values():
            self.result.teams[team.team_id] = list(team.workers)
            for w, n in team.load.items():
                self.result.caseload_at_end[w] = n

    # --- random helpers -----------------------------------------------------------------------

    def _u(self, lo: float, hi: float) -> int:
        return int(lo + self.rng.random() * (hi - lo))

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _family_code(self, code: str) -> str:
        year = local_date(self.now).year
        if code == "family":
            return "7" if year < 2024 else "13"
        if code == "12" and year < 2024:
            return "7"
        return code

    def _cpr(self, birth: date, boy: bool) -> str:
        """A made-up CPR number with a real date and the right century digit; unique per birth date
        within the municipality (no modulus-11 check, as the spec says)."""
        i = self._cpr_counter.get(birth, 0)
        self._cpr_counter[birth] = i + 1
        if 2000 <= birth.year <= 2036:
            leads: Sequence[int] = (4, 5, 6, 7, 8, 9)
        elif 1937 <= birth.year <= 1999:
            leads = (0, 1, 2, 3)
        else:
            raise ValueError(f"no CPR century rule used here for {birth.year}")
        lead = leads[i % len(leads)]
        j = i // len(leads)
        if j >= 500:
            raise ValueError("more than 3,000 synthetic people born on one day in one municipality")
        rest = ((j * 337) % 500) * 2 + (1 if boy else 0)
        return f"{birth:%d%m%y}{lead}{rest:03d}"

    # --- arrivals and children ------------------------------------------------------------------

    def _arrivals(self) -> Proc:
        rate = self.arrivals_per_year / (365.25 * DAY)
        while True:
            t = self.now + 1 + int(self.rng.expovariate(rate))
            yield t - t % MINUTE + MINUTE
            self._new_child()

    def _first_age(self, notifier: str) -> float:
        """Age of a child first notified by `notifier` (-1 = unborn)."""
        r = self.rng.random
        if notifier == "2":
            return 6 + 12 * r() ** 0.8
        if notifier == "3":
            return 13 * r() ** 1.3
        if notifier == "4":
            return -1.0 if r() < 0.10 else 18 * r()
        if notifier == "5":
            if r() < 0.20:
                return -1.0
            return 3 * r() if r() < 0.75 else 18 * r()
        if notifier == "6":
            return 10 + 8 * r() if r() < 0.65 else 10 * r()
        if notifier == "12":
            return 10 + 8 * r()
        if notifier == "1" and r() < 0.03:
            return -1.0
        return 18 * r() ** 0.85

    def _new_child(self) -> None:
        notifier = self._notifier(self.rng)
        age = self._first_age(notifier)
        today = local_date(self.now)
        self._ids["child"] += 1
        team = self._team_ids[int(self.rng.random() * len(self._team_ids))]
        if age < 0:
            expected = today + timedelta(days=self._u(30, 180))
            mother_birth = today - timedelta(days=self._u(17 * 365.25, 42 * 365.25))
            ref: dict[str, Any] = {
                "unborn": True,
                "expected_birth": expected.isoformat(),
                "mother_cpr": self._cpr(mother_birth, boy=False),
            }
            child = Child(self._ids["child"], ref, team, None, start_of(expected))
        else:
            birth = today - timedelta(days=int(age * 365.25))
            child = Child(self._ids["child"], {"cpr": self._cpr(birth, self._chance(0.5))}, team, birth, 0)
        if self._warm:
            self._live[child.serial] = child
        n = self._n_notifications(self.rng)
        self.spawn(self.now, self._life(child, n, notifier), child)

    def _compatible(self, notifier: str, child: Child) -> bool:
        if child.birth is None:
            return notifier in ("4", "5", "1", "family", "8", "11", "99", "10")
        age = child.age(local_date(self.now))
        if notifier == "2":
            return age >= 6
        if notifier == "3":
            return age < 13
        if notifier == "5":
            return age < 3 or self._chance(0.3)
        if notifier == "12":
            return age >= 10
        return True

    def _life(self, child: Child, n: int, first: str) -> Proc:
        """The child's spell of underretninger: the first now, the rest after exponential gaps."""
        gap_rate = 1.0 / (T.REPEAT_GAP_DAYS_MEAN * DAY)
        for i in range(n):
            if i == 0:
                notifier = first
            else:
                t = self.now + 1 + int(self.rng.expovariate(gap_rate))
                yield t - t % MINUTE + MINUTE
                if not self._chance(REPEAT_SAME_NOTIFIER):
                    notifier = self._fresh_notifier(child, notifier)
            if notifier not in ANYTIME_NOTIFIERS:
                t = at_work(self.now, self.rng)
                if t != self.now:
                    yield t
            if child.unborn_until and self.now >= child.unborn_until - 14 * DAY:
                return  # (about to be) born: later notifications concern the born child, another identity
            if child.birth is not None and child.age(local_date(self.now)) >= 18:
                return
            self._receive(child, self._family_code(notifier))

    def _fresh_notifier(self, child: Child, previous: str) -> str:
        """A newly drawn notifier for a repeat underretning. A draw that cannot concern this child
        (a school for a toddler) is drawn again and owed: a later child who can take it gets it
        instead of a draw, so the overall mix stays at NOTIFIER_SHARES."""
        owed = self._owed
        for code, count in owed.items():
            if count and self._compatible(code, child):
                owed[code] = count - 1
                return code
        for _ in range(6):
            code = self._notifier(self.rng)
            if self._compatible(code, child):
                return code
            owed[code] = owed.get(code, 0) + 1
        return previous

    def _open_case(self, child: Child) -> Case | None:
        case = child.case
        return case if case is not None and not case.closed else None

    def _pick_reasons(self, child: Child, notifier: str) -> list[str]:
        picker = (
            self._unborn_reasons
            if child.birth is None
            else self._police_reasons
            if notifier == "6"
            else self._reasons
        )
        k = self._reason_count(self.rng)
        reasons: list[str] = []
        for _ in range(k * 2):
            r = picker(self.rng)
            if r not in reasons:
                reasons.append(r)
                if len(reasons) == k:
                    break
        return reasons

    def _receive(self, child: Child, notifier: str) -> None:
        """An underretning arrives now; schedule its receipt, assessment and child conversation."""
        u_id = self._next_id("UR")
        severity = self._severity(self.rng)
        reasons = self._pick_reasons(child, notifier)
        case = self._open_case(child)
        data: dict[str, Any] = {
            "underretning_id": u_id,
            "child": child.ref,
            "notifier": notifier,
            "reasons": reasons,
            "severity": severity,
            "team_id": child.team,
        }
        professional = notifier not in ("7", "8", "11", "12", "13", "99")
        if notifier == "11" and self._chance(0.10):
            data["professional"] = professional = True
        if case is not None:
            data["case_id"] = case.case_id
        self.emit("UnderretningReceived", data, child, tag=("u", u_id))
        now = self.now
        if professional:
            if self._chance(T.RECEIPT_ON_TIME):
                t = at_work(now + self._u(HOUR, 3 * DAY), self.rng)
            else:
                t = at_work(now + self._u(15 * DAY, 40 * DAY), self.rng)
            self.once(t, "ReceiptSent", {"underretning_id": u_id}, child)
        acute = severity == "akut"
        if self._chance(_ACUTE_ASSESSED_IN_TIME if acute else _OTHER_ASSESSED_IN_TIME):
            t = now + (self._u(20 * MINUTE, 6 * HOUR) if acute else self._u(HOUR, 23 * HOUR + 30 * MINUTE))
        else:
            t = at_work(now + self._u(25 * HOUR, 10 * DAY), self.rng)
        self.spawn(t, self._assess(child, u_id, severity), child)
        if child.birth is not None and not ABUSE.isdisjoint(reasons):
            received = local_date(now)
            if self._chance(T.CONVERSATION_ON_TIME):
                day = working_day_on_or_after(received + timedelta(days=self._u(1, 6)))
            else:
                day = working_day_on_or_after(received + timedelta(days=self._u(9, 26)))
            talk: dict[str, Any] = {"underretning_id": u_id}
            self.spawn(on_day_at_work(day, self.rng), self._conversation(child, talk), child)

    def _conversation(self, child: Child, data: dict[str, Any]) -> Proc:
        case = self._open_case(child)
        if case is not None and self._chance(0.5):
            data = {"case_id": case.case_id, **data}
        self.emit("ChildConversationHeld", data, child)
        return
        yield

    def _assess(self, child: Child, u_id: str, severity: str) -> Proc:
        if self._open_case(child) is not None or child.pending:
            decision = "eksisterende_sag"
        elif severity == "akut":
            decision = self._acute_decision(self.rng)
        else:
            decision = self._other_decision(self.rng)
        acute = severity == "akut" or decision == "akut_indsats"
        self.emit(
            "UnderretningAssessed",
            {"underretning_id": u_id, "acute": acute, "decision": decision},
            child,
        )
        if decision in OPENS_CASE:
            child.pending = True
            if decision == "akut_indsats":
                t = self.now + self._u(5 * MINUTE, HOUR)
            else:
                t = at_work(self.now + self._u(30 * MINUTE, 2 * DAY), self.rng)
            self.spawn(t, self._case(child, u_id, decision), child)
        return
        yield

    # --- the case ----------------------------------------------------------------------------------

    def _case(self, child: Child, u_id: str, decision: str) -> Proc:
        case = Case(self._next_id("S"), child.team)
        child.case = case
        child.pending = False
        self.emit(
            "CaseOpened",
            {"case_id": case.case_id, "child": child.ref, "team_id": case.team, "underretning_id": u_id},
            child,
            tag=(("u", u_id), ("c", child.serial)),  # what must be written before it (see entries)
        )
        acute = decision == "akut_indsats"
        yield (
            (self.now + self._u(5 * MINUTE, 2 * HOUR))
            if acute
            else at_work(self.now + self._u(HOUR, 2 * DAY), self.rng)
        )
        case.worker = self._assign(self._teams[case.team])
        self.emit(
            "CaseworkerAssigned",
            {"case_id": case.case_id, "caseworker_id": case.worker},
            child,
            ("cw", case.case_id),
        )
        change_at = at_work(
            self.now + int(self.rng.expovariate(1 / (T.CASEWORKER_CHANGE_MEAN_DAYS * DAY))), self.rng
        )
        self.spawn(change_at, self._changes(child, case), child, counted=False)
        if acute:
            self._parallel_investigation(child, case)
            placement = self._chance(T.ACUTE_IS_PLACEMENT)
            first = self._acute_placement(self.rng) if placement else "stoette_i_hjemmet"
            yield from self._measures(child, case, first, acute=True)
        elif decision == "afdaekning":
            yield at_work(self.now + self._u(HOUR, 3 * DAY), self.rng)
            kind = "screening" if self._chance(0.2) else "afdaekning"
            self.emit("InvestigationStarted", {"case_id": case.case_id, "kind": kind}, child)
            yield at_work(self.now + self._u(10 * DAY, 45 * DAY), self.rng)
            r = self.rng.random()
            if r < T.AFDAEKNING_TO_INVESTIGATION:
                outcome = "boernefaglig_undersoegelse"
            elif r < T.AFDAEKNING_TO_INVESTIGATION + T.AFDAEKNING_TO_EARLY_MEASURE:
                outcome = "tidlig_indsats"
            else:
                outcome = "ingen_indsats"
            self.emit(
                "InvestigationCompleted", {"case_id": case.case_id, "kind": kind, "outcome": outcome}, child
            )
            if outcome == "boernefaglig_undersoegelse":
                yield from self._investigation(child, case)
            elif outcome == "tidlig_indsats":
                yield from self._measures(child, case, self._early(self.rng))
        else:
            yield from self._investigation(child, case)
        close_at = at_work(max(self.now + self._u(7 * DAY, 45 * DAY), case.busy_until + DAY), self.rng)
        yield close_at
        self.emit("CaseClosed", {"case_id": case.case_id}, child, tag=("c", child.serial))
        case.closed = True
        self._release(case)

    def _investigation_times(self) -> tuple[int, int]:
        """Start and completion of a boernefaglig undersoegelse starting soon after now."""
        start = at_work(self.now + self._u(HOUR, 7 * DAY), self.rng)
        start_day = local_date(start)
        due = add_months(start_day, 4)
        if self._chance(T.INVESTIGATION_ON_TIME):
            day = start_day + timedelta(days=self._u(20, (due - start_day).days - 2))
            day = working_day_on_or_before(day)
        else:
            day = working_day_on_or_after(due + timedelta(days=self._u(5, 100)))
        return start, max(on_day_at_work(day, self.rng), start + HOUR)

    def _investigation(self, child: Child, case: Case) -> Proc:
        """A boernefaglig undersoegelse, then (usually) measures."""
        start, done = self._investigation_times()
        yield start
        kind = "boernefaglig_undersoegelse"
        self.emit("InvestigationStarted", {"case_id": case.case_id, "kind": kind}, child)
        yield done
        measure = self._chance(T.INVESTIGATION_TO_MEASURE)
        outcome = "indsats" if measure else "ingen_indsats"
        self.emit(
            "InvestigationCompleted", {"case_id": case.case_id, "kind": kind, "outcome": outcome}, child
        )
        if measure:
            if self._chance(T.MEASURE_IS_PLACEMENT):
                first = self._after_inv_placement(self.rng)
            else:
                first = self._after_inv_non_placement(self.rng)
            yield from self._measures(child, case, first)

    def _parallel_investigation(self, child: Child, case: Case) -> None:
        start, done = self._investigation_times()
        kind = "boernefaglig_undersoegelse"
        self.once(start, "InvestigationStarted", {"case_id": case.case_id, "kind": kind}, child)
        self.once(
            done,
            "InvestigationCompleted",
            {"case_id": case.case_id, "kind": kind, "outcome": "indsats"},
            child,
        )
        case.busy_until = done

    def _changes(self, child: Child, case: Case) -> Proc:
        """Caseworker changes (turnover, sick leave, re-organisation) until the case closes."""
        mean = T.CASEWORKER_CHANGE_MEAN_DAYS * DAY
        while not case.closed:
            team = self._teams[case.team]
            old = case.worker
            if old is not None:
                team.load[old] -= 1
            case.worker = self._assign(team, avoid=old)
            self.emit(
                "CaseworkerAssigned",
                {"case_id": case.case_id, "caseworker_id": case.worker},
                child,
                ("cw", case.case_id),
            )
            yield at_work(self.now + int(self.rng.expovariate(1 / mean)), self.rng)

    # --- measures ----------------------------------------------------------------------------------

    def _duration_days(self, mtype: str, acute: bool, child: Child) -> int:
        u = self._u
        if acute:
            days = u(30, 180) if mtype in PLACEMENT_TYPES else u(60, 240)
        elif mtype == "raadgivning":
            days = u(60, 180)
        elif mtype == "stoette_i_hjemmet":
            days = u(90, 365)
        elif mtype == "familiebehandling":
            days = u(120, 420)
        elif mtype in FOSTER_TYPES:
            days = u(120, 365) if self._chance(0.3) else u(365, 6 * 365)
        elif mtype == "eget_vaerelse":
            days = u(180, 730)
        else:
            days = u(90, 1095)
        if child.birth is not None:  # measures end around the 18th birthday (some aftercare)
            left = (add_years(child.birth, 18) - local_date(self.now)).days + u(0, 365)
            days = min(days, max(60, left))
        return days

    def _next_measure(self, mtype: str, acute: bool) -> str | None:
        r = self.rng.random()
        if mtype in PLACEMENT_TYPES:
            if acute:
                if r < 0.3:
                    return "plejefamilie"
                return self._step_down(self.rng) if r < 0.7 else None
            return self._step_down(self.rng) if r < 0.45 else None
        if r < 0.20:
            return self._next_non_placement(self.rng)
        if r < 0.23:
            return self._escalation(self.rng)
        return None

    def _measures(self, child: Child, case: Case, first: str, acute: bool = False) -> Proc:
        """A chain of up to four measures, one after the other (staircase moves down, sometimes up)."""
        mtype: str | None = first
        for k in range(4):
            if mtype is None:
                return
            if child.birth is None and mtype in ("eget_vaerelse", "opholdssted", "doegninstitution"):
                mtype = "plejefamilie"
            placement = mtype in PLACEMENT_TYPES
            first_acute = acute and k == 0
            plan_after: int | None = None
            if not first_acute:
                if not placement and self._chance(0.20):
                    self.emit("WaitlistEntered", {"case_id": case.case_id, "offer_type": mtype}, child)
                    yield at_work(self.now + self._u(7 * DAY, 100 * DAY), self.rng)
                    self.emit("WaitlistLeft", {"case_id": case.case_id, "offer_type": mtype}, child)
                if placement and self._chance(T.CHILD_PLAN_ON_TIME):
                    yield at_work(self.now + self._u(HOUR, 5 * DAY), self.rng)
                    self.emit("ChildPlanMade", {"case_id": case.case_id}, child)
                elif placement:
                    plan_after = self._u(2 * DAY, 60 * DAY)
                yield at_work(self.now + self._u(HOUR, 10 * DAY), self.rng)
            elif placement:
                plan_after = self._u(DAY, 30 * DAY)
            m_id = self._next_id("I")
            data: dict[str, Any] = {"case_id": case.case_id, "measure_id": m_id, "measure_type": mtype}
            if self._chance(0.7):
                providers = PROVIDERS[mtype]
                data["provider"] = providers[int(self.rng.random() * len(providers))]
            if self._chance(0.95):
                lo, hi = MONTHLY_COST_DKK[mtype]
                data["monthly_cost_dkk"] = self._u(lo, hi) // 500 * 500
            self.emit("MeasureStarted", data, child)
            start = self.now
            end = at_work(start + self._duration_days(mtype, first_acute, child) * DAY, self.rng)
            self.spawn(start, self._follow_ups(child, case.case_id, m_id, mtype, start, end), child)
            if placement:
                self.spawn(start, self._visits(child, case.case_id, m_id, start, end), child)
            if plan_after is not None and start + plan_after < end:
                self.once(
                    at_work(start + plan_after, self.rng), "ChildPlanMade", {"case_id": case.case_id}, child
                )
            yield end
            nxt = self._next_measure(mtype, first_acute)
            if placement:
                reason = "hjemgivelse" if nxt is None or nxt not in PLACEMENT_TYPES else "ny_anbringelse"
            else:
                reason = "ny_indsats" if nxt is not None else "maal_naaet"
            self.emit("MeasureEnded", {"case_id": case.case_id, "measure_id": m_id, "reason": reason}, child)
            mtype = nxt

    def _follow_ups(self, child: Child, case_id: str, m_id: str, mtype: str, start: int, end: int) -> Proc:
        """Follow-ups on Herning's cadence (spec §4), most on time, some late."""
        placement = mtype in PLACEMENT_TYPES
        foster = mtype in FOSTER_TYPES
        start_day = local_date(start)
        one_year = add_years(start_day, 1)
        due = start_day + timedelta(days=14 if placement else 28)
        last: date | None = None
        exempt = False
        while True:
            if self._chance(T.FOLLOW_UP_ON_TIME):
                day = due - timedelta(days=self._u(0, 10))
                floor = max(start_day + timedelta(days=1), last + timedelta(days=7) if last else start_day)
                day = working_day_on_or_before(max(day, floor))
                if day < floor:
                    day = working_day_on_or_after(floor)
            else:
                day = working_day_on_or_after(due + timedelta(days=self._u(1, 31)))
            t = max(on_day_at_work(day, self.rng), start + HOUR)
            if t >= end:
                return
            ahead = self._warm and t < self.t_start
            if not ahead:
                yield t
            data: dict[str, Any] = {"case_id": case_id, "measure_id": m_id}
            first_year = day < one_year
            if exempt:
                nxt = add_months(day, 6)
            elif placement and (first_year or not foster):
                nxt = day + timedelta(days=42)
            else:
                nxt = add_months(day, 3)
            if foster and not first_year and not exempt and self._chance(0.25):
                data["stable_placement_exemption"] = True
                exempt = True
                nxt = add_months(day, 6)
            if self._chance(0.15):
                span = (nxt - day).days
                own = day + timedelta(days=self._u(14, max(15, span - 6)))
                if own < nxt:
                    data["next_due"] = own.isoformat()
                    nxt = own
            self.emit("FollowUpHeld", data, child, ("fu", m_id), at=t if ahead else None)
            last, due = day, nxt

    def _visits(self, child: Child, case_id: str, m_id: str, start: int, end: int) -> Proc:
        """Supervision visits at a placement: two a year, most on time."""
        prev = local_date(start)
        while True:
            due = add_months(prev, 6)
            if self._chance(T.SUPERVISION_ON_TIME):
                day = working_day_on_or_before(prev + timedelta(days=self._u(100, (due - prev).days - 2)))
            else:
                day = working_day_on_or_after(due + timedelta(days=self._u(3, 60)))
            t = on_day_at_work(day, self.rng)
            if t >= end:
                return
            ahead = self._warm and t < self.t_start  # in the warm-up, run ahead (no scheduling)
            if not ahead:
                yield t
            data = {"case_id": case_id, "measure_id": m_id}
            self.emit("SupervisionVisitHeld", data, child, ("sv", m_id), at=t if ahead else None)
            prev = day


# --- streams and files ---------------------------------------------------------------------------


def municipality_lines(code: str, cfg: Config) -> tuple[Iterator[str], MunicipalityResult]:
    """One municipality's NDJSON lines (without newlines), lazily, and its result (filled as it runs)."""
    stream = MunicipalityStream(code, cfg)
    return (e[2] for e in stream.entries()), stream.result


def merged_lines(cfg: Config) -> tuple[Iterator[str], list[MunicipalityResult]]:
    """All municipalities' lines in one stream, merged by time (ties: municipality order)."""
    streams = [MunicipalityStream(code, cfg) for code in cfg.municipalities]

    def keyed(i: int, s: MunicipalityStream) -> Iterator[tuple[int, int, int, str]]:
        for t, n, line, _ in s.entries():
            yield t, i, n, line

    merged = heapq.merge(*(keyed(i, s) for i, s in enumerate(streams)))
    return (item[3] for item in merged), [s.result for s in streams]


def write(
    cfg: Config,
    out: str,
    *,
    opener: Callable[[str], Any] | None = None,
    on_line: Callable[[int], None] | None = None,
) -> list[MunicipalityResult]:
    """Write the stream to `out`; a `{municipality}` in `out` writes one file per municipality."""
    with _without_gc():
        return _write(cfg, out, opener, on_line)


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """The simulation makes no reference cycles worth collecting, but holds many live objects that
    the cyclic collector would walk again and again (a national run: 2x slower); pause it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _write(
    cfg: Config, out: str, opener: Callable[[str], Any] | None, on_line: Callable[[int], None] | None
) -> list[MunicipalityResult]:
    open_ = opener or (lambda path: open(path, "w", encoding="utf-8", newline="\n"))  # noqa: SIM115
    results: list[MunicipalityResult] = []
    count = 0
    if "{municipality}" in out:
        for code in cfg.municipalities:
            lines, result = municipality_lines(code, cfg)
            with open_(out.format(municipality=code)) as fh:
                for line in lines:
                    fh.write(line + "\n")
                    count += 1
                    if on_line is not None and count % 10_000 == 0:
                        on_line(count)
            results.append(result)
            gc.collect()  # the collector is paused; what one municipality left goes now
        return results
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp, open_(out) as fh:
        # one municipality at a time into a spool file (memory: one simulation), then a merge by time
        spools: list[str] = []
        for i, code in enumerate(cfg.municipalities):
            stream = MunicipalityStream(code, cfg)
            path = os.path.join(tmp, f"{i:03d}.tsv")
            with open(path, "w", encoding="utf-8", newline="\n") as spool:
                for t, n, line, _ in stream.entries():
                    spool.write(f"{t}\t{n}\t{line}\n")
            spools.append(path)
            results.append(stream.result)
            del stream
            gc.collect()  # the collector is paused; what one municipality left goes now
        readers = [open(path, encoding="utf-8", newline="\n") for path in spools]  # noqa: SIM115
        try:
            for _, _, _, line in heapq.merge(*(_spooled(i, r) for i, r in enumerate(readers))):
                fh.write(line)
                count += 1
                if on_line is not None and count % 10_000 == 0:
                    on_line(count)
        finally:
            for r in readers:
                r.close()
    return results


def _spooled(i: int, reader: IO[str]) -> Iterator[tuple[int, int, int, str]]:
    """(instant, municipality index, record number, line with its newline) from a spool file; JSON
    escapes tabs inside strings, so the first two tabs end the key."""
    for raw in reader:
        t, n, line = raw.split("\t", 2)
        yield int(t), i, int(n), line
