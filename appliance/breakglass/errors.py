"""Why a break-glass request was refused: a subtree of ApplianceError.

Tree::

    ApplianceError                      (appliance.errors)
    └── BreakglassError                 cannot be done as asked (HTTP 422)
        ├── BreakglassNotFoundError     no such window (404)
        ├── BreakglassConflictError     the window's state does not allow it (409)
        ├── BreakglassForbiddenError    not this admin: the two-person rule (403)
        ├── RecordingError              a session's recording cannot be written (503;
        │                               appliance.breakglass.recording.interface)
        └── ShellError                  the vendor shell proxy (ADR 0021)
            ├── ShellLoginError         no open window lets this engineer in here (403)
            └── ShellCaError            the site SSH CA's key or a certificate from it
"""

from __future__ import annotations

from appliance.errors import ApplianceError

__all__ = [
    "BreakglassConflictError",
    "BreakglassError",
    "BreakglassForbiddenError",
    "BreakglassNotFoundError",
    "ShellCaError",
    "ShellError",
    "ShellLoginError",
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


class ShellError(BreakglassError):
    """The vendor shell proxy cannot do as asked."""


class ShellLoginError(ShellError):
    """No open window lets this engineer, with this secret, onto this host now."""

    http_status = 403


class ShellCaError(ShellError):
    """The site SSH CA's key is missing, exposed or wrong, or a certificate cannot be made."""
