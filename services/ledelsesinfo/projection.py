"""The ledelsesinfo projection: keeps the period buckets of every scope up to date, incrementally.

apply(): store the new events; for each child touched in the batch, load the set of all its events,
recompute its contributions (domain/contributions.py, over the shared engine's `project_child`), and
add (new - old) to the buckets. Because a child's contributions depend only on the set of its events,
and the buckets are integer sums of the children's contributions, the end state is the same whatever
the arrival order or the batching; a late record (a DUBU backfill) simply changes the child's
contributions in the past periods it touches.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.contributions import POINT, Bucket, Contributions, child_contributions
from services.ledelsesinfo.domain.fenwick import update_nodes
from shared.casework.cadence import ProfileLookup, default_lookup
from shared.casework.rules import DefaultRules, RuleSettings
from shared.events.envelope import EventEnvelope

T = TypeVar("T")
RowKey = tuple[str, str, str, str, int, str, str]  # municipality, kind, team, caseworker, pos, bucket, code
CHUNK = 500


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def encode_contributions(c: Contributions) -> str:
    return json.dumps(sorted([*k, v] for k, v in c.items()), separators=(",", ":"))


def decode_contributions(text: str) -> Contributions:
    out: Contributions = {}
    for mode, kind, period, team, cw, bucket, key, value in json.loads(text):
        out[(mode, kind, int(period), team, cw, bucket, key)] = int(value)
    return out


def upsert_add(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE SET value = value + excluded.value."""
    if not rows:
        return
    pk = [c.name for c in table.primary_key.columns]
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table)
        add = {"value": table.c.value + pg.excluded.value}
        stmt: Any = pg.on_conflict_do_update(index_elements=pk, set_=add)
    else:
        lt = sqlite.insert(table)
        stmt = lt.on_conflict_do_update(index_elements=pk, set_={"value": table.c.value + lt.excluded.value})
    conn.execute(stmt, rows)


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    conn.execute(stmt.on_conflict_do_nothing(), rows)


