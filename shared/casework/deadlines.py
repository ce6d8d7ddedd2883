"""Deadlines (frister) and their state at any moment (spec section 4). Pure, no I/O.

State of a deadline at the instant `t`:

- not listed (`None`) before the event that starts it (`t < starts_at`): at that moment nobody
  could know of it;
- `met_on_time` / `met_late` once it is met (`met_at <= t`), by comparing `met_at` with `due`;
- not listed (`None`) once its measure or case has ended (`ended_at <= t`) without it being met:
  an ended deadline is no longer anybody's work (documented rule; it is kept in the projection
  with its `ended_at`, and shown under `ended_deadlines` on the case);
- `overdue` when `due < t`;
- `due_soon` when `t <= due <= t + 7 days`;
- `upcoming` when `due > t + 7 days`.

A meeting event after the deadline ended does not meet it (the builder drops such a `met_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeVar

from shared.casework.calendar import as_utc

DeadlineId = Literal[
    "acute_assessment",
    "receipt",
    "child_conversation",
    "investigation",
    "first_follow_up",
    "follow_up",
    "supervision_visit",
    "child_plan",
]
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
DEADLINE_LABELS_DA: Final[dict[str, str]] = {
    "acute_assessment": "Vurdering inden 24 timer",
    "receipt": "Kvittering til fagperson",
    "child_conversation": "Børnesamtale",
    "investigation": "Børnefaglig undersøgelse",
    "first_follow_up": "Første opfølgning",
    "follow_up": "Opfølgning",
    "supervision_visit": "Tilsynsbesøg",
    "child_plan": "Barnets plan",
}

State = Literal["upcoming", "due_soon", "overdue", "met_on_time", "met_late"]
STATES: Final[tuple[str, ...]] = ("upcoming", "due_soon", "overdue", "met_on_time", "met_late")
OPEN_STATES: Final[frozenset[str]] = frozenset({"upcoming", "due_soon", "overdue"})
DUE_SOON_WINDOW: Final[timedelta] = timedelta(days=7)

_I = TypeVar("_I", datetime, str)


def state_of(t: _I, soon: _I, starts_at: _I, due: _I, met_at: _I | None, ended_at: _I | None) -> State | None:
    """The state rule of the module doc on bare values (`Deadline.state_at` uses it; the worklist
    query uses it on database rows): `t` the moment, `soon` = `t + DUE_SOON_WINDOW`. The instants
    may be aware datetimes or any other values that compare in time order (all of the same kind)."""
    if t < starts_at:
        return None
    if met_at is not None and met_at <= t and (ended_at is None or met_at <= ended_at):
        return "met_on_time" if met_at <= due else "met_late"
    if ended_at is not None and ended_at <= t:
        return None
    if due < t:
        return "overdue"
    if due <= soon:
        return "due_soon"
    return "upcoming"


@dataclass(frozen=True, slots=True)
class Deadline:
    """One deadline. All instants are aware datetimes in UTC."""

    deadline: str
    child_id: str
    starts_at: datetime
    due: datetime
    case_id: str | None = None
    underretning_id: str | None = None
    measure_id: str | None = None
    seq: int = 0
    """Which one of a repeating deadline (the k-th follow-up, visit or investigation), from 0."""
    team_id: str | None = None
    """The responsible team: the case's team, else the underretning's."""
    met_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (
            self.deadline,
            self.case_id or "",
            self.underretning_id or "",
            self.measure_id or "",
            self.seq,
        )

    def _met_at_effective(self) -> datetime | None:
        if self.met_at is None:
            return None
        if self.ended_at is not None and self.met_at > self.ended_at:
            return None
        return self.met_at

    def state_at(self, t: datetime) -> State | None:
        """The state at `t`, or `None` when the deadline is not listed at `t` (see module doc)."""
        t = as_utc(t)
        return state_of(t, t + DUE_SOON_WINDOW, self.starts_at, self.due, self.met_at, self.ended_at)

    def overdue_span(self) -> tuple[datetime, datetime | None] | None:
        """When the deadline is overdue, as `(since, until)` (`until` None: still open), or `None`
        when it never is.

        `state_at(t) == "overdue"` for every `t` with `since < t < until`, and for no `t` outside
        `[since, until)`: `since` is the later of `due` and `starts_at`, `until` the earlier of the
        meeting and the end. So the state just before any instant `p` (the end of a period) is
        `overdue` exactly when `since < p <= until` (or `until` is None).
        """
        met = self._met_at_effective()
        if met is None:
            until = self.ended_at
        elif self.ended_at is None:
            until = met
        else:
            until = min(met, self.ended_at)
        since = self.due if self.due >= self.starts_at else self.starts_at
        if until is not None and until <= since:
            return None
        return since, until

    def ended_unmet_at(self, t: datetime) -> bool:
        """Whether at `t` the deadline has ended with its measure or case without being met."""
        t = as_utc(t)
        if t < self.starts_at or self.ended_at is None or self.ended_at > t:
            return False
        met = self._met_at_effective()
        return met is None or met > t


_new = object.__new__
(
    _set_deadline, _set_child_id, _set_starts_at, _set_due, _set_case_id, _set_underretning_id,
    _set_measure_id, _set_seq, _set_team_id, _set_met_at, _set_ended_at,
) = (Deadline.__dict__[name].__set__ for name in Deadline.__dataclass_fields__)  # fmt: skip


def new_deadline(
    deadline: str,
    child_id: str,
    starts_at: datetime,
    due: datetime,
    case_id: str | None,
    underretning_id: str | None,
    measure_id: str | None,
    seq: int,
    team_id: str | None,
    met_at: datetime | None,
    ended_at: datetime | None,
) -> Deadline:
    """`Deadline(...)` with every field given in order, built faster (a rebuild makes millions): the
    frozen dataclass's `__init__` sets each field through `object.__setattr__`, this sets the slots
    directly. The result is the same in every respect."""
    d: Deadline = _new(Deadline)
    _set_deadline(d, deadline)
    _set_child_id(d, child_id)
    _set_starts_at(d, starts_at)
    _set_due(d, due)
    _set_case_id(d, case_id)
    _set_underretning_id(d, underretning_id)
    _set_measure_id(d, measure_id)
    _set_seq(d, seq)
    _set_team_id(d, team_id)
    _set_met_at(d, met_at)
    _set_ended_at(d, ended_at)
    return d
