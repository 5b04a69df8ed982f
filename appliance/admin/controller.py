"""The admin service's one connection to the OpenZiti controller."""

from __future__ import annotations

from fastapi import Request

from appliance.admin.settings import AdminSettings
from appliance.ziti import ZitiClient
from appliance.ziti.errors import ControllerUnreachableError

__all__ = ["controller_for", "make_controller"]


def make_controller(settings: AdminSettings) -> ZitiClient:
    """A client for the configured controller (it logs in on first use)."""
    password = settings.controller_password()
    if password is None:
        raise ControllerUnreachableError(
            f"no controller credentials are configured for {settings.controller_url}",
            url=settings.controller_url,
            hint="set controller_password_file in the admin service's settings",
        )
    verify: str | bool = str(settings.controller_ca) if settings.controller_ca else True
    return ZitiClient(
        settings.controller_url,
        settings.controller_username,
        password,
        verify=verify,
        timeout=settings.controller_timeout,
    )


def controller_for(request: Request) -> ZitiClient:
    """FastAPI dependency: the app's controller client, made on first use."""
    client: ZitiClient | None = getattr(request.app.state, "controller", None)
    if client is None:
        client = make_controller(request.app.state.settings)
        request.app.state.controller = client
    return client
