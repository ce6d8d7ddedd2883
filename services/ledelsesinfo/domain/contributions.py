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

The facts come from the shared case-work engine (`shared.casework.project_child`), the same picture
the follow-up worklists are made of: case attribution of underretninger, caseworker history,
phases, and every deadline with its due, met and ended instants and its `overdue` state.

Attribution: an underretning, and the on-time shares of its `acute_assessment` and `receipt`
deadlines (which §6.1 defines over "those received in the week"), count for the underretning's own
`team_id`; `overdue_deadlines` counts for the deadline's responsible team as the worklist shows it
(its case's team, else the underretning's); everything else for its case's team. A caseworker is
the one holding the case at the instant in question (at the event for event figures, at the
period's end for state figures); a case whose `CaseOpened` has not arrived yet is held by nobody.

Conventions: a fact holds on the half-open interval [start, end) of instants. A case closing ends
its measures and waiting-list stays for the figures (a closed case runs nothing).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from services.ledelsesinfo.domain.periods import (
    MONTH,
    WEEK,
    PeriodKind,
    date_index,
    period_indexes,
    period_last_date,
    start_of_day,
)
from shared.casework.cadence import ProfileLookup, default_lookup
from shared.casework.calendar import end_of_day, local_date
from shared.casework.child import project_child
from shared.casework.deadlines import Deadline
from shared.casework.model import Assignment, Case, ChildPicture
from shared.casework.rules import RuleSettings, investigation_due
from shared.events.envelope import EventEnvelope

Mode = Literal["p", "s"]
Bucket = tuple[str, str, int, str, str, str, str]  # mode, kind, period, team, caseworker, bucket, key
Contributions = dict[Bucket, int]
Stay = tuple[datetime, datetime | None, str | None]  # [start, end) and the team
Assignments = Sequence[Assignment]

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


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def caseworker_at(assignments: Assignments, at: datetime) -> str | None:
    """The caseworker of the last assignment at or before `at` (as `Case.caseworker_at`)."""
    current = None
    for a in assignments:
        if a.assigned_at > at:
            break
        current = a.caseworker_id
    return current


def caseworker_segments(
    assignments: Assignments, start: datetime, end: datetime | None
) -> list[tuple[datetime, datetime | None, str | None]]:
    """Split [start, end) where the case changes caseworker: [(from, to, caseworker or None)]."""
    out: list[tuple[datetime, datetime | None, str | None]] = []
    s, cw = start, caseworker_at(assignments, start)
    for a in assignments:
        if a.assigned_at <= start:
            continue
        if end is not None and a.assigned_at >= end:
            break
        out.append((s, a.assigned_at, cw))
        s, cw = a.assigned_at, a.caseworker_id
    out.append((s, end, cw))
    return out


class _Acc:
    """Adds a child's contributions into `data`.

    Two shortcuts leave the sums (and so the stored rows) exactly as adding every change one by one
    would: a state change whose [start, end) falls inside one period adds +v and -v to the same
    bucket, which sums to nothing, so such pairs are not added at all; and where a state interval
    is split at the case's caseworker changes, the municipality's and the team's buckets (the same
    bucket for every piece, unless the key is the caseworker) get the whole interval once, since the
    -v and +v of two pieces at a change cancel there; only the caseworker's own buckets are split.
    Entries may come to 0 either way."""

    __slots__ = ("data",)

    def __init__(self, data: defaultdict[Bucket, int] | None = None) -> None:
        self.data: defaultdict[Bucket, int] = data if data is not None else defaultdict(int)

    @staticmethod
    def index(kind: PeriodKind, at: datetime) -> int:
        """`period_index(kind, at)` (memoised per hour: `periods.period_indexes`)."""
        return period_indexes(at)[0 if kind == WEEK else 1]

    def add(self, mode: Mode, kind: PeriodKind, index: int, team: str | None, cw: str | None,
            bucket: str, key: str, value: int) -> None:
        """Add to the municipality's bucket, the team's (if any) and the caseworker's (weekly)."""
        data = self.data
        data[(mode, kind, index, "", "", bucket, key)] += value
        if team:
            data[(mode, kind, index, team, "", bucket, key)] += value
        if cw and kind == WEEK:
            data[(mode, kind, index, team or "", cw, bucket, key)] += value

    def point(self, kinds: Sequence[PeriodKind], at: datetime, team: str | None, cw: str | None,
              bucket: str, key: str, value: int = 1) -> None:
        self.point_in(kinds, period_indexes(at), team, cw, bucket, key, value)

    def point_in(self, kinds: Sequence[PeriodKind], periods: tuple[int, int], team: str | None,
                 cw: str | None, bucket: str, key: str, value: int = 1) -> None:
        """A point at the instant whose (week, month) numbers are `periods`."""
        data = self.data
        for kind in kinds:
            if kind == WEEK:
                w = periods[0]
                data[(POINT, WEEK, w, "", "", bucket, key)] += value
                if team:
                    data[(POINT, WEEK, w, team, "", bucket, key)] += value
                if cw:
                    data[(POINT, WEEK, w, team or "", cw, bucket, key)] += value
            else:
                m = periods[1]
                data[(POINT, MONTH, m, "", "", bucket, key)] += value
                if team:
                    data[(POINT, MONTH, m, team, "", bucket, key)] += value

    def change(self, kinds: Sequence[PeriodKind], at: datetime, team: str | None, cw: str | None,
               bucket: str, key: str, value: int) -> None:
        periods = period_indexes(at)
        for kind in kinds:
            self.add(STATE, kind, periods[0 if kind == WEEK else 1], team, cw, bucket, key, value)

    def interval(self, kinds: Sequence[PeriodKind], start: datetime, end: datetime | None,
                 team: str | None, assignments: Assignments, bucket: str,
                 key: str = "", value: int = 1, *, key_is_caseworker: bool = False) -> None:
        """A state holding on [start, end), split where the case changes caseworker (with
        `key_is_caseworker` the key of each piece is its caseworker; pieces held by nobody count
        nowhere)."""
        if end is not None and end <= start:
            return
        starts = period_indexes(start)
        ends = period_indexes(end) if end is not None else None
        if ends is not None and starts[0] == ends[0] and (kinds is W or starts[1] == ends[1]):
            return  # every piece lies inside one period of each kind: nothing
        data = self.data
        if key_is_caseworker:
            if not assignments:
                return
            t = team or ""
            for s, e, cw in caseworker_segments(assignments, start, end):
                if cw is None:
                    continue
                at_s = starts if s is start else period_indexes(s)
                at_e = None if e is None else ends if e is end else period_indexes(e)
                for kind in kinds:  # `add` of +value at the piece's start, -value at its end
                    at = 0 if kind == WEEK else 1
                    i = at_s[at]
                    j = at_e[at] if at_e is not None else None
                    if i == j:
                        continue
                    weekly_cw = cw and kind == WEEK
                    data[(STATE, kind, i, "", "", bucket, cw)] += value
                    if team:
                        data[(STATE, kind, i, team, "", bucket, cw)] += value
                    if weekly_cw:
                        data[(STATE, kind, i, t, cw, bucket, cw)] += value
                    if j is not None:
                        data[(STATE, kind, j, "", "", bucket, cw)] -= value
                        if team:
                            data[(STATE, kind, j, team, "", bucket, cw)] -= value
                        if weekly_cw:
                            data[(STATE, kind, j, t, cw, bucket, cw)] -= value
            return
        weekly = False
        for kind in kinds:
            at = 0 if kind == WEEK else 1
            weekly = weekly or at == 0
            i = starts[at]
            j = ends[at] if ends is not None else None
            if i == j:
                continue
            data[(STATE, kind, i, "", "", bucket, key)] += value
            if j is not None:
                data[(STATE, kind, j, "", "", bucket, key)] -= value
            if team:
                data[(STATE, kind, i, team, "", bucket, key)] += value
                if j is not None:
                    data[(STATE, kind, j, team, "", bucket, key)] -= value
        if not weekly or not assignments:
            return
        t = team or ""
        for s, e, cw in caseworker_segments(assignments, start, end):
            if not cw:
                continue
            i = starts[0] if s is start else period_indexes(s)[0]
            j = None if e is None else ends[0] if e is end and ends is not None else period_indexes(e)[0]
            if i == j:
                continue
            data[(STATE, WEEK, i, t, cw, bucket, key)] += value
            if j is not None:
                data[(STATE, WEEK, j, t, cw, bucket, key)] -= value

    def distinct_points(self, kind: PeriodKind, bucket: str, items: Iterable[tuple[int, str | None]]) -> None:
        """+1 per distinct period (municipality) and per distinct (period, team): a child counts once."""
        items = list(items)
        if not items:
            return
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
        data = self.data
        for (t, c), intervals in groups.items():
            for s, e in _union(intervals):
                i = self.index(kind, s)
                j = self.index(kind, e) if e is not None else None
                if i == j:
                    continue  # +v and -v in one period: nothing
                for bucket, key, value in emit(s):
                    data[(STATE, kind, i, t, c, bucket, key)] += value
                    if j is not None:
                        data[(STATE, kind, j, t, c, bucket, key)] -= value


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


def _share(acc: _Acc, kinds: Sequence[PeriodKind], started: datetime, due: datetime,
           met: datetime | None, team: str | None, cw: str | None, bucket: str) -> None:
    """One item of an on-time share, counted in the period it started in."""
    if met is not None:
        acc.point(kinds, started, team, cw, bucket, DEN)
        if met <= due:
            acc.point(kinds, started, team, cw, bucket, NUM)
    else:
        acc.point(kinds, started, team, cw, bucket, pending_key(due))


def _assignments(pic: ChildPicture, case_id: str | None) -> Assignments:
    """The caseworker history of the case, once its `CaseOpened` is known (before that the case is
    held by nobody in the figures; intake guarantees the opening exists, it may just arrive later)."""
    case = pic.cases.get(case_id) if case_id is not None else None
    return case.assignments if case is not None and case.opened_at is not None else ()


def _underretninger(acc: _Acc, pic: ChildPicture) -> None:
    for u in pic.underretninger.values():
        cws = _assignments(pic, u.case_id)
        cw = caseworker_at(cws, u.received_at)
        received = period_indexes(u.received_at)
        acc.point_in(W, received, u.team_id, cw, "underretninger_received", "")
        acc.point_in(M, received, u.team_id, None, RECEIVED_BY_NOTIFIER, u.notifier)
        acc.point_in(M, received, u.team_id, None, RECEIVED_BY_SEVERITY, u.severity)
        acc.interval(W, u.received_at, u.assessed_at, u.team_id, cws, "underretninger_unassessed")
        if u.assessed_at is not None:
            seconds = max(0, int((u.assessed_at - u.received_at).total_seconds()))
            acc.point_in(W, received, u.team_id, cw, REACTION_SECONDS, seconds_key(seconds))
    # §6.1 defines these shares by the facts of the underretninger received in the period (assessed
    # / receipt sent, by the deadline), so a fact after the case closed still counts; the due
    # instant is the engine's.
    for d in pic.deadlines:
        if d.deadline not in ("acute_assessment", "receipt") or d.underretning_id is None:
            continue
        u = pic.underretninger[d.underretning_id]
        cw = caseworker_at(_assignments(pic, u.case_id), u.received_at)
        if d.deadline == "acute_assessment":
            _share(acc, WM, u.received_at, d.due, u.assessed_at, u.team_id, cw,
                   "acute_assessment_on_time_share")
        else:
            _share(acc, W, u.received_at, d.due, u.receipt_sent_at, u.team_id, cw, "receipt_on_time_share")


def _investigations(acc: _Acc, case: Case) -> None:
    team = case.team_id
    cws = case.assignments if case.opened_at is not None else ()
    for inv in case.investigations:
        if inv.kind != BFU or inv.completed_at is None:
            continue
        cw = caseworker_at(cws, inv.completed_at)
        acc.point(W, inv.completed_at, team, cw, "investigations_completed", "")
        if inv.started_at is None:
            continue  # a completion whose start is unknown: no duration, no on-time judgement
        days = (local_date(inv.completed_at) - local_date(inv.started_at)).days
        acc.point(W, inv.completed_at, team, cw, INVESTIGATION_DAYS, "sum", days)
        acc.point(W, inv.completed_at, team, cw, INVESTIGATION_DAYS, "n")
        acc.point(WM, inv.completed_at, team, cw, "investigation_on_time_share", DEN)
        if inv.completed_at <= investigation_due(inv.started_at):
            acc.point(WM, inv.completed_at, team, cw, "investigation_on_time_share", NUM)


def _phase_segments(pic: ChildPicture, case: Case, opened_at: datetime
                    ) -> list[tuple[datetime, datetime | None, str]]:
    """The case's phase over [opened, closed) (`ChildPicture.phase_at`, the worklist's phase),
    evaluated at every instant where it can change."""
    cuts = {opened_at}
    for uid in case.underretning_ids:
        u = pic.underretninger[uid]
        cuts.add(u.received_at)
        if u.assessed_at is not None:
            cuts.add(u.assessed_at)
    for inv in case.investigations:
        if inv.started_at is not None:
            cuts.add(inv.started_at)
            if inv.completed_at is not None:
                cuts.add(inv.completed_at)
    for m in case.measures:
        cuts.add(m.started_at)
        if m.ended_at is not None:
            cuts.add(m.ended_at)
    closed = case.closed_at
    out: list[tuple[datetime, datetime | None, str]] = []
    for t in sorted(cuts):
        if t < opened_at or (closed is not None and t >= closed):
            continue
        p = pic.phase_at(case.case_id, t)
        if p is None or (out and out[-1][2] == p):
            continue
        if out:
            out[-1] = (out[-1][0], t, out[-1][2])
        out.append((t, None, p))
    if out:
        out[-1] = (out[-1][0], closed, out[-1][2])
    return out


def _cases(acc: _Acc, pic: ChildPicture) -> None:
    for case in pic.cases.values():
        _investigations(acc, case)
        if case.opened_at is None:
            continue  # not opened (yet): no open case, no phase
        a, team = case.assignments, case.team_id
        acc.interval(WM, case.opened_at, case.closed_at, team, a, "open_cases")
        acc.interval(W, case.opened_at, case.closed_at, team, a, CASELOAD, key_is_caseworker=True)
        for assignment in a:
            if assignment.change:
                acc.point(M, assignment.assigned_at, team, None, CASEWORKER_CHANGES, "")
        for s, e, phase in _phase_segments(pic, case, case.opened_at):
            acc.interval(W, s, e, team, a, "cases_by_phase", phase)


def _overdue(acc: _Acc, pic: ChildPicture, deadlines: Sequence[Deadline]) -> None:
    """Each deadline over the instants its worklist state is `overdue` (`Deadline.overdue_span`)."""
    for d in deadlines:
        span = d.overdue_span()
        if span is None:
            continue
        since, until = span
        cws = _assignments(pic, d.case_id)
        acc.interval(W, since, until, d.team_id, cws, "overdue_deadlines", d.deadline)
        acc.interval(W, since, until, d.team_id, cws, OVERDUE_BY_CASEWORKER, key_is_caseworker=True)


def _measures(acc: _Acc, pic: ChildPicture) -> None:
    """Helårspersoner, costs, placed children, early intervention and staircase moves (monthly).
    A measure runs on every calendar day from its start date to its end date (its `MeasureEnded` or
    its case's closing, whichever is first), both included."""
    runs: list[tuple[date, date | None, int, str | None]] = []
    placed: dict[str, list[tuple[datetime, datetime | None, str | None]]] = defaultdict(list)
    early: list[tuple[int, str | None]] = []
    for case in pic.cases.values():
        team = case.team_id
        for m in case.measures:
            ended_at = _earliest(m.ended_at, case.closed_at)
            s = local_date(m.started_at)
            e = local_date(ended_at) if ended_at is not None else None
            if e is not None and e < s:
                continue
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


def _waitlists(acc: _Acc, pic: ChildPicture) -> None:
    """A stay ends when the child leaves the list or the case closes, whichever is first."""
    by_offer: dict[str, list[tuple[datetime, datetime | None, str | None]]] = defaultdict(list)
    for case in pic.cases.values():
        for stay in case.waitlist:
            left_at = _earliest(stay.left_at, case.closed_at)
            by_offer[stay.offer_type].append((stay.entered_at, left_at, case.team_id))
    for offer, items in by_offer.items():

        def waiting(start: datetime, o: str = offer) -> list[tuple[str, str, int]]:
            return [("waitlist_count_by_offer", o, 1), (WAITLIST_ENTRY_SUM, o, local_date(start).toordinal())]

        acc.distinct_intervals(MONTH, items, waiting)


def _repeat_notifications(acc: _Acc, pic: ChildPicture) -> None:
    if len(pic.underretninger) < 2:
        return  # one underretning is never a repeat
    received = sorted(((acc.index(MONTH, u.received_at), u.received_at, u.team_id)
                       for u in pic.underretninger.values()), key=lambda r: r[1])
    # in time order the months do not decrease either: the window of a month is a slice
    months = [r[0] for r in received]
    candidates = {m + k for m in months for k in range(12)}
    items: list[tuple[int, str | None]] = []
    for index in sorted(candidates):
        first, end = bisect_left(months, index - 11), bisect_right(months, index)
        if end - first >= 2:
            items.append((index, received[end - 1][2]))  # the team of the latest in the window
    acc.distinct_points(MONTH, "repeat_notification_children_12m", items)


def add_contributions(pic: ChildPicture, data: defaultdict[Bucket, int]) -> None:
    """Add the contributions of a child's picture to `data` (which may hold other children's sums:
    the bulk rebuild adds a whole page of children into one mapping). Entries may come to 0."""
    acc = _Acc(data)
    _underretninger(acc, pic)
    _cases(acc, pic)
    _overdue(acc, pic, pic.deadlines)
    _measures(acc, pic)
    _waitlists(acc, pic)
    _repeat_notifications(acc, pic)


def contributions_of(pic: ChildPicture) -> Contributions:
    """The contributions of a child's picture (from the shared case-work engine)."""
    data: defaultdict[Bucket, int] = defaultdict(int)
    add_contributions(pic, data)
    return {k: v for k, v in data.items() if v != 0}


def child_contributions(
    events: Iterable[EventEnvelope],
    profile_lookup: ProfileLookup = default_lookup,
    settings: RuleSettings | None = None,
) -> Contributions:
    """The contributions of one child, from the set of its events (their order does not matter),
    under the same cadence profiles and rule settings as the follow-up worklists."""
    return contributions_of(project_child(events, profile_lookup, settings))
