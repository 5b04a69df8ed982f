"""Errors of model access (keys, limits, usage, the access proxies' sync), with their
HTTP status (the app's error table reads ``http_status``)."""

from __future__ import annotations

from appliance.errors import ApplianceError

__all__ = ["AccessConflictError", "AccessError", "AccessNotConfiguredError", "AccessNotFoundError"]


class AccessError(ApplianceError):
    """A request about keys, limits or usage that cannot be done as asked."""

    http_status = 422


class AccessNotFoundError(AccessError):
    """The key, limit or identity named does not exist."""

    http_status = 404


class AccessConflictError(AccessError):
    """The thing asked for is in a state that refuses it (a revoked key rotated, say)."""

    http_status = 409


class AccessNotConfiguredError(AccessError):
    """This admin service serves no access proxies (``access_token_file`` is unset)."""

    http_status = 404
