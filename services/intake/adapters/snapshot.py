"""What a chunk of records sees of the event log and intake's lookup tables (bulk import).

`ChunkView.load` reads, with a few IN-queries, everything the chunk's records can touch: the record
ids already taken, the cases, measures and underretninger they name, the other cases of each child
a `CaseOpened` names, the versions of every stream they may append to, and which children the vault
knows. The records are then decided one after another in memory; `accept` applies each accepted
record to the view exactly as `repository.apply` changes the tables, so every record sees the
effects of the ones before it as the database would show them (timestamps as stored: UTC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC

from sqlalchemy import Connection

from services.intake.adapters import repository as repo
from services.intake.adapters.vault import Vault
from services.intake.domain.decide import Accept, CaseInfo, MeasureInfo, State, UnderretningInfo
from services.intake.domain.records import (
    CaseClosedRecord,
    CaseOpenedRecord,
    CaseworkerAssignedRecord,
    MeasureEndedRecord,
    MeasureStartedRecord,
    RecordBase,
    UnderretningReceivedRecord,
)
from shared.events.catalogue import ChildRef
from shared.events.codes import MeasureType
from shared.events.envelope import stream_id_for_child
from shared.eventstore.store import EventStore

Key = tuple[str, str]  # (municipality, id)


@dataclass(frozen=True, slots=True)
class Seen:
    """A record id that is taken: in the log (`position`), or by an earlier record of the chunk
    (`line`: its index in the chunk; its position is known once the chunk is written)."""

    content_hash: str
    position: int | None = None
    line: int | None = None


class ChunkView:
    def __init__(self) -> None:
        self.records: dict[Key, Seen] = {}
        self.cases: dict[Key, CaseInfo] = {}
        self.measures: dict[Key, MeasureInfo] = {}
        self.underretninger: dict[Key, UnderretningInfo] = {}
        self.child_cases: dict[Key, list[str]] = {}  # loaded only for the children of CaseOpened records
        self.versions: dict[str, int] = {}
        self.known_children: set[Key] = set()

    # --- reading once ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        conn: Connection,
        store: EventStore,
        items: Sequence[tuple[RecordBase, ChildRef | None]],
    ) -> ChunkView:
        view = cls()
        by_municipality: dict[str, list[tuple[RecordBase, ChildRef | None]]] = {}
        for record, child in items:
            by_municipality.setdefault(record.municipality, []).append((record, child))
        streams: set[str] = set()
        for m, group in by_municipality.items():
            record_ids: list[str] = []
            case_ids: set[str] = set()
            measure_ids: set[str] = set()
            underretning_ids: set[str] = set()
            children: set[str] = set()
            opening_children: set[str] = set()
            for record, child in group:
                record_ids.append(record.record_id)
                case_id, measure_id, underretning_id = repo.refs(record)
                if case_id is not None:
                    case_ids.add(case_id)
                if measure_id is not None:
                    measure_ids.add(measure_id)
                if underretning_id is not None:
                    underretning_ids.add(underretning_id)
                if child is not None:
                    children.add(child.child_id)
                    if isinstance(record, CaseOpenedRecord):
                        opening_children.add(child.child_id)
            for record_id, stored in store.find_records(conn, m, record_ids).items():
                view.records[(m, record_id)] = Seen(stored.content_hash, position=stored.position)
            for case_id, case in repo.cases_by_id(conn, m, case_ids).items():
                view.cases[(m, case_id)] = case
            for measure_id, measure in repo.measures_by_id(conn, m, measure_ids).items():
                view.measures[(m, measure_id)] = measure
            for underretning_id, u in repo.underretninger_by_id(conn, m, underretning_ids).items():
                view.underretninger[(m, underretning_id)] = u
            for child_id in opening_children:
                view.child_cases[(m, child_id)] = []
            for case in repo.cases_of_children(conn, m, opening_children):
                view.cases[(m, case.case_id)] = case
                view.child_cases[(m, case.child_id)].append(case.case_id)
            owners = children | {c.child_id for (cm, _), c in view.cases.items() if cm == m}
            owners |= {u.child_id for (um, _), u in view.underretninger.items() if um == m}
            streams.update(stream_id_for_child(m, child_id) for child_id in owners)
            view.known_children.update((m, child_id) for child_id in Vault.known(conn, m, children))
        view.versions = store.stream_versions(conn, streams)
        return view

    # --- what one record sees ----------------------------------------------------------------------

    def seen(self, municipality: str, record_id: str) -> Seen | None:
        return self.records.get((municipality, record_id))

    def situation(
        self,
        municipality: str,
        record: RecordBase,
        child: ChildRef | None,
        measure_types: Mapping[str, MeasureType],
    ) -> tuple[str | None, State]:
        """What `write` reads for the record, on this view: the child whose stream the record's event
        goes to (as `repository.stream_child`) and the state to decide on (`repository.load_state`)."""
        m = municipality
        case_id, measure_id, underretning_id = repo.refs(record)
        case = self.cases.get((m, case_id)) if case_id else None
        u = self.underretninger.get((m, underretning_id)) if underretning_id else None
        child_cases: tuple[CaseInfo, ...] = ()
        if child is not None and isinstance(record, CaseOpenedRecord):
            ids = self.child_cases[(m, child.child_id)]
            child_cases = tuple(
                sorted((self.cases[(m, c)] for c in ids), key=lambda c: (c.opened_at, c.case_id))
            )
        state = State(
            child=child,
            case=case,
            measure=self.measures.get((m, measure_id)) if measure_id else None,
            underretning=u,
            child_cases=child_cases,
            measure_types=measure_types,
        )
        return repo.stream_child_of(record, child, state), state

    def version(self, stream_id: str) -> int | None:
        return self.versions.get(stream_id)

    def child_known(self, municipality: str, child_id: str) -> bool:
        return (municipality, child_id) in self.known_children

    # --- after a record was accepted -----------------------------------------------------------------

    def accept(
        self,
        municipality: str,
        record: RecordBase,
        decision: Accept,
        *,
        line: int,
        content_hash: str,
        stream_id: str,
        version: int,
        new_child: bool,
    ) -> None:
        """Apply an accepted record (its event at `version` of `stream_id`) to the view."""
        m = municipality
        at = record.occurred_at.astimezone(UTC)  # as stored and read back
        self.records[(m, record.record_id)] = Seen(content_hash, line=line)
        self.versions[stream_id] = version
        if new_child:
            self.known_children.add((m, decision.child_id))
        match record:
            case UnderretningReceivedRecord(data=d):
                self.underretninger[(m, d.underretning_id)] = UnderretningInfo(
                    underretning_id=d.underretning_id,
                    child_id=decision.child_id,
                    team_id=d.team_id,
                    received_at=at,
                    case_id=d.case_id,
                )
            case CaseOpenedRecord(data=d):
                self.cases[(m, d.case_id)] = CaseInfo(
                    case_id=d.case_id, child_id=decision.child_id, team_id=d.team_id, opened_at=at
                )
                self.child_cases.setdefault((m, decision.child_id), []).append(d.case_id)
                if d.underretning_id is not None:
                    u = self.underretninger.get((m, d.underretning_id))
                    if u is not None and u.case_id is None:
                        self.underretninger[(m, d.underretning_id)] = replace(u, case_id=d.case_id)
            case CaseworkerAssignedRecord(data=d):
                case = self.cases.get((m, d.case_id))
                if case is not None and (case.assigned_at is None or case.assigned_at <= at):
                    self.cases[(m, d.case_id)] = replace(case, caseworker_id=d.caseworker_id, assigned_at=at)
            case MeasureStartedRecord(data=d):
                self.measures[(m, d.measure_id)] = MeasureInfo(
                    measure_id=d.measure_id, case_id=d.case_id, measure_type=d.measure_type, started_at=at
                )
            case MeasureEndedRecord(data=d):
                measure = self.measures.get((m, d.measure_id))
                if measure is not None:
                    self.measures[(m, d.measure_id)] = replace(measure, ended_at=at)
            case CaseClosedRecord(data=d):
                case = self.cases.get((m, d.case_id))
                if case is not None:
                    self.cases[(m, d.case_id)] = replace(case, closed_at=at)
            case _:
                pass
