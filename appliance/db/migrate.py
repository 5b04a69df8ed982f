"""``appliance admin migrate``: bring a database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from appliance.db.engine import DatabaseError

__all__ = ["current_revision", "head_revision", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Upgrade to ``revision`` (head) in one transaction; return the revision now in place."""
    config = _config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"migrating {engine.url.render_as_string(hide_password=True)} failed: {exc}"
        ) from exc
    return head_revision() if revision == "head" else revision


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise DatabaseError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot open {engine.url.render_as_string(hide_password=True)}: {exc}"
        ) from exc
