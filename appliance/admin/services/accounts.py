"""Accounts: creation, login with throttling and lock-out, sessions, password change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.admin.security import (
    hash_password,
    hash_token,
    new_password,
    new_token,
    verify_password,
    verify_totp,
)
from appliance.admin.settings import AdminSettings
from appliance.audit.record import record_event
from appliance.db.models import LoginFailure, Role, User, WebSession, utcnow
from appliance.errors import ApplianceError

__all__ = [
    "AccountError",
    "AuthFailedError",
    "LoginResult",
    "ThrottledError",
    "authenticate",
    "change_password",
    "create_user",
    "end_session",
    "resolve_session",
]

_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12


class AccountError(ApplianceError):
    """An account operation that cannot be done as asked."""


class AuthFailedError(AccountError):
    """Wrong user name, password or second factor (deliberately not saying which)."""


class ThrottledError(AccountError):
    """Too many failures: try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginResult:
    """A new session: the token goes in the cookie, only its hash is stored."""

    token: str
    csrf_token: str
    user: User
    expires_at: datetime


def create_user(
    session: Session,
    username: str,
    role: Role,
    *,
    password: str | None,
    actor: str,
    one_time: bool | None = None,
) -> tuple[User, str | None]:
    """Create an account; returns it and the generated one-time password, if one was made.

    A generated password is one-time: the account must change it before doing anything
    else. ``one_time=True`` says the same of a given password (the installer's, made
    outside); by default a given password is the account's own.
    """
    if not _USERNAME.match(username):
        raise AccountError(
            f"user name {username!r}: expected 2-64 characters, lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AccountError(f"user {username!r} already exists")
    generated = None
    if password is None:
        password = generated = new_password()
    _check_strength(password)
    user = User(
        username=username,
        role=role,
        password_hash=hash_password(password),
        must_change_password=generated is not None if one_time is None else one_time,
    )
    session.add(user)
    session.flush()
    record_event(
        session, actor=actor, action="user.create", target=username, details={"role": role.value}
    )
    return user, generated


def authenticate(
    session: Session,
    settings: AdminSettings,
    username: str,
    password: str,
    totp: str | None,
    client: str,
) -> LoginResult:
    """Check credentials, apply throttling and lock-out, and open a session.

    Every attempt is audited; a failure is committed before the error is raised, so the
    caller's rollback cannot lose it.
    """
    now = utcnow()
    window = now - timedelta(minutes=settings.throttle_window_minutes)
    recent = (
        session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(LoginFailure.client == client, LoginFailure.at >= window)
        )
        or 0
    )
    if recent >= settings.throttle_per_client:
        record_event(
            session, actor=username or "-", action="auth.login", outcome="throttled", client=client
        )
        session.commit()  # the refusal is recorded even though the caller sees an error
        raise ThrottledError(
            f"too many failed logins from {client}; try again later",
            retry_after=settings.throttle_window_minutes * 60,
        )

    user = session.scalar(select(User).where(User.username == username))
    if user is not None and user.locked_until is not None and user.locked_until > now:
        record_event(session, actor=username, action="auth.login", outcome="locked", client=client)
        session.commit()
        raise ThrottledError(
            f"account {username!r} is locked after repeated failures",
            retry_after=int((user.locked_until - now).total_seconds()) + 1,
        )

    ok = user is not None and verify_password(password, user.password_hash)
    if ok and user is not None and user.totp_secret is not None:
        ok = totp is not None and verify_totp(user.totp_secret, totp)
    if not ok or user is None:
        session.add(LoginFailure(username=username[:64], client=client[:64], at=now))
        if user is not None:
            user.failed_logins += 1
            if user.failed_logins >= settings.lockout_threshold:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
        record_event(
            session,
            actor=username[:64] or "-",
            action="auth.login",
            outcome="denied",
            client=client,
        )
        session.commit()
        raise AuthFailedError("wrong user name, password or one-time code")

    user.failed_logins = 0
    user.locked_until = None
    token, csrf = new_token(), new_token()
    expires = now + timedelta(minutes=settings.session_minutes)
    session.add(
        WebSession(
            token_hash=hash_token(token), csrf_token=csrf, user_id=user.id, expires_at=expires
        )
    )
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    record_event(session, actor=user.username, action="auth.login", client=client)
    return LoginResult(token, csrf, user, expires)


def resolve_session(session: Session, token: str | None) -> WebSession | None:
    """The live session for a cookie token, or None (unknown or expired)."""
    if not token:
        return None
    found = session.scalar(select(WebSession).where(WebSession.token_hash == hash_token(token)))
    if found is None or found.expires_at <= utcnow():
        return None
    return found


def end_session(session: Session, web_session: WebSession, client: str) -> None:
    """Log out: the session row is deleted, so the cookie is worthless from now on."""
    record_event(session, actor=web_session.user.username, action="auth.logout", client=client)
    session.delete(web_session)


def change_password(session: Session, user: User, current: str, new: str, client: str) -> None:
    """Change a password after checking the current one; other sessions are ended."""
    if not verify_password(current, user.password_hash):
        record_event(
            session, actor=user.username, action="user.password", outcome="denied", client=client
        )
        session.commit()
        raise AuthFailedError("the current password is wrong")
    if new == current:
        raise AccountError("the new password must differ from the current one")
    _check_strength(new)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    record_event(
        session, actor=user.username, action="user.password", target=user.username, client=client
    )


def _check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