class LedelsesinfoProjection:
    """Implements shared.messaging.projection.Projection."""

    name = "ledelsesinfo"
    metadata = tables.metadata

    def __init__(
        self, rules: RuleSettings | None = None, profile_lookup: ProfileLookup = default_lookup
    ) -> None:
        """`rules` and `profile_lookup` are those of the shared case-work engine (default: 7 days to
        the child conversation, Herning's cadence profile), as the follow-up worklists use them."""
        self.rules: RuleSettings = rules if rules is not None else DefaultRules()
        self.profile_lookup = profile_lookup

    # --- Projection protocol ---------------------------------------------------------------

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        insert_ignore(conn, tables.events, [_event_row(e) for e in events])
        streams = sorted({e.stream_id for e in events})
        in_batch = {e.event_id: e for e in events}
        point_delta: defaultdict[RowKey, int] = defaultdict(int)
        state_delta: defaultdict[RowKey, int] = defaultdict(int)
        child_rows: list[tuple[str, str, str, bool]] = []
        for chunk in _chunks(streams):
            by_stream = self._load_events(conn, chunk, in_batch)
            old = {
                r.stream_id: r.contributions
                for r in conn.execute(
                    select(tables.children.c.stream_id, tables.children.c.contributions)
                    .where(tables.children.c.stream_id.in_(chunk))
                )
            }
            for stream in chunk:
                envs = by_stream.get(stream, [])
                if not envs:
                    continue
                municipality = envs[0].municipality
                new = child_contributions(envs, self.profile_lookup, self.rules)
                before = decode_contributions(old[stream]) if stream in old else {}
                self._diff(municipality, before, new, point_delta, state_delta)
                child_rows.append((stream, municipality, encode_contributions(new), stream in old))
        self._write_buckets(conn, tables.points, "period", point_delta)
        self._write_buckets(conn, tables.state, "node", state_delta)
        self._write_children(conn, child_rows)

    def rebuild_children(self, conn: Connection, children: Sequence[Sequence[EventEnvelope]]) -> None:
        """Bulk replay (shared.messaging.runner.bulk_replay) into a reset projection: each entry is
        the complete set of one child's events, none of them stored yet (no child row either).
        Stores the events, computes each child's contributions once and adds them to the buckets:
        the same tables as `apply`."""
        children = [envs for envs in children if envs]
        if not children:
            return
        insert_ignore(conn, tables.events, [_event_row(e) for envs in children for e in envs])
        point_delta: defaultdict[RowKey, int] = defaultdict(int)
        state_delta: defaultdict[RowKey, int] = defaultdict(int)
        child_rows: list[tuple[str, str, str, bool]] = []
        for envs in sorted(children, key=lambda envs: envs[0].stream_id):
            municipality = envs[0].municipality
            new = child_contributions(envs, self.profile_lookup, self.rules)
            self._diff(municipality, {}, new, point_delta, state_delta)
            child_rows.append((envs[0].stream_id, municipality, encode_contributions(new), False))
        self._write_buckets(conn, tables.points, "period", point_delta)
        self._write_buckets(conn, tables.state, "node", state_delta)
        self._write_children(conn, child_rows)

    def reset(self, conn: Connection) -> None:
        for table in tables.DERIVED:
            conn.execute(delete(table))

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _load_events(conn: Connection, streams: Sequence[str], in_batch: dict[str, EventEnvelope]
                     ) -> dict[str, list[EventEnvelope]]:
        out: dict[str, list[EventEnvelope]] = defaultdict(list)
        rows = conn.execute(
            select(tables.events.c.event_id, tables.events.c.stream_id, tables.events.c.doc)
            .where(tables.events.c.stream_id.in_(streams))
        )
        for r in rows:
            env = in_batch.get(r.event_id) or EventEnvelope.from_wire(json.loads(r.doc))
            out[r.stream_id].append(env)
        return out

    @staticmethod
    def _diff(municipality: str, before: Contributions, after: Contributions,
              point_delta: defaultdict[RowKey, int], state_delta: defaultdict[RowKey, int]) -> None:
        if before:
            changes: dict[Bucket, int] = {}
            for k in before.keys() | after.keys():
                d = after.get(k, 0) - before.get(k, 0)
                if d:
                    changes[k] = d
        else:
            changes = after
        for (mode, kind, period, team, cw, bucket, key), d in changes.items():
            if not d:
                continue
            if mode == POINT:
                point_delta[(municipality, kind, team, cw, period, bucket, key)] += d
            else:
                for node in _update_nodes(kind, period):
                    state_delta[(municipality, kind, team, cw, node, bucket, key)] += d

    @staticmethod
    def _write_buckets(conn: Connection, table: Table, position: str, delta: dict[RowKey, int]) -> None:
        """Add the deltas (one executemany straight to the driver: these are the bulk of the writes),
        then remove the rows that came down to zero, so equal sums give equal tables (a Fenwick node
        can be negative, so any touched row may have reached zero)."""
        rows = [(*key, v) for key, v in sorted(delta.items()) if v]
        if not rows:
            return
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        cols = ["municipality", "kind", "team_id", "caseworker_id", position, "bucket", "code"]
        name = table.name
        upsert = (
            f"INSERT INTO {name} ({', '.join(cols)}, value) VALUES ({', '.join([mark] * 8)}) "
            f"ON CONFLICT ({', '.join(cols)}) DO UPDATE SET value = {name}.value + excluded.value"
        )
        zero = (
            f"DELETE FROM {name} WHERE "
            + " AND ".join(f"{c} = {mark}" for c in cols)
            + " AND value = 0"
        )
        for chunk in _chunks(rows, 20000):
            conn.exec_driver_sql(upsert, list(chunk))
        for chunk in _chunks(rows, 20000):
            conn.exec_driver_sql(zero, [r[:7] for r in chunk])

    @staticmethod
    def _write_children(conn: Connection, rows: Iterable[tuple[str, str, str, bool]]) -> None:
        rows = list(rows)
        updates = [{"b_stream": s, "b_contributions": c} for s, _m, c, existed in rows if existed]
        inserts = [{"stream_id": s, "municipality": m, "contributions": c} for s, m, c, existed in rows
                   if not existed]
        if updates:
            conn.execute(
                tables.children.update()
                .where(tables.children.c.stream_id == _bind("stream"))
                .values(contributions=_bind("contributions")),
                updates,
            )
        if inserts:
            conn.execute(tables.children.insert(), inserts)


_update_nodes = lru_cache(maxsize=65536)(update_nodes)


def _event_row(e: EventEnvelope) -> dict[str, Any]:
    return {"event_id": e.event_id, "stream_id": e.stream_id, "municipality": e.municipality,
            "doc": json.dumps(e.to_wire(), separators=(",", ":"), ensure_ascii=False)}


def _bind(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(f"b_{name}")
