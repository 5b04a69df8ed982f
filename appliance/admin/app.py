"""The admin service's FastAPI application: JSON API under /api/v1, pages at /."""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance.admin.api.access import router as access_router
from appliance.admin.api.audit import router as audit_router
from appliance.admin.api.auth import router as auth_router
from appliance.admin.api.breakglass import router as breakglass_router
from appliance.admin.api.controller import router as controller_router
from appliance.admin.api.identities import router as identities_router
from appliance.admin.api.keys import router as keys_router
from appliance.admin.api.routing import router as routing_router
from appliance.admin.audit_watch import AuditWatch
from appliance.admin.controller import controller_of_app
from appliance.admin.controller_status import ControllerWatch
from appliance.admin.deps import (
    PASSWORD_CHANGE_PAGE,
    PasswordChangeRequiredError,
)
from appliance.admin.http_errors import status_of
from appliance.admin.identity_watch import IdentityWatch
from appliance.admin.services.accounts import ThrottledError
from appliance.admin.settings import AdminSettings
from appliance.admin.storage_faults import StorageRefusals, storage_fault
from appliance.admin.web.account_pages import router as account_pages_router
from appliance.admin.web.audit_pages import router as audit_pages_router
from appliance.admin.web.breakglass_pages import router as breakglass_pages_router
from appliance.admin.web.key_pages import router as key_pages_router
from appliance.admin.web.limit_pages import router as limit_pages_router
from appliance.admin.web.pages import router as pages_router
from appliance.admin.web.recording_pages import router as recording_pages_router
from appliance.admin.web.routing_pages import router as routing_pages_router
from appliance.admin.web.usage_pages import router as usage_pages_router
from appliance.breakglass.clock import BootClock, read_boot_clock
from appliance.breakglass.service import Breakglass
from appliance.db.engine import make_engine
from appliance.errors import ApplianceError

__all__ = ["create_app", "status_of"]

_log = logging.getLogger("appliance.admin")
API = "/api/v1"
_ERROR_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title>'
    '<link rel="stylesheet" href="/static/app.css"></head><body><main>'
    '<div class="error" role="alert">{message}</div><p><a href="/">Back</a></p>'
    "</main></body></html>"
)


def create_app(
    settings: AdminSettings, *, boot_clock: Callable[[], BootClock] = read_boot_clock
) -> FastAPI:
    """Build the app; the database must already be migrated (`appliance admin migrate`).

    ``boot_clock`` reads the host's boot clock for break-glass (tests give their own).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watch = AuditWatch(settings, app.state.sessions, app.state.storage_refusals)
        app.state.audit_watch = watch
        watch.ensure_key()  # the service's signing key is made here, once, and nowhere else
        if settings.audit_watch:
            watch.start()  # checks the whole log once, now, and says loudly if it fails
        identities: IdentityWatch | None = None
        if settings.controller_installed and settings.identity_sync_seconds > 0:
            identities = IdentityWatch(
                app.state.sessions, lambda: controller_of_app(app), settings.identity_sync_seconds
            )
            identities.start()
        app.state.identity_watch = identities
        yield
        if identities is not None:
            identities.stop()
        watch.stop()
        app.state.controller_watch.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Appliance admin service",
        version="1",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # the interactive docs load assets from a CDN: never at a dark site
        redoc_url=None,
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)
    app.state.read_sessions = sessionmaker(
        make_engine(settings.database_url, read_only=True), expire_on_commit=False
    )
    app.state.breakglass = Breakglass(
        settings.breakglass_policy(), controller=lambda: controller_of_app(app), clock=boot_clock
    )
    app.state.controller_watch = ControllerWatch(settings)
    app.state.storage_refusals = StorageRefusals()
    app.include_router(auth_router, prefix=API)
    app.include_router(identities_router, prefix=API)
    app.include_router(audit_router, prefix=API)
    app.include_router(breakglass_router, prefix=API)
    app.include_router(controller_router, prefix=API)
    app.include_router(keys_router, prefix=API)
    app.include_router(routing_router, prefix=API)
    app.include_router(access_router, prefix=API)
    app.include_router(account_pages_router)
    app.include_router(pages_router)
    app.include_router(audit_pages_router)
    app.include_router(breakglass_pages_router)
    app.include_router(recording_pages_router)
    app.include_router(usage_pages_router)
    app.include_router(key_pages_router)
    app.include_router(limit_pages_router)
    app.include_router(routing_pages_router)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static"
    )
    _error_handlers(app)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApplianceError)
    async def appliance_error(request: Request, exc: ApplianceError) -> Response:
        status = status_of(exc)
        if not request.url.path.startswith(API):
            if status == 401:
                return RedirectResponse("/login", status_code=303)
            if isinstance(exc, PasswordChangeRequiredError):
                return RedirectResponse(PASSWORD_CHANGE_PAGE, status_code=303)
            message = f"{exc} — {exc.hint}" if exc.hint else str(exc)
            return HTMLResponse(
                _ERROR_PAGE.format(message=html.escape(message)), status_code=status
            )
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ThrottledError) else None
        body = {"error": {"code": type(exc).__name__, "message": str(exc)}}
        if exc.hint:
            body["error"]["hint"] = exc.hint
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(
            {"error": {"code": "ValidationError", "message": problems}}, status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if fault := storage_fault(exc):
            # Not a defect: the host's storage refused. Say so, and what to do about it.
            _log.error("%s on %s %s: %s", fault.code, request.method, request.url.path, exc)
            request.app.state.storage_refusals.refused(fault)  # audited once space returns
            if not request.url.path.startswith(API):
                return HTMLResponse(
                    _ERROR_PAGE.format(message=html.escape(f"{fault.message} — {fault.hint}")),
                    status_code=fault.status,
                )
            body = {"error": {"code": fault.code, "message": fault.message, "hint": fault.hint}}
            return JSONResponse(body, status_code=fault.status)
        # A defect or a fault nobody named (a database locked past its timeout, say): the
        # caller still gets an answer that says what to do, never a bare "Internal Server
        # Error"; the traceback goes to the journal under the same reference.
        reference = secrets.token_hex(4)
        _log.error(
            "unexpected error %s on %s %s", reference, request.method, request.url.path,
            exc_info=exc,
        )  # fmt: skip
        message = (
            f"the admin service failed on this request ({type(exc).__name__}, reference "
            f"{reference}); it may not have been carried out: look before trying again"
        )
        hint = f"its journal names the cause: journalctl -u appliance-admin -g {reference}"
        if not request.url.path.startswith(API):
            return HTMLResponse(
                _ERROR_PAGE.format(message=html.escape(f"{message} — {hint}")), status_code=500
            )
        return JSONResponse(
            {"error": {"code": "InternalError", "message": message, "hint": hint}},
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "HTTPError", "message": str(exc.detail)}},
            status_code=exc.status_code,
        )
