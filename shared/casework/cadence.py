"""Follow-up cadence profiles (spec section 4, "Follow-up cadence"). Pure, no I/O.

The law (Barnets Lov § 95) sets the first follow-up at 3 months at the latest; after each follow-up
the next one is due at the EARLIEST of the municipality's profile date, the caseworker's `next_due`
and 6 months after this follow-up. Herning's differentiated cadence is the default profile.

A profile change applies from the moment it is made: a deadline takes the profile in force at the
instant of the event that starts it (`MeasureStarted` for `first_follow_up`, each `FollowUpHeld`
for `follow_up`, `UnderretningReceived` for `child_conversation`). Deadlines started before a change
keep the due date they were given.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any

from shared.casework.calendar import Period, add_months, as_utc
from shared.events.catalogue import CadenceProfileChanged
from shared.events.codes import FOSTER_FAMILY_TYPES
from shared.events.envelope import EventEnvelope

LEGAL_FIRST_FOLLOW_UP = Period(3, "months")
"""§ 95: the first follow-up at the latest 3 months after the measure started."""
LEGAL_CEILING = Period(6, "months")
"""The legacy SEL § 70 ceiling: never more than 6 months between follow-ups."""
FIRST_YEAR_MONTHS = 12

PERIOD_FIELDS: tuple[str, ...] = (
    "placement_first",
    "placement_first_year",
    "placement_after_first_year",
    "foster_family_after_first_year",
    "non_placement_first",
    "non_placement_then",
)


@dataclass(frozen=True, slots=True)
class CadenceProfile:
    """A municipality's follow-up cadence. `None` for a period = no municipal rule (the law alone).

    Defaults are Herning's (seed 000 section 4.2): placements 2 weeks after start, then every
    6 weeks during the first year; after the first year foster families (`plejefamilie`,
    `netvaerksanbringelse`) every 3 months and other placements every 6 weeks; non-placements
    4 weeks after start, then every 3 months.
    """

    placement_first: Period | None = Period(2, "weeks")
    placement_first_year: Period | None = Period(6, "weeks")
    placement_after_first_year: Period | None = Period(6, "weeks")
    foster_family_after_first_year: Period | None = Period(3, "months")
    non_placement_first: Period | None = Period(4, "weeks")
    non_placement_then: Period | None = Period(3, "months")
    child_conversation_days: int | None = None
    """Days from receipt to the mandatory child conversation; `None` = the service's default (7)."""
    foster_family_types: frozenset[str] = field(default=FOSTER_FAMILY_TYPES)

    # --- the rules -------------------------------------------------------------------------

    def is_foster_family(self, measure_type: str) -> bool:
        return measure_type in self.foster_family_types

    def first_profile_period(self, placement: bool) -> Period | None:
        return self.placement_first if placement else self.non_placement_first

    def then_profile_period(self, placement: bool, measure_type: str, first_year: bool) -> Period | None:
        if not placement:
            return self.non_placement_then
        if first_year:
            return self.placement_first_year
        if self.is_foster_family(measure_type):
            return self.foster_family_after_first_year
        return self.placement_after_first_year

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name in PERIOD_FIELDS:
            period: Period | None = getattr(self, name)
            doc[name] = None if period is None else period.to_json()
        doc["child_conversation_days"] = self.child_conversation_days
        doc["foster_family_types"] = sorted(self.foster_family_types)
        return doc

    @staticmethod
    def from_json(doc: Mapping[str, Any], base: CadenceProfile | None = None) -> CadenceProfile:
        """A profile from JSON; fields absent from `doc` keep `base`'s value (default: Herning's).

        Raises `ValueError` on unknown fields or bad values.
        """
        base = base or CadenceProfile()
        known = {f.name for f in fields(CadenceProfile)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for name in PERIOD_FIELDS:
            if name in doc:
                changes[name] = _period_from_json(name, doc[name])
        if "child_conversation_days" in doc:
            days = doc["child_conversation_days"]
            bad = isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 366
            if days is not None and bad:
                raise ValueError("child_conversation_days must be an integer from 0 to 366, or null")
            changes["child_conversation_days"] = days
        if "foster_family_types" in doc:
            types = doc["foster_family_types"]
            if not isinstance(types, list | tuple) or not all(isinstance(t, str) and t for t in types):
                raise ValueError("foster_family_types must be a list of measure types")
            changes["foster_family_types"] = frozenset(types)
        return replace(base, **changes)


HERNING = CadenceProfile()


def _period_from_json(name: str, value: Any) -> Period | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        amount, unit = value.get("amount"), value.get("unit")
        extra = set(value) - {"amount", "unit"}
        if extra:
            raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(extra))}")
    elif isinstance(value, str) and len(value.split()) == 2:
        raw_amount, unit = value.split()
        amount = int(raw_amount) if raw_amount.isdigit() else None
    else:
        raise ValueError(f"{name} must be {{'amount': N, 'unit': 'days'|'weeks'|'months'}} or null")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 120:
        raise ValueError(f"{name}.amount must be an integer from 1 to 120")
    if unit not in ("days", "weeks", "months"):
        raise ValueError(f"{name}.unit must be days, weeks or months")
    return Period(amount, unit)


