"""Pure assembly of the weekly and monthly reports from bucket rows (domain.md §6.1-6.4).

Input: the point rows of the period(s) ((period, bucket, code) -> value), the state values at the
period's end ((bucket, code) -> value), the time the report is made (shares count an item that is
still waiting once its deadline has passed) and the municipality's caseload target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.ledelsesinfo.domain import contributions as b
from services.ledelsesinfo.domain.figures import (
    FIGURES,
    FIXED_CODES,
    MONTHLY,
    WEEKLY,
    Figure,
    Kind,
)
from services.ledelsesinfo.domain.periods import (
    MONTH,
    WEEK,
    PeriodKind,
    days_in_month,
    last_date_of_month,
    month_index,
    week_index,
)

Points = Mapping[tuple[int, str, str], int]
State = Mapping[tuple[str, str], int]
Number = int | float


@dataclass(frozen=True, slots=True)
class Cell:
    value: Number | None
    numerator: Number | None = None
    denominator: Number | None = None
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class FigureValue:
    figure: Figure
    cell: Cell | None = None  # count, share, duration, number
    entries: dict[str, Cell] = field(default_factory=dict)  # breakdown: code -> cell
    items: list[dict[str, Any]] = field(default_factory=list)  # list


@dataclass(frozen=True, slots=True)
class Report:
    report: str  # "weekly" | "monthly"
    municipality: str
    period: str
    team_id: str | None
    caseworker_id: str | None
    generated_at: datetime
    figures: list[FigureValue]
    suppressed: bool = False  # small counts suppressed (udvalg, §6.4)

    @property
    def level(self) -> str:
        if self.caseworker_id:
            return "caseworker"
        return "team" if self.team_id else "municipality"

    def get(self, figure_id: str) -> FigureValue:
        return next(f for f in self.figures if f.figure.id == figure_id)


def share(num: int, den: int) -> Cell:
    return Cell(num / den if den else None, num, den)


def ratio(num: Number, den: Number, scale: float = 1.0) -> Cell:
    return Cell(num * scale / den if den else None, num, den)


class _Reader:
    """Typed access to one period's rows."""

    def __init__(self, kind: PeriodKind, index: int, points: Points, state: State, now: datetime) -> None:
        self.kind, self.index, self.points, self.state = kind, index, points, state
        self.now_epoch = int(now.timestamp())
        # indexed once, so a report costs the rows it reads (not rows x figures)
        self._points_by: dict[tuple[int, str], dict[str, int]] = {}
        for (p, bk, c), v in points.items():
            self._points_by.setdefault((p, bk), {})[c] = v
        self._state_by: dict[str, dict[str, int]] = {}
        for (bk, c), v in state.items():
            self._state_by.setdefault(bk, {})[c] = v

    def pt(self, bucket: str, code: str = "", index: int | None = None) -> int:
        return self.points.get((self.index if index is None else index, bucket, code), 0)

    def st(self, bucket: str, code: str = "") -> int:
        return self.state.get((bucket, code), 0)

    def point_codes(self, bucket: str, index: int | None = None) -> dict[str, int]:
        i = self.index if index is None else index
        return dict(self._points_by.get((i, bucket), {}))

    def state_codes(self, bucket: str) -> dict[str, int]:
        return dict(self._state_by.get(bucket, {}))

    def on_time_share(self, bucket: str) -> Cell:
        """Met on time / (met, or still waiting and past the deadline when the report is made)."""
        codes = self.point_codes(bucket)
        waiting_past_due = sum(
            v for c, v in codes.items() if (due := b.pending_due(c)) is not None and due < self.now_epoch
        )
        return share(codes.get(b.NUM, 0), codes.get(b.DEN, 0) + waiting_past_due)


def _codes(figure: Figure, present: Iterable[str]) -> list[str]:
    fixed = list(FIXED_CODES[figure.codes]) if figure.codes else []
    return fixed + sorted(set(present) - set(fixed))


def _counts(figure: Figure, values: Mapping[str, int]) -> FigureValue:
    return FigureValue(figure, entries={c: Cell(values.get(c, 0)) for c in _codes(figure, values)})


