"""Why a break-glass request was refused: a subtree of ApplianceError.

Tree::

    ApplianceError                      (appliance.errors)
    └── BreakglassError                 cannot be done as asked (HTTP 422)
        ├── BreakglassNotFoundError     no such window (404)
        ├── BreakglassConflictError     the window's state does not allow it (409)
        └── BreakglassForbiddenError    not this admin: the two-person rule (403)
"""

from __future__ import annotations

from appliance.errors import ApplianceError

__all__ = [
    "BreakglassConflictError",
    "BreakglassError",
    "BreakglassForbiddenError",
    "BreakglassNotFoundError",
]


class BreakglassError(ApplianceError):
    """A break-glass request that cannot be done as asked."""

    http_status = 422


class BreakglassNotFoundError(BreakglassError):
    """No such window."""

    http_status = 404


class BreakglassConflictError(BreakglassError):
    """The window is not in a state that allows this."""

    http_status = 409


class BreakglassForbiddenError(BreakglassError):
    """This admin may not do this to this window (two-person rule)."""

    http_status = 403
