"""FastAPI dependencies in one place: the database session, the caller, their role."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.services.accounts import resolve_session
from appliance.admin.settings import AdminSettings
from appliance.db.models import Role, User, WebSession
from appliance.errors import ApplianceError

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "Caller",
    "CurrentAdmin",
    "CurrentAuditor",
    "CurrentReader",
    "CurrentSession",
    "DbSession",
    "ForbiddenError",
    "NotAuthenticatedError",
    "RowId",
    "Settings",
    "client_of",
]

COOKIE = "appliance_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = {"GET", "HEAD", "OPTIONS"}


class NotAuthenticatedError(ApplianceError):
    """No valid session: log in first."""


class ForbiddenError(ApplianceError):
    """The caller's role may not do this."""


def _settings(request: Request) -> AdminSettings:
    settings: AdminSettings = request.app.state.settings
    return settings


def _db(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


Settings = Annotated[AdminSettings, Depends(_settings)]
#: A row id in a path: positive and within a 32-bit integer, as every database stores it.
RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]
DbSession = Annotated[Session, Depends(_db)]


def client_of(request: Request) -> str:
    """The caller's address, for throttling and the audit log."""
    return request.client.host if request.client else "unknown"


async def _csrf_value(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def _current_session(request: Request, db: DbSession) -> WebSession:
    web_session = resolve_session(db, request.cookies.get(COOKIE))
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    # A state-changing request must carry the session's CSRF token (header for the JSON
    # API, hidden field for forms): a cookie alone is not enough.
    if request.method not in _SAFE and await _csrf_value(request) != web_session.csrf_token:
        raise ForbiddenError("missing or wrong CSRF token for this session")
    return web_session


CurrentSession = Annotated[WebSession, Depends(_current_session)]


def _caller(web_session: CurrentSession) -> User:
    return web_session.user


Caller = Annotated[User, Depends(_caller)]


def _admin(user: Caller) -> User:
    if user.role != Role.admin:
        raise ForbiddenError(
            f"{user.username} is an {user.role.value}: only admins may change things"
        )
    return user


def _reader(user: Caller) -> User:
    return user  # admins and auditors both read


def _auditor(user: Caller) -> User:
    if user.role != Role.auditor:
        raise ForbiddenError(
            f"{user.username} is an {user.role.value}: only auditors export the audit log"
        )
    return user


CurrentAdmin = Annotated[User, Depends(_admin)]
CurrentReader = Annotated[User, Depends(_reader)]
CurrentAuditor = Annotated[User, Depends(_auditor)]
