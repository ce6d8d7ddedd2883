"""What the synthetic streams aim at, and how close a generated year must come (tests pin these).

National volume (the spec, section 1; DST 2022): about 152,700 underretninger a year about
85,300 children, so 1.79 underretninger per notified child. The notifier mix follows DST table
UND1's broad shares as published for recent years (schools about 21%, health about 20% -
hospitals/GPs/psychiatry plus health visitors and dentists -, police about 12%); the finer split of
the remaining categories, the severity mix, the reasons and the whole funnel (assessment,
investigation, measures, placements) are PLAUSIBLE ASSUMPTIONS chosen for this project, not DST
figures: DST does not publish them in this form. They are documented here so that tests, reports
and anybody reading the demo know what the data was made to look like.

A "new child" below is a child whose first underretning in the stream falls in the period (not
carried over from the warm-up), and the funnel counts what happens to it by the end of the period;
tests measure it over children first notified in the first half of a generated year, so most of
them have had time to go through an investigation.
"""

from __future__ import annotations

from typing import Final

# --- volume ------------------------------------------------------------------------------------

NATIONAL_UNDERRETNINGER_PER_YEAR: Final = 152_700
NATIONAL_CHILDREN_NOTIFIED_PER_YEAR: Final = 85_300
UNDERRETNINGER_PER_CHILD: Final = NATIONAL_UNDERRETNINGER_PER_YEAR / NATIONAL_CHILDREN_NOTIFIED_PER_YEAR
UNDERRETNINGER_PER_CHILD_TOLERANCE: Final = 0.15  # absolute, on the ratio in a 12-month period
VOLUME_TOLERANCE: Final = 0.10  # relative: underretninger in a year vs national volume x share x scale

# --- notifiers (DST UND1 codes; "family" is 7 until 2023 and 13 from 2024) -------------------

NOTIFIER_SHARES: Final[dict[str, float]] = {
    "2": 0.210,  # school or other education
    "4": 0.140,  # health service (hospital, GP, psychiatry)
    "5": 0.060,  # health visitor or dentist        -> health in all: 0.20
    "6": 0.120,  # police or court
    "3": 0.090,  # daycare, SFO, club
    "1": 0.080,  # other municipality / department
    "family": 0.090,  # family or acquaintances (code 7 until 2023, 13 from 2024)
    "8": 0.060,  # anonymous
    "11": 0.050,  # others
    "9": 0.030,  # placement institution
    "10": 0.030,  # associations, crisis/addiction/asylum centres
    "99": 0.025,  # unknown
    "12": 0.015,  # the child itself (from 2024; "family" before)
}
NOTIFIER_TOLERANCE: Final = 0.03  # absolute (percentage points / 100) per category

# --- severity ----------------------------------------------------------------------------------

SEVERITY_SHARES: Final[dict[str, float]] = {
    "akut": 0.07,
    "alvorlig": 0.30,
    "bekymring": 0.58,
    "ukendt": 0.05,
}
SEVERITY_TOLERANCE: Final = 0.03

# --- repeat notifications -------------------------------------------------------------------

# Underretninger per child over the child's whole "notification spell" (1 + repeats), the
# gaps between them (exponential), chosen so that a 12-month period shows 1.79 per child.
NOTIFICATIONS_PER_CHILD_DIST: Final[dict[int, float]] = {
    1: 0.55,
    2: 0.20,
    3: 0.10,
    4: 0.06,
    5: 0.04,
    6: 0.03,
    8: 0.02,
}
REPEAT_GAP_DAYS_MEAN: Final = 44.0
REPEAT_CHILD_SHARE: Final = 0.40  # children with 2+ underretninger in the 12 months (DST UND2-like)
REPEAT_CHILD_SHARE_TOLERANCE: Final = 0.05

# --- assessment (24 hours, Barnets Lov § 136) --------------------------------------------------

ASSESSED_WITHIN_24H: Final = 0.90
ASSESSED_WITHIN_24H_TOLERANCE: Final = 0.03

# --- the funnel for a new child (first underretning, no open case) ---------------------------

# Assessment decision of an underretning about a child without an open case.
DECISION_SHARES: Final[dict[str, float]] = {
    "ingen_videre": 0.50,
    "afdaekning": 0.32,
    "boernefaglig_undersoegelse": 0.15,
    "akut_indsats": 0.03,
}
AFDAEKNING_TO_INVESTIGATION: Final = 0.25  # the afdaekning finds a boernefaglig undersoegelse is needed
AFDAEKNING_TO_EARLY_MEASURE: Final = 0.30  # ... or a step 1-2 measure at once (else the case closes)
INVESTIGATION_TO_MEASURE: Final = 0.70  # a boernefaglig undersoegelse ends in a measure
MEASURE_IS_PLACEMENT: Final = 0.20  # of measures decided after a boernefaglig undersoegelse
ACUTE_IS_PLACEMENT: Final = 0.60  # of acute measures
INVESTIGATION_ON_TIME: Final = 0.80  # completed within 4 months

# Implied shares of new children (eventually; the tests allow for the period's end cutting some short):
FUNNEL_CASE: Final = 1 - DECISION_SHARES["ingen_videre"]  # 0.50
# new children who get a boernefaglig undersoegelse other than with an acute measure
_INVESTIGATED: Final = (
    DECISION_SHARES["boernefaglig_undersoegelse"]
    + DECISION_SHARES["afdaekning"] * AFDAEKNING_TO_INVESTIGATION
)
FUNNEL_INVESTIGATION: Final = _INVESTIGATED + DECISION_SHARES["akut_indsats"]  # 0.26
FUNNEL_MEASURE: Final = (
    _INVESTIGATED * INVESTIGATION_TO_MEASURE
    + DECISION_SHARES["afdaekning"] * AFDAEKNING_TO_EARLY_MEASURE
    + DECISION_SHARES["akut_indsats"]
)  # 0.287
FUNNEL_PLACEMENT: Final = (
    _INVESTIGATED * INVESTIGATION_TO_MEASURE * MEASURE_IS_PLACEMENT
    + DECISION_SHARES["akut_indsats"] * ACUTE_IS_PLACEMENT
)  # 0.050
FUNNEL_TOLERANCE: Final[dict[str, float]] = {
    "case": 0.04,
    "investigation": 0.04,
    "measure": 0.04,
    "placement": 0.02,
}

# --- deadlines kept or missed ------------------------------------------------------------------

RECEIPT_ON_TIME: Final = 0.90
CONVERSATION_ON_TIME: Final = 0.85
FOLLOW_UP_ON_TIME: Final = 0.85
SUPERVISION_ON_TIME: Final = 0.90
CHILD_PLAN_ON_TIME: Final = 0.80

# --- staff -------------------------------------------------------------------------------------

CASELOAD_TARGET: Final = 27  # what staffing is sized for
CASELOAD_HIRE_AT: Final = 32  # a team hires when the less loaded of two picked caseworkers has this many
CASELOAD_MEAN_RANGE: Final = (20.0, 35.0)  # the mean caseload at the end of the period lies in here
CASEWORKERS_PER_TEAM: Final = 11
CASEWORKER_CHANGE_MEAN_DAYS: Final = 450.0  # a case changes caseworker about every 15 months

# --- late and out-of-order lines --------------------------------------------------------------

LATE_SHARE_DEFAULT: Final = 0.03
LATE_SHARE_TOLERANCE: Final = 0.01  # absolute
