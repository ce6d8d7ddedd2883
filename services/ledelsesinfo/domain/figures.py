"""The key figures of domain.md §6: ids, kinds, Danish labels, and labels of every breakdown code.

Kinds: `count` (an integer), `share` (value in [0, 1] with numerator and denominator), `duration`
(hours or days, as the id says), `number` (a mean, minimum, maximum or rate), `breakdown` (an object
keyed by code; `value_kind` tells what each entry is) and `list` (`caseworkers_behind`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from shared.events.codes import DEFAULT_MEASURE_TYPES, NOTIFIERS, SEVERITIES


class Kind(StrEnum):
    COUNT = "count"
    SHARE = "share"
    DURATION = "duration"
    NUMBER = "number"
    BREAKDOWN = "breakdown"
    LIST = "list"


class Codes(StrEnum):
    """Which code list labels the keys of a breakdown."""

    NOTIFIER = "notifier"
    SEVERITY = "severity"
    MEASURE_TYPE = "measure_type"
    DEADLINE = "deadline"
    PHASE = "phase"
    OFFER_TYPE = "offer_type"
    CASEWORKER = "caseworker"


@dataclass(frozen=True, slots=True)
class Figure:
    id: str
    kind: Kind
    label: str
    sheet: str = ""  # Excel sheet name of a breakdown or list (Danish, at most 31 characters)
    value_kind: Kind | None = None  # of a breakdown's entries
    codes: Codes | None = None


INVESTIGATION_ON_TIME = "Andel børnefaglige undersøgelser afsluttet inden for 4 måneder"
C, S, D, N, B, L = Kind.COUNT, Kind.SHARE, Kind.DURATION, Kind.NUMBER, Kind.BREAKDOWN, Kind.LIST

WEEKLY: Final[tuple[Figure, ...]] = (
    Figure("underretninger_received", C, "Modtagne underretninger"),
    Figure("underretninger_unassessed", C, "Ikke-vurderede underretninger ved ugens udgang"),
    Figure("acute_assessment_on_time_share", S, "Andel vurderet inden for 24 timer"),
    Figure("reaction_time_hours_median", D, "Reaktionstid fra modtagelse til vurdering, median (timer)"),
    Figure("receipt_on_time_share", S, "Andel kvitteret rettidigt til professionelle underrettere"),
    Figure("open_cases", C, "Åbne sager"),
    Figure("caseload_mean", N, "Sagstal pr. sagsbehandler, gennemsnit"),
    Figure("caseload_min", C, "Sagstal pr. sagsbehandler, laveste"),
    Figure("caseload_max", C, "Sagstal pr. sagsbehandler, højeste"),
    Figure("caseworkers_over_target", C, "Sagsbehandlere over måltallet for sagstal"),
    Figure("investigations_completed", C, "Afsluttede børnefaglige undersøgelser"),
    Figure("investigation_days_mean", D, "Børnefaglig undersøgelse, varighed i gennemsnit (dage)"),
    Figure("investigation_on_time_share", S, INVESTIGATION_ON_TIME),
    Figure("cases_by_phase", B, "Åbne sager fordelt på fase", "Sager pr. fase", C, Codes.PHASE),
    Figure("overdue_deadlines", B, "Overskredne frister", "Overskredne frister", C, Codes.DEADLINE),
    Figure(
        "caseworkers_behind", L, "Sagsbehandlere med overskredne frister", "Sagsbehandlere bagud", C,
        Codes.CASEWORKER,
    ),
)

MONTHLY: Final[tuple[Figure, ...]] = (
    Figure(
        "helaarspersoner_by_measure_type", B, "Helårspersoner pr. indsatstype", "Helårspersoner", N,
        Codes.MEASURE_TYPE,
    ),
    Figure("waitlist_count_by_offer", B, "Børn på venteliste ved månedens udgang", "Venteliste antal", C,
           Codes.OFFER_TYPE),
    Figure("waitlist_days_mean_by_offer", B, "Ventetid i gennemsnit (dage)", "Ventetid dage", N,
           Codes.OFFER_TYPE),
    Figure("underretninger_by_notifier_12m", B, "Underretninger de seneste 12 måneder pr. underretter",
           "Underretter 12 mdr", C, Codes.NOTIFIER),
    Figure("underretninger_by_severity_12m", B, "Underretninger de seneste 12 måneder pr. alvorlighed",
           "Alvorlighed 12 mdr", C, Codes.SEVERITY),
    Figure("placed_children_by_type", B, "Anbragte børn ved månedens udgang pr. anbringelsestype",
           "Anbragte børn", C, Codes.MEASURE_TYPE),
    Figure("early_intervention_children", C, "Børn med tidlig indsats (trin 1-2) startet i måneden"),
    Figure("repeat_notification_children_12m", C,
           "Børn med to eller flere underretninger de seneste 12 måneder"),
    Figure("staircase_moves_down", C, "Børn flyttet ned ad indsatstrappen"),
    Figure("staircase_moves_up", C, "Børn flyttet op ad indsatstrappen"),
    Figure("caseworker_changes_per_100_cases", N, "Sagsbehandlerskift pr. 100 åbne sager"),
    Figure("cost_dkk_by_measure_type", B, "Udgift pr. indsatstype (kr.)", "Udgift kr", N, Codes.MEASURE_TYPE),
    Figure("unit_cost_dkk_per_helaarsperson", B, "Udgift pr. helårsperson pr. indsatstype (kr.)",
           "Enhedsudgift kr", N, Codes.MEASURE_TYPE),
    Figure("investigation_on_time_share", S, INVESTIGATION_ON_TIME),
    Figure("acute_assessment_on_time_share", S, "Andel vurderet inden for 24 timer"),
)

WEEKLY_IDS: Final[tuple[str, ...]] = tuple(f.id for f in WEEKLY)
MONTHLY_IDS: Final[tuple[str, ...]] = tuple(f.id for f in MONTHLY)
FIGURES: Final[dict[str, Figure]] = {f.id: f for f in (*WEEKLY, *MONTHLY)}

# Figures whose values are derived from a count of children, cases or underretninger, and so are
# divided by the child population in a comparison between municipalities. (The caseload figures
# are counts, of one caseworker's cases, suppressed at 1-4 like every count, but not per child.)
COUNT_BASED: Final[frozenset[str]] = frozenset(
    f.id for f in FIGURES.values() if f.kind == Kind.COUNT or f.value_kind == Kind.COUNT
) - {"caseworkers_over_target", "caseload_min", "caseload_max"}

DEADLINE_IDS: Final[tuple[str, ...]] = (
    "acute_assessment",
    "receipt",
    "child_conversation",
    "investigation",
    "first_follow_up",
    "follow_up",
    "supervision_visit",
    "child_plan",
)
PHASES: Final[tuple[str, ...]] = ("modtaget", "undersoegelse", "indsats", "afventer")

DEADLINE_LABELS: Final[dict[str, str]] = {
    "acute_assessment": "Vurdering inden for 24 timer",
    "receipt": "Kvittering til underretter",
    "child_conversation": "Børnesamtale",
    "investigation": "Børnefaglig undersøgelse inden for 4 måneder",
    "first_follow_up": "Første opfølgning",
    "follow_up": "Opfølgning",
    "supervision_visit": "Tilsynsbesøg",
    "child_plan": "Barnets plan",
}
PHASE_LABELS: Final[dict[str, str]] = {
    "modtaget": "Modtaget (underretning ikke vurderet)",
    "undersoegelse": "Undersøgelse",
    "indsats": "Indsats",
    "afventer": "Afventer",
}
MEASURE_TYPE_LABELS: Final[dict[str, str]] = {code: m.label for code, m in DEFAULT_MEASURE_TYPES.items()}
NOTIFIER_LABELS: Final[dict[str, str]] = {code: label for code, (label, _) in NOTIFIERS.items()}
SEVERITY_LABELS: Final[dict[str, str]] = dict(SEVERITIES)

# The codes a breakdown always lists (with 0), so reports of different periods and municipalities
# line up; codes outside these lists (a municipality's own measure types, offer types) are added
# when they occur.
FIXED_CODES: Final[dict[Codes, tuple[str, ...]]] = {
    Codes.NOTIFIER: tuple(NOTIFIERS),
    Codes.SEVERITY: tuple(SEVERITIES),
    Codes.MEASURE_TYPE: tuple(DEFAULT_MEASURE_TYPES),
    Codes.DEADLINE: DEADLINE_IDS,
    Codes.PHASE: PHASES,
    Codes.OFFER_TYPE: (),
    Codes.CASEWORKER: (),
}
_LABELS: Final[dict[Codes, dict[str, str]]] = {
    Codes.NOTIFIER: NOTIFIER_LABELS,
    Codes.SEVERITY: SEVERITY_LABELS,
    Codes.MEASURE_TYPE: MEASURE_TYPE_LABELS,
    Codes.DEADLINE: DEADLINE_LABELS,
    Codes.PHASE: PHASE_LABELS,
    Codes.OFFER_TYPE: MEASURE_TYPE_LABELS,  # an offer named like a measure type gets its label
    Codes.CASEWORKER: {},
}


def key_label(codes: Codes | None, key: str) -> str:
    """Danish label of a breakdown code; a code without a label (a caseworker id, a municipality's
    own offer type) is its own label."""
    if codes is None:
        return key
    return _LABELS[codes].get(key, key)


def figure(figure_id: str) -> Figure:
    try:
        return FIGURES[figure_id]
    except KeyError:
        raise KeyError(f"unknown figure {figure_id!r}") from None
