"""Which HTTP status each ApplianceError becomes: one table for the API and the pages.

Kept below both (the app's error handlers and the pages import it), so neither imports
the other.
"""

from __future__ import annotations

from appliance.admin.deps import ForbiddenError, NotAuthenticatedError
from appliance.admin.services.accounts import AccountError, AuthFailedError, ThrottledError
from appliance.admin.services.identities import IdentityError
from appliance.errors import ApplianceError
from appliance.ziti.errors import (
    AlreadyEnrolledError,
    ControllerUnreachableError,
    NotFoundError,
    ZitiError,
)

__all__ = ["status_of"]


def status_of(exc: ApplianceError) -> int:
    """The HTTP status for an ApplianceError."""
    if isinstance(exc, AuthFailedError | NotAuthenticatedError):
        return 401
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, ThrottledError):
        return 429
    if isinstance(exc, AccountError | IdentityError):
        if "already exists" in str(exc):
            return 409
        return 404 if str(exc).startswith("no ") else 422
    if isinstance(exc, ControllerUnreachableError):
        return 503  # the controller is down or slow: nothing was changed, try again
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AlreadyEnrolledError):
        return 409  # the identity's state, not the controller, refuses this
    if isinstance(exc, ZitiError):
        return 502
    status = getattr(exc, "http_status", None)
    return status if isinstance(status, int) else 500
