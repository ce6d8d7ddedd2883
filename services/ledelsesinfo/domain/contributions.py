"""A child's contributions to the period buckets of every scope (pure).

`child_contributions(events)` turns the SET of one child's events into a mapping

    (mode, kind, period, team_id, caseworker_id, bucket, key) -> integer

- mode `p` (point): the value belongs to that one period (received in the week, completed in the
  month, ...). A period's figure is the sum of the point values of that period.
- mode `s` (state change): the value is a change of a state at the start of that period; the state
  at a period's end is the sum of all changes up to and including that period. A state that holds
  on the half-open interval of instants [a, b) gives +v in the period of `a` and -v in the period of
  `b`; so an open case stays open in every later period without any further row, and a state that
  begins and ends inside one period leaves nothing in it (it is not there at the period's end).
- kind `W` (ISO week) or `M` (month); period: its number (periods.period_index).
- scope: ("", "") the municipality, (team, "") a team, (team, caseworker) a caseworker (weekly only;
  a caseworker-only report sums the caseworker's rows over teams).

All values are integers, so adding and subtracting contributions in any order gives exactly the same
buckets (durations in seconds or days, costs in øre x days, waits as sums of date ordinals).

Attribution: an underretning counts for its own `team_id`; everything else for its case's team. A
caseworker is the one holding the case at the instant in question (at the event for event figures,
at the period's end for state figures).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from services.ledelsesinfo.domain.deadlines import DEFAULT_RULES, Deadline, Rules, child_deadlines
from services.ledelsesinfo.domain.periods import (
    MONTH,
    WEEK,
    PeriodKind,
    date_index,
    end_of_day,
    local_date,
    period_index,
    period_last_date,
    start_of_day,
)
from services.ledelsesinfo.domain.timeline import (
    Case,
    Timeline,
    build_timeline,
    caseworker_at,
    caseworker_segments,
)
from shared.events.envelope import EventEnvelope

Mode = Literal["p", "s"]
Bucket = tuple[str, str, int, str, str, str, str]  # mode, kind, period, team, caseworker, bucket, key
Contributions = dict[Bucket, int]
Stay = tuple[datetime, datetime | None, str | None]  # [start, end) and the team

POINT: Mode = "p"
STATE: Mode = "s"
W: tuple[PeriodKind, ...] = (WEEK,)
M: tuple[PeriodKind, ...] = (MONTH,)
WM: tuple[PeriodKind, ...] = (WEEK, MONTH)

# bucket names that are not figure ids (the rest are the figure ids themselves)
RECEIVED_BY_NOTIFIER = "received_by_notifier"  # M point, key notifier
RECEIVED_BY_SEVERITY = "received_by_severity"  # M point, key severity
REACTION_SECONDS = "reaction_seconds"  # W point, key zero-padded seconds, value how many
CASELOAD = "caseload"  # W state, key caseworker: open cases they hold
OVERDUE_BY_CASEWORKER = "overdue_by_caseworker"  # W state, key caseworker
INVESTIGATION_DAYS = "investigation_days"  # W point, keys "sum" (days) and "n"
CASEWORKER_CHANGES = "caseworker_changes"  # M point
HELAAR_DAYS = "helaar_days"  # M point, key type: days running in a month the measure starts or ends in
HELAAR_FULL = "helaar_full"  # M state, key type: measures running the whole month
COST_DAYS = "cost_oere_days"  # M point, key type: monthly cost in øre x days running
COST_FULL = "cost_oere_full"  # M state, key type: monthly cost in øre of measures running all month
WAITLIST_ENTRY_SUM = "waitlist_entry_ordinal_sum"  # M state, key offer: sum of entry date ordinals
NUM, DEN = "num", "den"
PENDING_PREFIX = "pending:"
BFU = "boernefaglig_undersoegelse"


def pending_key(due: datetime) -> str:
    """Key of an item a share still waits for: it joins the denominator once `due` has passed."""
    return f"{PENDING_PREFIX}{int(due.timestamp()):012d}"


def pending_due(key: str) -> int | None:
    """The due instant (epoch seconds) of a pending key, else None."""
    return int(key[len(PENDING_PREFIX):]) if key.startswith(PENDING_PREFIX) else None


def seconds_key(seconds: int) -> str:
    return f"{seconds:012d}"


class _Acc:
    def __init__(self) -> None:
        self.data: defaultdict[Bucket, int] = defaultdict(int)

    @staticmethod
    def scopes(kind: PeriodKind, team: str | None, cw: str | None) -> list[tuple[str, str]]:
        out = [("", "")]
        if team:
            out.append((team, ""))
        if cw and kind == WEEK:
            out.append((team or "", cw))
        return out

    def add(self, mode: Mode, kind: PeriodKind, index: int, team: str | None, cw: str | None,
            bucket: str, key: str, value: int) -> None:
        for t, c in self.scopes(kind, team, cw):
            self.data[(mode, kind, index, t, c, bucket, key)] += value

    def point(self, kinds: Sequence[PeriodKind], at: datetime, team: str | None, cw: str | None,
              bucket: str, key: str, value: int = 1) -> None:
        for kind in kinds:
            self.add(POINT, kind, period_index(kind, at), team, cw, bucket, key, value)

    def change(self, kinds: Sequence[PeriodKind], at: datetime, team: str | None, cw: str | None,
               bucket: str, key: str, value: int) -> None:
        for kind in kinds:
            self.add(STATE, kind, period_index(kind, at), team, cw, bucket, key, value)

    def interval(self, kinds: Sequence[PeriodKind], start: datetime, end: datetime | None,
                 team: str | None, assignments: Sequence[tuple[datetime, str]], bucket: str,
                 key: str = "", value: int = 1, *, key_is_caseworker: bool = False) -> None:
        """A state holding on [start, end), split where the case changes caseworker."""
        if end is not None and end <= start:
            return
        for s, e, cw in caseworker_segments(assignments, start, end):
            if key_is_caseworker and cw is None:
                continue
            k = cw if key_is_caseworker and cw is not None else key
            self.change(kinds, s, team, cw, bucket, k, value)
            if e is not None:
                self.change(kinds, e, team, cw, bucket, k, -value)

    def distinct_points(self, kind: PeriodKind, bucket: str, items: Iterable[tuple[int, str | None]]) -> None:
        """+1 per distinct period (municipality) and per distinct (period, team): a child counts once."""
        items = list(items)
        for index in {i for i, _ in items}:
            self.data[(POINT, kind, index, "", "", bucket, "")] += 1
        for index, team in {(i, t) for i, t in items if t}:
            self.data[(POINT, kind, index, team, "", bucket, "")] += 1  # type: ignore[index]

    def distinct_intervals(self, kind: PeriodKind, items: Sequence[Stay],
                           emit: Callable[[datetime], list[tuple[str, str, int]]]) -> None:
        """A child's state on the union of its intervals, once per scope; `emit(start)` gives the
        (bucket, key, value) it holds on a merged interval starting at `start`."""
        groups: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
        for s, e, team in items:
            groups[("", "")].append((s, e))
            if team:
                groups[(team, "")].append((s, e))
        for (t, c), intervals in groups.items():
            for s, e in _union(intervals):
                for bucket, key, value in emit(s):
                    self.data[(STATE, kind, period_index(kind, s), t, c, bucket, key)] += value
                    if e is not None:
                        self.data[(STATE, kind, period_index(kind, e), t, c, bucket, key)] -= value

    def result(self) -> Contributions:
        return {k: v for k, v in self.data.items() if v != 0}


def _union(intervals: Sequence[tuple[datetime, datetime | None]]) -> list[tuple[datetime, datetime | None]]:
    out: list[tuple[datetime, datetime | None]] = []
    for s, e in sorted((iv for iv in intervals if iv[1] is None or iv[1] > iv[0]), key=lambda iv: iv[0]):
        if out and (out[-1][1] is None or s <= out[-1][1]):  # type: ignore[operator]
            last_s, last_e = out[-1]
            out[-1] = (last_s, None if last_e is None or e is None else max(last_e, e))
        else:
            out.append((s, e))
    return out


# --- the figures ------------------------------------------------------------------------------


def _share(acc: _Acc, kinds: Sequence[PeriodKind], d: Deadline, bucket: str, cw: str | None) -> None:
    """One item of an on-time share, counted in the period it started in."""
    if d.met is not None:
        acc.point(kinds, d.started, d.team_id, cw, bucket, DEN)
        if d.met_on_time:
            acc.point(kinds, d.started, d.team_id, cw, bucket, NUM)
    else:
        acc.point(kinds, d.started, d.team_id, cw, bucket, pending_key(d.due))


def _underretninger(acc: _Acc, tl: Timeline, deadlines: Sequence[Deadline]) -> None:
    for u in tl.underretninger:
        cws = tl.assignments_of_case(u.case_id)
        cw = caseworker_at(cws, u.received_at)
        acc.point(W, u.received_at, u.team_id, cw, "underretninger_received", "")
        acc.point(M, u.received_at, u.team_id, None, RECEIVED_BY_NOTIFIER, u.notifier)
        acc.point(M, u.received_at, u.team_id, None, RECEIVED_BY_SEVERITY, u.severity)
        acc.interval(W, u.received_at, u.assessed_at, u.team_id, cws, "underretninger_unassessed")
        if u.assessed_at is not None:
            seconds = max(0, int((u.assessed_at - u.received_at).total_seconds()))
            acc.point(W, u.received_at, u.team_id, cw, REACTION_SECONDS, seconds_key(seconds))
    for d in deadlines:
        cw = caseworker_at(d.caseworkers, d.started)
        if d.deadline == "acute_assessment":
            _share(acc, WM, d, "acute_assessment_on_time_share", cw)
        elif d.deadline == "receipt":
            _share(acc, W, d, "receipt_on_time_share", cw)


def _investigations(acc: _Acc, tl: Timeline, deadlines: Sequence[Deadline]) -> None:
    due_of = {(d.case_id, d.started): d.due for d in deadlines if d.deadline == "investigation"}
    for inv in tl.investigations:
        if inv.kind != BFU or inv.completed_at is None:
            continue
        team = tl.team_of_case(inv.case_id)
        cw = caseworker_at(tl.assignments_of_case(inv.case_id), inv.completed_at)
        acc.point(W, inv.completed_at, team, cw, "investigations_completed", "")
        if inv.started_at is None:
            continue  # a completion whose start is unknown: no duration, no on-time judgement
        days = (local_date(inv.completed_at) - local_date(inv.started_at)).days
        acc.point(W, inv.completed_at, team, cw, INVESTIGATION_DAYS, "sum", days)
        acc.point(W, inv.completed_at, team, cw, INVESTIGATION_DAYS, "n")
        acc.point(WM, inv.completed_at, team, cw, "investigation_on_time_share", DEN)
        if inv.completed_at <= due_of[(inv.case_id, inv.started_at)]:
            acc.point(WM, inv.completed_at, team, cw, "investigation_on_time_share", NUM)


def _phase_segments(tl: Timeline, case: Case) -> list[tuple[datetime, datetime | None, str]]:
    """The case's phase over [opened, closed): the first that fits of modtaget, undersoegelse,
    indsats, afventer."""
    unds = [(u.received_at, u.assessed_at) for u in tl.underretninger if u.case_id == case.id]
    invs = [(i.started_at, i.completed_at) for i in tl.investigations
            if i.case_id == case.id and i.started_at is not None]
    meas = [(m.started_at, m.ended_at) for m in tl.measures if m.case_id == case.id]

    def holds(intervals: list[tuple[datetime, datetime | None]], t: datetime) -> bool:
        return any(s <= t and (e is None or t < e) for s, e in intervals)

    def phase(t: datetime) -> str:
        if holds(unds, t):  # type: ignore[arg-type]
            return "modtaget"
        if holds(invs, t):  # type: ignore[arg-type]
            return "undersoegelse"
        return "indsats" if holds(meas, t) else "afventer"

    cuts = {case.opened_at}
    for s, e in (*unds, *invs, *meas):
        cuts.update(t for t in (s, e) if t is not None)
    points = sorted(t for t in cuts if t >= case.opened_at and (case.closed_at is None or t < case.closed_at))
    out: list[tuple[datetime, datetime | None, str]] = []
    for t in points:
        p = phase(t)
        if out and out[-1][2] == p:
            continue
        if out:
            out[-1] = (out[-1][0], t, out[-1][2])
        out.append((t, None, p))
    if out:
        out[-1] = (out[-1][0], case.closed_at, out[-1][2])
    return out


def _cases(acc: _Acc, tl: Timeline) -> None:
    for case in tl.cases.values():
        a, team = case.assignments, case.team_id
        acc.interval(WM, case.opened_at, case.closed_at, team, a, "open_cases")
        acc.interval(W, case.opened_at, case.closed_at, team, a, CASELOAD, key_is_caseworker=True)
        for at in case.caseworker_changes():
            acc.point(M, at, team, None, CASEWORKER_CHANGES, "")
        for s, e, phase in _phase_segments(tl, case):
            acc.interval(W, s, e, team, a, "cases_by_phase", phase)


def _overdue(acc: _Acc, deadlines: Sequence[Deadline]) -> None:
    for d in deadlines:
        if not d.is_ever_overdue():
            continue
        acc.interval(W, d.due, d.overdue_until, d.team_id, d.caseworkers, "overdue_deadlines", d.deadline)
        acc.interval(W, d.due, d.overdue_until, d.team_id, d.caseworkers, OVERDUE_BY_CASEWORKER,
                     key_is_caseworker=True)


def _measures(acc: _Acc, tl: Timeline) -> None:
    """Helårspersoner, costs, placed children, early intervention and staircase moves (monthly).
    A measure runs on every calendar day from its start date to its end date, both included."""
    runs: list[tuple[date, date | None, int, str | None]] = []
    placed: dict[str, list[tuple[datetime, datetime | None, str | None]]] = defaultdict(list)
    early: list[tuple[int, str | None]] = []
    for m in tl.measures:
        s = local_date(m.started_at)
        e = local_date(m.ended_at) if m.ended_at is not None else None
        if e is not None and e < s:
            continue
        team = tl.team_of_case(m.case_id)
        runs.append((s, e, m.step, team))
        cost = round(m.monthly_cost_dkk * 100) if m.monthly_cost_dkk is not None else 0
        first = date_index(MONTH, s)
        last = date_index(MONTH, e) if e is not None else None
        if last == first:
            days = (e - s).days + 1  # type: ignore[operator]
            acc.add(POINT, MONTH, first, team, None, HELAAR_DAYS, m.measure_type, days)
            acc.add(POINT, MONTH, first, team, None, COST_DAYS, m.measure_type, days * cost)
        else:
            days = (period_last_date(MONTH, first) - s).days + 1
            acc.add(POINT, MONTH, first, team, None, HELAAR_DAYS, m.measure_type, days)
            acc.add(POINT, MONTH, first, team, None, COST_DAYS, m.measure_type, days * cost)
            acc.add(STATE, MONTH, first + 1, team, None, HELAAR_FULL, m.measure_type, 1)
            acc.add(STATE, MONTH, first + 1, team, None, COST_FULL, m.measure_type, cost)
            if e is not None and last is not None:
                acc.add(POINT, MONTH, last, team, None, HELAAR_DAYS, m.measure_type, e.day)
                acc.add(POINT, MONTH, last, team, None, COST_DAYS, m.measure_type, e.day * cost)
                acc.add(STATE, MONTH, last, team, None, HELAAR_FULL, m.measure_type, -1)
                acc.add(STATE, MONTH, last, team, None, COST_FULL, m.measure_type, -cost)
        if m.placement:
            placed[m.measure_type].append(
                (start_of_day(s), end_of_day(e) if e is not None else None, team)
            )
        if m.step in (1, 2):
            early.append((first, team))
    for measure_type, items in placed.items():

        def running(_start: datetime, t: str = measure_type) -> list[tuple[str, str, int]]:
            return [("placed_children_by_type", t, 1)]

        acc.distinct_intervals(MONTH, items, running)
    acc.distinct_points(MONTH, "early_intervention_children", early)
    _staircase(acc, runs)


def _staircase(acc: _Acc, runs: Sequence[tuple[date, date | None, int, str | None]]) -> None:
    """Children whose highest running step at month end is lower/higher than at the previous one."""

    def highest(index: int) -> tuple[int, str | None] | None:
        day = period_last_date(MONTH, index)
        running = [(step, team) for s, e, step, team in runs if s <= day and (e is None or e >= day)]
        return max(running, key=lambda r: r[0]) if running else None

    candidates: set[int] = set()
    for s, e, _step, _team in runs:
        candidates.add(date_index(MONTH, s))
        if e is not None:
            candidates.add(date_index(MONTH, e + timedelta(days=1)))
    for index in sorted(candidates):
        now, before = highest(index), highest(index - 1)
        if now is None or before is None or now[0] == before[0]:
            continue
        bucket = "staircase_moves_down" if now[0] < before[0] else "staircase_moves_up"
        acc.distinct_points(MONTH, bucket, [(index, now[1])])


def _waitlists(acc: _Acc, tl: Timeline) -> None:
    by_offer: dict[str, list[tuple[datetime, datetime | None, str | None]]] = defaultdict(list)
    for stay in tl.waitlist:
        by_offer[stay.offer_type].append((stay.entered_at, stay.left_at, tl.team_of_case(stay.case_id)))
    for offer, items in by_offer.items():

        def waiting(start: datetime, o: str = offer) -> list[tuple[str, str, int]]:
            return [("waitlist_count_by_offer", o, 1), (WAITLIST_ENTRY_SUM, o, local_date(start).toordinal())]

        acc.distinct_intervals(MONTH, items, waiting)


def _repeat_notifications(acc: _Acc, tl: Timeline) -> None:
    received = sorted(((date_index(MONTH, local_date(u.received_at)), u.received_at, u.team_id)
                       for u in tl.underretninger), key=lambda r: r[1])
    candidates = {m + k for m, _, _ in received for k in range(12)}
    items: list[tuple[int, str | None]] = []
    for index in sorted(candidates):
        window = [r for r in received if index - 11 <= r[0] <= index]
        if len(window) >= 2:
            items.append((index, window[-1][2]))  # the team of the latest underretning in the window
    acc.distinct_points(MONTH, "repeat_notification_children_12m", items)


def contributions_of(tl: Timeline, deadlines: Sequence[Deadline]) -> Contributions:
    acc = _Acc()
    _underretninger(acc, tl, deadlines)
    _investigations(acc, tl, deadlines)
    _cases(acc, tl)
    _overdue(acc, deadlines)
    _measures(acc, tl)
    _waitlists(acc, tl)
    _repeat_notifications(acc, tl)
    return acc.result()


def child_contributions(events: Iterable[EventEnvelope], rules: Rules = DEFAULT_RULES) -> Contributions:
    """The contributions of one child, from the set of its events (their order does not matter)."""
    tl = build_timeline(events)
    return contributions_of(tl, child_deadlines(tl, rules))