def _median(histogram: Mapping[str, int]) -> float | None:
    pairs = sorted((int(k), v) for k, v in histogram.items() if v > 0)
    n = sum(v for _, v in pairs)
    if n == 0:
        return None
    wanted = {(n - 1) // 2, n // 2}
    picked: list[int] = []
    seen = 0
    for value, count in pairs:
        for pos in sorted(wanted):
            if seen <= pos < seen + count:
                picked.append(value)
        seen += count
    return sum(picked) / len(picked)


def _weekly_figures(r: _Reader, caseload_target: int) -> dict[str, FigureValue]:
    f = FIGURES
    out: dict[str, FigureValue] = {}

    def cell(fid: str, c: Cell) -> None:
        out[fid] = FigureValue(f[fid], c)

    cell("underretninger_received", Cell(r.pt("underretninger_received")))
    cell("underretninger_unassessed", Cell(r.st("underretninger_unassessed")))
    cell("acute_assessment_on_time_share", r.on_time_share("acute_assessment_on_time_share"))
    reactions = r.point_codes(b.REACTION_SECONDS)
    median = _median(reactions)
    cell("reaction_time_hours_median",
         Cell(median / 3600 if median is not None else None, None, sum(reactions.values())))
    cell("receipt_on_time_share", r.on_time_share("receipt_on_time_share"))
    cell("open_cases", Cell(r.st("open_cases")))
    loads = [v for v in r.state_codes(b.CASELOAD).values() if v > 0]
    cell("caseload_mean", ratio(sum(loads), len(loads)))
    cell("caseload_min", Cell(min(loads) if loads else None))
    cell("caseload_max", Cell(max(loads) if loads else None))
    cell("caseworkers_over_target", Cell(sum(1 for v in loads if v > caseload_target)))
    cell("investigations_completed", Cell(r.pt("investigations_completed")))
    cell("investigation_days_mean", ratio(r.pt(b.INVESTIGATION_DAYS, "sum"), r.pt(b.INVESTIGATION_DAYS, "n")))
    cell("investigation_on_time_share", share(r.pt("investigation_on_time_share", b.NUM),
                                              r.pt("investigation_on_time_share", b.DEN)))
    out["cases_by_phase"] = _counts(f["cases_by_phase"], r.state_codes("cases_by_phase"))
    out["overdue_deadlines"] = _counts(f["overdue_deadlines"], r.state_codes("overdue_deadlines"))
    behind = sorted(((cw, v) for cw, v in r.state_codes(b.OVERDUE_BY_CASEWORKER).items() if v > 0),
                    key=lambda cv: (-cv[1], cv[0]))
    out["caseworkers_behind"] = FigureValue(
        f["caseworkers_behind"], items=[{"caseworker_id": cw, "overdue": v} for cw, v in behind]
    )
    return out


def _monthly_figures(r: _Reader, month: str) -> dict[str, FigureValue]:
    f = FIGURES
    out: dict[str, FigureValue] = {}
    dim = days_in_month(month)

    def per_type(bucket_days: str, bucket_full: str, scale: float) -> dict[str, float]:
        codes = set(r.point_codes(bucket_days)) | set(r.state_codes(bucket_full))
        return {c: (r.pt(bucket_days, c) + r.st(bucket_full, c) * dim) / dim * scale for c in codes}

    helaar = per_type(b.HELAAR_DAYS, b.HELAAR_FULL, 1.0)
    cost = per_type(b.COST_DAYS, b.COST_FULL, 0.01)
    types = _codes(f["helaarspersoner_by_measure_type"], set(helaar) | set(cost))
    out["helaarspersoner_by_measure_type"] = FigureValue(
        f["helaarspersoner_by_measure_type"], entries={t: Cell(helaar.get(t, 0.0)) for t in types})
    waiting = {c: v for c, v in r.state_codes("waitlist_count_by_offer").items() if v > 0}
    out["waitlist_count_by_offer"] = _counts(f["waitlist_count_by_offer"], waiting)
    last = last_date_of_month(month).toordinal()
    out["waitlist_days_mean_by_offer"] = FigureValue(f["waitlist_days_mean_by_offer"], entries={
        o: ratio(last * n - r.st(b.WAITLIST_ENTRY_SUM, o), n) for o, n in sorted(waiting.items())
    })
    months = range(r.index - 11, r.index + 1)
    for fid, bucket in (("underretninger_by_notifier_12m", b.RECEIVED_BY_NOTIFIER),
                        ("underretninger_by_severity_12m", b.RECEIVED_BY_SEVERITY)):
        totals: dict[str, int] = {}
        for i in months:
            for c, v in r.point_codes(bucket, i).items():
                totals[c] = totals.get(c, 0) + v
        out[fid] = _counts(f[fid], totals)
    placed = r.state_codes("placed_children_by_type")
    out["placed_children_by_type"] = _counts(f["placed_children_by_type"], placed)
    for fid in ("early_intervention_children", "repeat_notification_children_12m",
                "staircase_moves_down", "staircase_moves_up"):
        out[fid] = FigureValue(f[fid], Cell(r.pt(fid)))
    out["caseworker_changes_per_100_cases"] = FigureValue(
        f["caseworker_changes_per_100_cases"], ratio(r.pt(b.CASEWORKER_CHANGES), r.st("open_cases"), 100.0))
    out["cost_dkk_by_measure_type"] = FigureValue(
        f["cost_dkk_by_measure_type"], entries={t: Cell(cost.get(t, 0.0)) for t in types})
    out["unit_cost_dkk_per_helaarsperson"] = FigureValue(f["unit_cost_dkk_per_helaarsperson"], entries={
        t: Cell(cost.get(t, 0.0) * 12 / helaar[t] if helaar.get(t) else None) for t in types
    })
    out["investigation_on_time_share"] = FigureValue(
        f["investigation_on_time_share"],
        share(r.pt("investigation_on_time_share", b.NUM), r.pt("investigation_on_time_share", b.DEN)))
    out["acute_assessment_on_time_share"] = FigureValue(
        f["acute_assessment_on_time_share"], r.on_time_share("acute_assessment_on_time_share"))
    return out


def weekly_report(*, municipality: str, week: str, team_id: str | None, caseworker_id: str | None,
                  points: Points, state: State, generated_at: datetime, caseload_target: int) -> Report:
    r = _Reader(WEEK, week_index(week), points, state, generated_at)
    values = _weekly_figures(r, caseload_target)
    return Report("weekly", municipality, week, team_id, caseworker_id, generated_at,
                  [values[fig.id] for fig in WEEKLY])


def monthly_report(*, municipality: str, month: str, team_id: str | None, points: Points, state: State,
                   generated_at: datetime) -> Report:
    r = _Reader(MONTH, month_index(month), points, state, generated_at)
    values = _monthly_figures(r, month)
    return Report("monthly", municipality, month, team_id, None, generated_at,
                  [values[fig.id] for fig in MONTHLY])


def monthly_point_periods(month: str) -> list[int]:
    """The months whose point rows a monthly report reads (the 12-month figures)."""
    i = month_index(month)
    return list(range(i - 11, i + 1))


# --- small-count suppression (§6.4) ----------------------------------------------------------


def _small(x: Number | None) -> bool:
    return x is not None and 1 <= x <= 4


RATES = frozenset({"caseworker_changes_per_100_cases"})  # a rate of two counts: suppressed like a share


def suppress_cell(kind: Kind, cell: Cell, *, rate: bool = False) -> Cell:
    """Counts 1-4, and shares or rates whose numerator or denominator is 1-4, become null. A mean or
    median keeps its value (§6.4 names counts and shares) but loses its bases when they are 1-4."""
    if kind == Kind.COUNT and _small(cell.value):
        return Cell(None, suppressed=True)
    if (kind == Kind.SHARE or rate) and (_small(cell.numerator) or _small(cell.denominator)):
        return Cell(None, suppressed=True)
    if _small(cell.numerator) or _small(cell.denominator):
        return replace(cell, numerator=None, denominator=None)
    return cell


def suppress(report: Report) -> Report:
    """The report as the `udvalg` role sees it; `caseworkers_behind` is left out."""
    figures: list[FigureValue] = []
    for fv in report.figures:
        fig = fv.figure
        if fig.kind == Kind.LIST:
            continue
        if fig.kind == Kind.BREAKDOWN:
            vk = fig.value_kind or Kind.NUMBER
            figures.append(replace(fv, entries={k: suppress_cell(vk, c) for k, c in fv.entries.items()}))
        elif fv.cell is not None:
            figures.append(replace(fv, cell=suppress_cell(fig.kind, fv.cell, rate=fig.id in RATES)))
    return replace(report, figures=figures, suppressed=True)


# --- JSON ---------------------------------------------------------------------------------


def _json_cell(kind: Kind, cell: Cell) -> Any:
    if kind == Kind.SHARE:
        out: dict[str, Any] = {"value": cell.value, "numerator": cell.numerator,
                               "denominator": cell.denominator}
        if cell.suppressed:
            out["suppressed"] = True
        return out
    if cell.suppressed:
        return {"value": None, "suppressed": True}
    return cell.value


def figure_json(fv: FigureValue) -> Any:
    fig = fv.figure
    if fig.kind == Kind.BREAKDOWN:
        vk = fig.value_kind or Kind.NUMBER
        return {k: _json_cell(vk, c) for k, c in fv.entries.items()}
    if fig.kind == Kind.LIST:
        return list(fv.items)
    assert fv.cell is not None
    return _json_cell(fig.kind, fv.cell)


def report_json(report: Report) -> dict[str, Any]:
    return {
        "report": report.report,
        "municipality": report.municipality,
        "period": report.period,
        "scope": {"level": report.level, "team_id": report.team_id, "caseworker_id": report.caseworker_id},
        "generated_at": report.generated_at.isoformat(),
        "suppressed_small_counts": report.suppressed,
        "figures": {fv.figure.id: figure_json(fv) for fv in report.figures},
    }

