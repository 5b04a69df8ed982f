"""The admin service's one connection to the OpenZiti controller."""

from __future__ import annotations

from fastapi import FastAPI, Request

from appliance.admin.settings import AdminSettings
from appliance.ziti import ZitiClient
from appliance.ziti.errors import ControllerUnreachableError

__all__ = [
    "ControllerNotInstalledError",
    "controller_for",
    "controller_of_app",
    "make_controller",
    "probe_client",
]


class ControllerNotInstalledError(ControllerUnreachableError):
    """This site has no OpenZiti controller: its settings name none (no overlay).

    A kind of unreachable (HTTP 503, nothing changed) that no retry will cure.
    """


def make_controller(settings: AdminSettings) -> ZitiClient:
    """A client for the configured controller (it logs in on first use)."""
    password = settings.controller_password()
    if password is None:
        raise ControllerNotInstalledError(
            "this site has no OpenZiti controller: the admin service's settings name no "
            "controller_password_file, so nothing can be enrolled or granted",
            url=settings.controller_url,
            hint="install the overlay, then set controller_password_file (and controller_url) "
            "in the admin service's settings",
        )
    return ZitiClient(
        settings.controller_url,
        settings.controller_username,
        password,
        verify=_verify(settings),
        timeout=settings.controller_timeout,
        fallback_urls=settings.controller_fallback_urls,
    )


def probe_client(settings: AdminSettings) -> ZitiClient:
    """A client for unauthenticated probes only (``version()``): a short timeout, no retry.

    It never logs in, so it holds no credential.
    """
    return ZitiClient(
        settings.controller_url,
        settings.controller_username,
        "",
        verify=_verify(settings),
        timeout=settings.controller_probe_timeout,
        retries=0,
    )


def controller_for(request: Request) -> ZitiClient:
    """FastAPI dependency: the app's controller client, made on first use."""
    return controller_of_app(request.app)


def controller_of_app(app: FastAPI) -> ZitiClient:
    """The app's controller client, made on first use (requests and background work)."""
    client: ZitiClient | None = getattr(app.state, "controller", None)
    if client is None:
        client = make_controller(app.state.settings)
        app.state.controller = client
    return client


def _verify(settings: AdminSettings) -> str | bool:
    return str(settings.controller_ca) if settings.controller_ca else True