def _earliest(candidates: Iterable[date | None]) -> date:
    best: date | None = None
    for d in candidates:
        if d is not None and (best is None or d < best):
            best = d
    if best is None:
        raise ValueError("no date to choose from")
    return best


def first_follow_up_due(profile: CadenceProfile, start: date, placement: bool) -> date:
    """The earlier of start + 3 months and the profile's first follow-up."""
    period = profile.first_profile_period(placement)
    return _earliest((LEGAL_FIRST_FOLLOW_UP.after(start), period.after(start) if period else None))


def in_first_year(measure_start: date, held: date) -> bool:
    """A follow-up is "during the first year" when held less than one year after the start."""
    return held < add_months(measure_start, FIRST_YEAR_MONTHS)


def next_follow_up_due(
    profile: CadenceProfile,
    *,
    measure_start: date,
    held: date,
    placement: bool,
    measure_type: str,
    next_due: date | None,
    exempt: bool,
) -> date:
    """The due date of the follow-up after one held on `held`.

    The earliest of the profile's date (skipped when the measure is exempt), the caseworker's
    `next_due` and `held` + 6 months.
    """
    profile_date: date | None = None
    if not exempt:
        period = profile.then_profile_period(placement, measure_type, in_first_year(measure_start, held))
        profile_date = period.after(held) if period else None
    return _earliest((LEGAL_CEILING.after(held), next_due, profile_date))


def exemption_applies(profile: CadenceProfile, placement: bool, measure_type: str) -> bool:
    """`stable_placement_exemption` counts only on a foster-family placement."""
    return placement and profile.is_foster_family(measure_type)


ProfileLookup = Callable[[str, datetime], CadenceProfile]
"""(municipality, instant) -> the profile in force then."""


def default_lookup(_municipality: str, _at: datetime) -> CadenceProfile:
    return HERNING


@dataclass(frozen=True, slots=True)
class ProfileChange:
    municipality: str
    changed_at: datetime
    changed_by: str
    profile: CadenceProfile
    caseload_target: int


def profile_change_of(env: EventEnvelope) -> ProfileChange:
    """The change a `CadenceProfileChanged` event makes, in force from its `occurred_at` (both
    projections read the event so). ValueError on a bad profile."""
    payload = env.payload
    if not isinstance(payload, CadenceProfileChanged):
        raise TypeError(f"not a CadenceProfileChanged: {env.type}")
    return ProfileChange(
        municipality=env.municipality,
        changed_at=as_utc(env.occurred_at),
        changed_by=payload.changed_by,
        profile=CadenceProfile.from_json(payload.profile),
        caseload_target=payload.caseload_target,
    )


class ProfileTimeline:
    """The changes of every municipality's profile and caseload target, answering "what was in
    force at instant t" (before the first change: Herning's profile and the default target, the
    municipality's own in `targets` where a deployment configures one)."""

    def __init__(
        self,
        changes: Iterable[ProfileChange],
        default_target: int = 25,
        targets: Mapping[str, int] | None = None,
    ) -> None:
        self.default_target = default_target
        self.targets: Mapping[str, int] = targets or {}
        by_muni: dict[str, list[ProfileChange]] = {}
        for change in changes:
            by_muni.setdefault(change.municipality, []).append(change)
        self._changes = {m: sorted(cs, key=lambda c: as_utc(c.changed_at)) for m, cs in by_muni.items()}
        self._keys = {m: [as_utc(c.changed_at) for c in cs] for m, cs in self._changes.items()}

    def change_at(self, municipality: str, at: datetime) -> ProfileChange | None:
        keys = self._keys.get(municipality)
        if not keys:
            return None
        index = bisect.bisect_right(keys, as_utc(at)) - 1
        return self._changes[municipality][index] if index >= 0 else None

    def profile(self, municipality: str, at: datetime) -> CadenceProfile:
        change = self.change_at(municipality, at)
        return change.profile if change else HERNING

    def target(self, municipality: str, at: datetime) -> int:
        change = self.change_at(municipality, at)
        return change.caseload_target if change else self.targets.get(municipality, self.default_target)

    def lookup(self) -> ProfileLookup:
        return self.profile
