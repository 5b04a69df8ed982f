"""Engines and sessions: SQLite by default (WAL, foreign keys, full sync), PostgreSQL too."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from appliance.errors import ApplianceError

_log = logging.getLogger("appliance.db")

__all__ = [
    "DatabaseError",
    "default_url",
    "has_written",
    "make_engine",
    "open_session",
    "session_scope",
]


class DatabaseError(ApplianceError):
    """The database cannot be opened or used as configured."""


def default_url(data_dir: Path) -> str:
    """The SQLite file under the service's data directory."""
    return f"sqlite:///{data_dir / 'admin.db'}"


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and synchronous=FULL.

    ``read_only`` engines serve requests that only read: on SQLite their transactions
    begin DEFERRED (a WAL reader sees the last commit and never waits for the write lock,
    so a read does not queue behind the audit writer) and the connection refuses writes
    (``query_only``); on PostgreSQL their transactions are READ ONLY.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"{url!r} is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if read_only:
            event.listen(engine, "connect", _sqlite_query_only)
            event.listen(engine, "begin", _sqlite_begin_deferred)
        else:
            event.listen(engine, "begin", _sqlite_begin_immediate)
            for ends in ("commit", "rollback"):
                event.listen(engine, ends, _sqlite_lock_released)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = {"postgresql_readonly": True} if read_only else {}
        return create_engine(parsed, pool_pre_ping=True, execution_options=options)
    raise DatabaseError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://"
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Transactions are begun by the listener below, not by the driver.
    connection.isolation_level = None


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take the write lock when a transaction starts: two processes appending to the audit
    # log then queue for it instead of one failing on a stale read snapshot (WAL).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    connection.info[_BEGAN] = (time.monotonic(), _where_begun())


#: A write transaction held longer than this is logged with where it began: on SQLite it
#: holds the one write lock, and every other writer waits (30 s, then fails).
SLOW_WRITE_S = 5.0
_BEGAN = "appliance.began"
#: The appliance package's folder: frames from there name where a transaction began.
_PACKAGE = str(Path(__file__).resolve().parents[1]) + "/"


def _where_begun() -> str:
    """The appliance's own frames of the current stack, innermost last (cheap: no source)."""
    frames: list[str] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < 8:
        name = frame.f_code.co_filename
        if name.startswith(_PACKAGE) and name != __file__:
            frames.append(f"{name.removeprefix(_PACKAGE)}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(frames) or "outside the appliance's code"


def _sqlite_lock_released(connection: Any) -> None:
    began = connection.info.pop(_BEGAN, None)
    if began is None:
        return
    held = time.monotonic() - began[0]
    if held > SLOW_WRITE_S:
        _log.warning(
            "a write transaction held the database %.1f s (begun at %s): other writers waited",
            held,
            began[1],
        )


def _sqlite_query_only(connection: Any, _record: Any) -> None:
    connection.execute("PRAGMA query_only=ON")


def _sqlite_begin_deferred(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def open_session(url: str) -> Iterator[Session]:
    """A session on ``url`` for command-line tools: any database failure becomes one
    DatabaseError that says what to do (a missing table means the database was never
    migrated)."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield session
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        missing_table = "no such table" in cause or "does not exist" in cause
        raise DatabaseError(
            f"the database {where} failed: {cause}",
            hint="run `appliance admin migrate` on this database first"
            if missing_table
            else "check that the database is running and the URL is right",
        ) from exc
    finally:
        engine.dispose()


# Whether a session's open transaction has written anything: a caller about to wait on
# something slow may end a transaction that only read (appliance.admin.services.
# controller_steps), never one that wrote.
_WROTE = "appliance.wrote"


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def has_written(session: Session) -> bool:
    """True when ``session`` has changes pending or written in its open transaction."""
    return bool(session.new or session.dirty or session.deleted or session.info.get(_WROTE))
