"""FastAPI dependencies in one place: the database session, the caller, their role.

A session whose account still has its one-time password (``must_change_password``) may
only change the password or log out: :data:`OwnSession` and :data:`OwnCaller` let it
through, for those routes; every other dependency refuses it with
:class:`PasswordChangeRequiredError` (403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from appliance.admin.services.accounts import resolve_session
from appliance.admin.settings import AdminSettings
from appliance.admin.storage_faults import storage_fault
from appliance.breakglass.service import Breakglass
from appliance.db.models import Role, User, WebSession
from appliance.errors import ApplianceError

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "PASSWORD_CHANGE_PAGE",
    "PASSWORD_CHANGE_ROUTE",
    "BreakglassDep",
    "Caller",
    "CommitFailedError",
    "CurrentAdmin",
    "CurrentAuditor",
    "CurrentReader",
    "CurrentSession",
    "DbSession",
    "ForbiddenError",
    "NotAuthenticatedError",
    "OwnCaller",
    "OwnSession",
    "PasswordChangeRequiredError",
    "RowId",
    "Settings",
    "client_of",
    "reads_only",
    "require_password_changed",
    "set_session_cookie",
]

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

COOKIE = "appliance_session"
CSRF_HEADER = "X-CSRF-Token"
#: Where an account with a one-time password changes it: the API route and the page.
PASSWORD_CHANGE_ROUTE = "/api/v1/auth/password"  # noqa: S105 (a route, not a password)
PASSWORD_CHANGE_PAGE = "/password"  # noqa: S105 (a page, not a password)
_SAFE = {"GET", "HEAD", "OPTIONS"}


class NotAuthenticatedError(ApplianceError):
    """No valid session: log in first."""


class ForbiddenError(ApplianceError):
    """The caller's role may not do this."""


class PasswordChangeRequiredError(ForbiddenError):
    """The account still has its one-time password: it must be changed before anything else."""


def set_session_cookie(response: Response, token: str, settings: AdminSettings) -> None:
    """The session cookie, the same for the API and the pages: HttpOnly, SameSite=Strict,
    Secure when the service terminates TLS, living as long as a session."""
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.tls,
        max_age=settings.session_minutes * 60,
        path="/",
    )


def require_password_changed(user: User) -> None:
    """Refuse an account that still has its one-time password (PasswordChangeRequiredError)."""
    if user.must_change_password:
        raise PasswordChangeRequiredError(
            f"{user.username} still has a one-time password: change it first with POST "
            f"{PASSWORD_CHANGE_ROUTE} (current_password, new_password); until then only "
            "that and logging out are allowed",
            hint=f"in a browser, the form at {PASSWORD_CHANGE_PAGE}",
        )


async def _settings(request: Request) -> AdminSettings:
    settings: AdminSettings = request.app.state.settings
    return settings


async def _breakglass(request: Request) -> Breakglass:
    breakglass: Breakglass = request.app.state.breakglass
    return breakglass


def reads_only(endpoint: _Endpoint) -> _Endpoint:
    """Mark a route that only reads the database: its session (the whole request's,
    authentication included) comes from the read-only engine, so it never waits behind a
    writer holding SQLite's write lock, and a write from it fails loudly."""
    endpoint.reads_only = True  # type: ignore[attr-defined]
    return endpoint


class CommitFailedError(ApplianceError):
    """The database refused to commit a change: nothing of the request was stored."""

    http_status = 503


async def _db(request: Request) -> AsyncIterator[Session]:
    """The request's session. It ends before the answer is sent (``scope="function"``
    below): a change is answered only once committed, and a commit that fails is the
    answer. A read-only transaction ends at once; a change's commit waits for the disk off
    the event loop."""
    reads = getattr(request.scope.get("endpoint"), "reads_only", False)
    factory: sessionmaker[Session] = (
        request.app.state.read_sessions if reads else request.app.state.sessions
    )
    session = factory()
    try:
        yield session
        try:
            session.commit() if reads else await run_in_threadpool(session.commit)
        except SQLAlchemyError as exc:
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            fault = storage_fault(exc)
            failed = CommitFailedError(
                f"the database did not store the change: {cause}",
                hint=fault.hint
                if fault
                else "nothing of it was stored; fix the database (disk space, say) and try again",
            )
            if fault:
                failed.http_status = fault.status
                request.app.state.storage_refusals.refused(fault)  # audited once space returns
            raise failed from exc
    except BaseException:
        session.rollback() if reads else await run_in_threadpool(session.rollback)
        raise
    finally:
        session.close()


Settings = Annotated[AdminSettings, Depends(_settings)]
#: The site's break-glass, built once by the app factory (appliance.admin.app).
BreakglassDep = Annotated[Breakglass, Depends(_breakglass)]
#: A row id in a path: positive and within a 32-bit integer, as every database stores it.
RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]
DbSession = Annotated[Session, Depends(_db, scope="function")]


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


def _session_and_user(db: Session, token: str | None) -> WebSession | None:
    """The cookie's session with its user loaded: the dependencies below read both on the
    event loop, where a lazy load would be a database call."""
    found = resolve_session(db, token)
    if found is not None:
        _ = found.user
    return found


async def _own_session(request: Request, db: DbSession) -> WebSession:
    # In the thread pool, never on the event loop: on SQLite the session's first statement
    # waits for the write lock, and the request holding it needs the loop to commit (the
    # two would wait on each other until the 30 s busy timeout, then this one fails).
    web_session = await run_in_threadpool(_session_and_user, db, request.cookies.get(COOKIE))
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    # A state-changing request must carry the session's CSRF token (header for the JSON
    # API, hidden field for forms): a cookie alone is not enough.
    if request.method not in _SAFE and await _csrf_value(request) != web_session.csrf_token:
        raise ForbiddenError("missing or wrong CSRF token for this session")
    return web_session


#: The caller's session, even one whose one-time password is still to be changed.
OwnSession = Annotated[WebSession, Depends(_own_session)]


async def _current_session(web_session: OwnSession) -> WebSession:
    require_password_changed(web_session.user)
    return web_session


CurrentSession = Annotated[WebSession, Depends(_current_session)]


async def _own_caller(web_session: OwnSession) -> User:
    return web_session.user


async def _caller(web_session: CurrentSession) -> User:
    return web_session.user


#: The caller, even one whose one-time password is still to be changed.
OwnCaller = Annotated[User, Depends(_own_caller)]
Caller = Annotated[User, Depends(_caller)]


async def _admin(user: Caller) -> User:
    if user.role != Role.admin:
        raise ForbiddenError(
            f"{user.username} is an {user.role.value}: only admins may change things"
        )
    return user


async def _reader(user: Caller) -> User:
    return user  # admins and auditors both read


async def _auditor(user: Caller) -> User:
    if user.role != Role.auditor:
        raise ForbiddenError(
            f"{user.username} is an {user.role.value}: only auditors export the audit log"
        )
    return user


CurrentAdmin = Annotated[User, Depends(_admin)]
CurrentReader = Annotated[User, Depends(_reader)]
CurrentAuditor = Annotated[User, Depends(_auditor)]
