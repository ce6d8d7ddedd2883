"""audit reads of child sets

The audit log goes from one row per (read, child) to one row per read naming a set of children
stored once (a worklist read names a thousand children, again and again the same ones); the old
rows are copied over, grouped by the request that wrote them, and `audit_log` becomes a view with
the same columns. See `shared.audit_migration`.

Revision ID: 5b7e1d3f9a42
Revises: 0e03ffdc5cf8
Create Date: 2026-12-04 15:20:00.000000

"""
from typing import Sequence, Union

from shared.audit_migration import downgrade_audit_to_rows, upgrade_audit_to_child_sets

# revision identifiers, used by Alembic.
revision: str = '5b7e1d3f9a42'
down_revision: Union[str, Sequence[str], None] = '0e03ffdc5cf8'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    upgrade_audit_to_child_sets()


def downgrade() -> None:
    """Downgrade schema."""
    downgrade_audit_to_rows()
