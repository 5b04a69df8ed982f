"""Errors raised by the OpenZiti controller client: an operational subtree of ApplianceError.

Tree::

    ApplianceError                      (appliance.errors)
    └── ZitiError                       anything that went wrong talking to the controller
        ├── ControllerUnreachableError  connection refused, DNS, TLS, timeout
        ├── ControllerAuthError         the controller refused our credentials or session
        ├── ControllerResponseError     a 2xx answer we cannot use: too large, not JSON,
        │                               fields missing, a listing that does not end
        ├── ControllerRequestError      the controller answered 4xx/5xx with its error envelope
        │   └── NotFoundError           404: the entity does not exist (or no longer)
        └── AlreadyEnrolledError        asked for a token for an identity that holds a credential

These are operational failures, not untrusted-input verdicts: keep them apart from
``BundleError``.
"""

from __future__ import annotations

from appliance.errors import ApplianceError

__all__ = [
    "AlreadyEnrolledError",
    "ControllerAuthError",
    "ControllerRequestError",
    "ControllerResponseError",
    "ControllerUnreachableError",
    "NotFoundError",
    "ZitiError",
]


class ZitiError(ApplianceError):
    """Root of every error raised while talking to the OpenZiti controller."""


class ControllerUnreachableError(ZitiError):
    """The controller could not be reached: refused, unknown host, TLS failure, timeout."""

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: The controller URL that could not be reached.
        self.url = url


class ControllerAuthError(ZitiError):
    """The controller refused the configured credentials (or a fresh session from them)."""


class ControllerResponseError(ZitiError):
    """The controller answered, but with something this client refuses to use."""


class ControllerRequestError(ZitiError):
    """The controller answered with an HTTP error status and (usually) its error envelope.

    ``status`` is the HTTP status, ``code`` and ``api_message`` come from the envelope
    ``{"error": {"code": …, "message": …}}`` (``None`` when the body had none), and
    ``method``/``path`` name the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None,
        api_message: str | None,
        method: str,
        path: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.api_message = api_message
        self.method = method
        self.path = path


class NotFoundError(ControllerRequestError):
    """HTTP 404: the entity named in the request does not exist on the controller."""


class AlreadyEnrolledError(ZitiError):
    """A fresh enrollment token was asked for an identity that is already enrolled.

    Found against a live controller: this is a conflict with the identity's state (409),
    not a controller failure.
    """
