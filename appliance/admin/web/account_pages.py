"""The pages of one's own account: log in, log out, change the password.

The login form uses a double-submit token (a cookie and a field that must match), since
no session exists yet. An account that still has its one-time password is sent to the
password form from every other page, and may do nothing else but log out.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from appliance.admin.deps import (
    COOKIE,
    PASSWORD_CHANGE_PAGE,
    DbSession,
    NotAuthenticatedError,
    Settings,
    client_of,
    set_session_cookie,
)
from appliance.admin.services.accounts import (
    AccountError,
    AuthFailedError,
    ThrottledError,
    authenticate,
    change_password,
    end_session,
)
from appliance.admin.web.common import check_csrf, message_of, own_session, render, status_of
from appliance.db.models import User

__all__ = ["LOGIN_CSRF", "router"]

router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "appliance_login_csrf"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, changed: bool = False) -> HTMLResponse:
    """The login form (``changed``: say that the password was just changed)."""
    token = secrets.token_urlsafe(32)
    notice = "Password changed: log in with the new one." if changed else None
    response = render(request, "login.html", login_csrf=token, user=None, notice=notice)
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login", response_model=None)
def login_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)],
    totp: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Log in from the form; back to the form with the reason on failure.

    An account with a one-time password goes to the password form, not the dashboard.
    """
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return render(
            request,
            "login.html",
            403,
            login_csrf=expected,
            user=None,
            error="The form expired: load the login page again.",
        )
    try:
        result = authenticate(db, settings, username, password, totp or None, client_of(request))
    except (AuthFailedError, ThrottledError) as exc:
        return render(
            request,
            "login.html",
            429 if isinstance(exc, ThrottledError) else 401,
            login_csrf=expected,
            user=None,
            error=str(exc),
        )
    target = PASSWORD_CHANGE_PAGE if result.user.must_change_password else "/"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, result.token, settings)
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout", response_model=None)
def logout_form(
    request: Request, db: DbSession, csrf_token: Annotated[str, Form(max_length=128)]
) -> Response:
    """End the session and go back to the login form."""
    web_session = own_session(request, db)
    if web_session is not None:
        check_csrf(web_session, csrf_token)
        end_session(db, web_session, client_of(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get(PASSWORD_CHANGE_PAGE, response_model=None)
def password_page(request: Request, db: DbSession) -> Response:
    """The password form; the only page an account with a one-time password may see."""
    web_session = own_session(request, db)
    if web_session is None:
        return RedirectResponse("/login", status_code=303)
    return _password_form(request, web_session.user, web_session.csrf_token)


@router.post(PASSWORD_CHANGE_PAGE, response_model=None)
def password_form(
    request: Request,
    db: DbSession,
    csrf_token: Annotated[str, Form(max_length=128)],
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    repeat_password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Change the password; every session of the account ends, so log in again."""
    web_session = own_session(request, db)
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    check_csrf(web_session, csrf_token)
    user, csrf = web_session.user, web_session.csrf_token
    try:
        if new_password != repeat_password:
            raise AccountError("the new password and its repetition differ")
        change_password(db, user, current_password, new_password, client_of(request))
    except AccountError as exc:
        return _password_form(request, user, csrf, message_of(exc), status_of(exc))
    response = RedirectResponse("/login?changed=true", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _password_form(
    request: Request, user: User, csrf: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    return render(
        request,
        "password.html",
        status,
        user=user,
        csrf=csrf,
        error=error,
        forced=user.must_change_password,
    )
