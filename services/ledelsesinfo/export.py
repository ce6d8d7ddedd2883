"""The reports as CSV and as an Excel workbook, for leaders to pass on.

CSV: one row per figure value: figure id, Danish label, key, key label, value, numerator,
denominator, suppressed (headers carry the Danish label beside the id). Excel: a summary sheet with
the scalar figures and one sheet per breakdown (and the list), Danish sheet names of at most 31
characters.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from services.ledelsesinfo.domain.figures import Kind, key_label
from services.ledelsesinfo.reports import Cell, FigureValue, Report

CSV_HEADER = [
    "figure (nøgletal)",
    "label (betegnelse)",
    "key (kode)",
    "key_label (kodebetegnelse)",
    "value (værdi)",
    "numerator (tæller)",
    "denominator (nævner)",
    "suppressed (skjult)",
]
LEVEL_LABELS = {"municipality": "Kommune", "team": "Team", "caseworker": "Sagsbehandler"}


def _fmt(x: Any) -> Any:
    return "" if x is None else x


def _cell_row(fv: FigureValue, key: str, klabel: str, cell: Cell) -> list[Any]:
    return [fv.figure.id, fv.figure.label, key, klabel, _fmt(cell.value), _fmt(cell.numerator),
            _fmt(cell.denominator), "ja" if cell.suppressed else ""]


def rows(report: Report) -> Iterator[list[Any]]:
    """The report as rows of the CSV columns (without the header)."""
    for fv in report.figures:
        fig = fv.figure
        if fig.kind == Kind.BREAKDOWN:
            for key, cell in fv.entries.items():
                yield _cell_row(fv, key, key_label(fig.codes, key), cell)
        elif fig.kind == Kind.LIST:
            for item in fv.items:
                cw = item["caseworker_id"]
                yield [fig.id, fig.label, cw, cw, item["overdue"], "", "", ""]
        elif fv.cell is not None:
            yield _cell_row(fv, "", "", fv.cell)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows(report))
    return buf.getvalue()


_INVALID_SHEET = re.compile(r"[\[\]:*?/\\]")


def sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unique Excel sheet name (at most 31 characters, none of []:*?/\\)."""
    base = _INVALID_SHEET.sub("-", name).strip("'")[:31] or "Ark"
    candidate, n = base, 2
    while candidate.lower() in taken:
        suffix = f" {n}"
        candidate = base[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(candidate.lower())
    return candidate


def to_xlsx(report: Report) -> bytes:
    wb = Workbook()
    bold = Font(bold=True)
    summary = wb.active
    assert summary is not None
    taken: set[str] = set()
    summary.title = sheet_name("Oversigt", taken)
    scope = LEVEL_LABELS[report.level]
    if report.team_id:
        scope += f" {report.team_id}"
    if report.caseworker_id:
        scope += f" / {report.caseworker_id}"
    for label, value in (
        ("Ledelsesinformation", "Ugerapport" if report.report == "weekly" else "Månedsrapport"),
        ("Kommune (municipality)", report.municipality),
        ("Periode (period)", report.period),
        ("Omfang (scope)", scope),
        ("Dannet (generated_at)", report.generated_at.isoformat()),
        ("Små tal skjult (suppressed)", "ja" if report.suppressed else "nej"),
    ):
        summary.append([label, value])
        summary.cell(summary.max_row, 1).font = bold
    summary.append([])
    summary.append(["Nøgletal (figure)", "Betegnelse (label)", "Værdi (value)", "Tæller (numerator)",
                    "Nævner (denominator)", "Skjult (suppressed)"])
    for c in summary[summary.max_row]:
        c.font = bold
    for fv in report.figures:
        if fv.figure.kind in (Kind.BREAKDOWN, Kind.LIST) or fv.cell is None:
            continue
        c = fv.cell
        summary.append([fv.figure.id, fv.figure.label, c.value, c.numerator, c.denominator,
                        "ja" if c.suppressed else None])
    summary.column_dimensions["A"].width = 36
    summary.column_dimensions["B"].width = 60

    for fv in report.figures:
        fig = fv.figure
        if fig.kind not in (Kind.BREAKDOWN, Kind.LIST):
            continue
        ws = wb.create_sheet(sheet_name(fig.sheet or fig.label, taken))
        ws.append([fig.label])
        ws.cell(1, 1).font = bold
        ws.append([f"Nøgletal (figure): {fig.id}"])
        ws.append([])
        if fig.kind == Kind.LIST:
            ws.append(["Sagsbehandler (caseworker_id)", "Overskredne frister (overdue)"])
            for c in ws[ws.max_row]:
                c.font = bold
            for item in fv.items:
                ws.append([item["caseworker_id"], item["overdue"]])
        else:
            ws.append(["Kode (key)", "Betegnelse (key_label)", "Værdi (value)", "Tæller (numerator)",
                       "Nævner (denominator)", "Skjult (suppressed)"])
            for c in ws[ws.max_row]:
                c.font = bold
            for key, cell in fv.entries.items():
                ws.append([key, key_label(fig.codes, key), cell.value, cell.numerator, cell.denominator,
                           "ja" if cell.suppressed else None])
        ws.column_dimensions["A"].width = 28
        ws.column_dimensions["B"].width = 50
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
