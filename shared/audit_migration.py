"""The Alembic steps that move a service's audit log from one row per (read, child) to one row per
read naming a stored set of children (`shared.audit`), and back.

Every service that keeps an audit log calls these from a revision of its own. The upgrade copies
the old entries over: the rows one request wrote (same instant, caller, role, municipality,
endpoint, service) become one read of the set of their children; the old table gives way to the
view `audit_log` with the same columns. The downgrade writes the rows back. The tables are spelled
out here, as they were at this revision, not imported from the application.
"""

from __future__ import annotations

import hashlib
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

VIEW_SQL = (
    "CREATE VIEW audit_log AS "
    "SELECT r.id AS id, r.at AS at, r.sub AS sub, r.role AS role, r.municipality AS municipality, "
    "m.child_id AS child_id, r.endpoint AS endpoint, r.service AS service "
    "FROM audit_reads r JOIN audit_child_set_members m ON m.set_id = r.child_set_id"
)
_READ_KEY = ("at", "municipality", "sub", "role", "endpoint", "service")  # the reads in time order
_BATCH = 5000


def _id_column() -> sa.Column[Any]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def _create_set_tables() -> None:
    op.create_table(
        "audit_child_sets",
        _id_column(),
        sa.Column("municipality", sa.String(length=3), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("municipality", "digest", name="uq_audit_child_sets_municipality_digest"),
    )
    op.create_table(
        "audit_child_set_members",
        sa.Column("set_id", sa.BigInteger(), nullable=False),
        sa.Column("child_id", sa.String(length=100), nullable=False),
        sa.Column("municipality", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "child_id"),
    )
    op.create_index(
        "ix_audit_child_set_members_child",
        "audit_child_set_members",
        ["municipality", "child_id", "set_id"],
        unique=False,
    )
    op.create_table(
        "audit_reads",
        _id_column(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sub", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("municipality", sa.String(length=3), nullable=False),
        sa.Column("endpoint", sa.String(length=300), nullable=False),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.Column("child_set_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_reads_child_set_at", "audit_reads", ["child_set_id", "at"], unique=False)


def _copy_rows_to_reads() -> None:
    """Each group of old rows of one request -> one read of the set of their children. The values
    go across as the driver hands them over (no re-encoding of the instants)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        f"SELECT {', '.join(_READ_KEY)}, child_id FROM audit_log ORDER BY {', '.join(_READ_KEY)}, id"
    ))
    new_set = sa.text(
        "INSERT INTO audit_child_sets (municipality, digest, size) VALUES (:m, :d, :n) RETURNING id"
    )
    new_member = sa.text(
        "INSERT INTO audit_child_set_members (set_id, child_id, municipality) VALUES (:s, :c, :m)"
    )
    new_read = sa.text(
        "INSERT INTO audit_reads (at, sub, role, municipality, endpoint, service, child_set_id) "
        "VALUES (:at, :sub, :role, :municipality, :endpoint, :service, :child_set_id)"
    )
    set_ids: dict[tuple[str, str], int] = {}
    reads: list[dict[str, Any]] = []
    for key, group in groupby(rows, key=lambda row: tuple(row[: len(_READ_KEY)])):
        read = dict(zip(_READ_KEY, key, strict=True))
        children = sorted({row[-1] for row in group})
        digest = hashlib.sha256("\n".join(children).encode()).hexdigest()
        municipality = read["municipality"]
        set_id = set_ids.get((municipality, digest))
        if set_id is None:
            params = {"m": municipality, "d": digest, "n": len(children)}
            set_id = int(bind.execute(new_set, params).scalar_one())
            set_ids[(municipality, digest)] = set_id
            bind.execute(new_member, [{"s": set_id, "c": c, "m": municipality} for c in children])
        reads.append({**read, "child_set_id": set_id})
        if len(reads) >= _BATCH:
            bind.execute(new_read, reads)
            reads = []
    if reads:
        bind.execute(new_read, reads)


def upgrade_audit_to_child_sets() -> None:
    """From `audit_log` rows to reads of child sets (and the view `audit_log`)."""
    _create_set_tables()
    _copy_rows_to_reads()
    op.drop_index("ix_audit_log_municipality_child", table_name="audit_log")
    op.drop_table("audit_log")
    op.execute(VIEW_SQL)


def downgrade_audit_to_rows() -> None:
    """Back to one `audit_log` row per (read, child)."""
    op.execute("DROP VIEW audit_log")
    op.create_table(
        "audit_log",
        _id_column(),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sub", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("municipality", sa.String(length=3), nullable=False),
        sa.Column("child_id", sa.String(length=100), nullable=False),
        sa.Column("endpoint", sa.String(length=300), nullable=False),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_audit_log_municipality_child", "audit_log", ["municipality", "child_id", "at"], unique=False
    )
    op.execute(
        "INSERT INTO audit_log (at, sub, role, municipality, child_id, endpoint, service) "
        "SELECT r.at, r.sub, r.role, r.municipality, m.child_id, r.endpoint, r.service "
        "FROM audit_reads r JOIN audit_child_set_members m ON m.set_id = r.child_set_id "
        "ORDER BY r.id, m.child_id"
    )
    op.drop_index("ix_audit_reads_child_set_at", table_name="audit_reads")
    op.drop_table("audit_reads")
    op.drop_index("ix_audit_child_set_members_child", table_name="audit_child_set_members")
    op.drop_table("audit_child_set_members")
    op.drop_table("audit_child_sets")
