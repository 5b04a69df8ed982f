"""/api/v1/auth: log in, log out, who am I, change password; /api/v1/users: accounts."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from appliance.admin.api._rows import from_row
from appliance.admin.deps import (
    COOKIE,
    CurrentAdmin,
    CurrentReader,
    DbSession,
    OwnCaller,
    OwnSession,
    Settings,
    client_of,
    reads_only,
    set_session_cookie,
)
from appliance.admin.services.accounts import (
    authenticate,
    change_password,
    create_user,
    end_session,
)
from appliance.db.models import Role, User

__all__ = ["router"]

router = APIRouter()


class LoginIn(BaseModel):
    """Credentials; ``totp`` only for accounts with a second factor."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=12)


class UserOut(BaseModel):
    """An account as the API shows it (never its password hash or TOTP secret)."""

    username: str
    role: Role
    totp_enabled: bool
    must_change_password: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        """From the table row."""
        return from_row(cls, user, totp_enabled=user.totp_secret is not None)


class SessionOut(BaseModel):
    """A session: send ``csrf_token`` as X-CSRF-Token on every change."""

    user: UserOut
    csrf_token: str
    expires_at: datetime


class PasswordIn(BaseModel):
    """A password change."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class UserIn(BaseModel):
    """A new account; without a password a one-time password is generated and shown once."""

    username: str = Field(min_length=2, max_length=64)
    role: Role
    password: str | None = Field(default=None, max_length=1024)


class UserCreated(BaseModel):
    """The new account and, when generated, its one-time password (shown once)."""

    user: UserOut
    one_time_password: str | None


@router.post("/auth/login", response_model=SessionOut, tags=["auth"])
def login(
    body: LoginIn, request: Request, response: Response, db: DbSession, settings: Settings
) -> SessionOut:
    """Log in; sets the session cookie (HttpOnly, SameSite=Strict, Secure under TLS)."""
    result = authenticate(db, settings, body.username, body.password, body.totp, client_of(request))
    set_session_cookie(response, result.token, settings)
    return SessionOut(
        user=UserOut.of(result.user), csrf_token=result.csrf_token, expires_at=result.expires_at
    )


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(
    web_session: OwnSession, request: Request, response: Response, db: DbSession
) -> Response:
    """End the session; the cookie is cleared and worthless from now on."""
    end_session(db, db.merge(web_session), client_of(request))
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=SessionOut, tags=["auth"])
@reads_only
async def me(web_session: OwnSession) -> SessionOut:
    """The caller and the session's CSRF token (``must_change_password`` says whether the
    one-time password must be changed before anything else)."""
    return SessionOut(
        user=UserOut.of(web_session.user),
        csrf_token=web_session.csrf_token,
        expires_at=web_session.expires_at,
    )


@router.post("/auth/password", status_code=204, tags=["auth"])
def password(body: PasswordIn, user: OwnCaller, request: Request, db: DbSession) -> Response:
    """Change the caller's password; every session of theirs ends (log in again).

    The one route, besides logging out, open to an account that still has its one-time
    password: every other answers 403 ``PasswordChangeRequiredError`` until this is done.
    """
    change_password(
        db, db.merge(user), body.current_password, body.new_password, client_of(request)
    )
    return Response(status_code=204)


@router.get("/users", response_model=list[UserOut], tags=["users"])
@reads_only
def list_users(_: CurrentReader, db: DbSession) -> list[UserOut]:
    """Every account."""
    return [UserOut.of(u) for u in db.scalars(select(User).order_by(User.username))]


@router.post("/users", response_model=UserCreated, status_code=201, tags=["users"])
def add_user(body: UserIn, admin: CurrentAdmin, db: DbSession) -> UserCreated:
    """Create an account (admins only)."""
    user, generated = create_user(
        db, body.username, body.role, password=body.password, actor=admin.username
    )
    return UserCreated(user=UserOut.of(user), one_time_password=generated)
