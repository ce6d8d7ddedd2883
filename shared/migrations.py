"""Alembic, driven from code: each service has its own script folder and version table.

`python -m services.<svc> migrate` calls `upgrade_to_head`; compose runs it as a prestart step.
Nothing migrates at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, pool

from shared.db import make_engine


def alembic_config(url: str, script_location: Path, version_table: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["version_table"] = version_table
    return cfg


def upgrade_to_head(url: str, script_location: Path, version_table: str) -> None:
    command.upgrade(alembic_config(url, script_location, version_table), "head")


def is_at_head(engine: Engine, script_location: Path, version_table: str) -> bool:
    """True when the database's revision is the newest script (readiness check)."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url), script_location, version_table))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn, opts={"version_table": version_table}).get_current_heads()
    return set(current) == set(script.get_heads())


def run_env(target_metadata: Sequence[MetaData], version_table: str) -> None:
    """The body of every service's migrations/env.py (online mode only)."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    version_table = config.attributes.get("version_table", version_table)
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=list(target_metadata),
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def service_script_location(service: str) -> Path:
    return Path(__file__).resolve().parents[1] / "services" / service / "migrations"


def migrate_service(service: str, url: str) -> None:
    """`python -m services.<service> migrate`: bring the service's own database to head."""
    upgrade_to_head(url, service_script_location(service), f"alembic_version_{service}")


def service_at_head(service: str, engine: Engine) -> bool:
    return is_at_head(engine, service_script_location(service), f"alembic_version_{service}")


def autogenerate(service: str, url: str, message: str) -> None:
    """Write a new revision from the difference between the models and a database at head."""
    cfg = alembic_config(url, service_script_location(service), f"alembic_version_{service}")
    command.upgrade(cfg, "head")
    command.revision(cfg, message=message, autogenerate=True)
