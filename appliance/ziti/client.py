"""A synchronous client of the OpenZiti Edge Management API (and the Fabric API's circuits).

Transport rules, in one place:

* Login is lazy: the first call authenticates with ``POST /authenticate?method=password``
  and every later request carries the returned token in the ``zt-session`` header.
* A 401 drops the session, logs in again once and repeats the request once (a 401 means
  the controller refused it before acting, so this holds for POST too). A second 401 is
  a :class:`ControllerAuthError`.
* Only idempotent requests (GET, DELETE) are retried, and only after a connection error,
  a timeout or a 5xx, with a short exponential backoff. POST/PUT/PATCH are never retried,
  so a create cannot happen twice. (A DELETE whose first attempt did reach the controller
  answers 404 on its retry: :class:`NotFoundError`, which a caller may read as "gone".)
* Every response body is read with a cap (:attr:`ZitiLimits.max_body_bytes`, 16 MiB) and
  a listing stops with an error after :attr:`ZitiLimits.max_pages` pages (100).
* Proxy environment variables are ignored (``trust_env=False``): the controller is
  reached directly or not at all.
* A raft cluster's members are ``base_url`` and ``fallback_urls``: when a member cannot be
  connected to (nothing was sent, so this holds for POST too), the client logs in to the
  next and stays there. A member that applied nothing because it has no leader (HTTP 503
  ``CLUSTER_NO_LEADER``) or could not forward the change to one (HTTP 429
  ``SERVER_TOO_MANY_REQUESTS``, as when the leader has just stopped) is asked again each
  second for up to :attr:`ZitiLimits.leader_wait_s` while the cluster elects a leader; any
  member forwards a change to the leader.

It is one module of some 800 lines on purpose: every call goes through the same
transport (session, retry, failover, caps), and those rules hold only if each entity
method and the one ``_request`` they share read together. Parsing lives in ``models``,
errors in ``errors``, and the interface other packages see in ``interfaces``.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import httpx

from appliance.ziti.errors import (
    AlreadyEnrolledError,
    ControllerAuthError,
    ControllerRequestError,
    ControllerResponseError,
    ControllerUnreachableError,
    NotFoundError,
    ZitiError,
)
from appliance.ziti.models import (
    ApiSession,
    Circuit,
    ControllerVersion,
    EdgeRouterPolicy,
    EnrollmentToken,
    Identity,
    IdentityState,
    ResponseShapeError,
    Service,
    ServicePolicy,
    Session,
    identity_state,
)

__all__ = [
    "EDGE_MANAGEMENT_PATH",
    "FABRIC_PATH",
    "IDENTITY_TYPES",
    "ZitiClient",
    "ZitiLimits",
]

log = logging.getLogger(__name__)

#: Base path of the Edge Management API (``basePath`` of management.yml).
EDGE_MANAGEMENT_PATH: Final = "/edge/management/v1"
#: Base path of the Fabric API (``basePath`` of the controller's fabric swagger.yml).
FABRIC_PATH: Final = "/fabric/v1"
#: The spec's ``identityType`` enum minus "Router" (routers are enrolled as edge routers,
#: not created here). A v2 controller stores all of these as type "Default".
IDENTITY_TYPES: Final = ("User", "Device", "Service", "Default")

_IDEMPOTENT: Final = frozenset({"GET", "DELETE"})
#: Answers of a cluster member that applied nothing and may be asked again shortly: no
#: leader (an election is on), or the change could not be forwarded to the leader (it has
#: just stopped) or the member is busy.
_NOT_APPLIED: Final = frozenset({(503, "CLUSTER_NO_LEADER"), (429, "SERVER_TOO_MANY_REQUESTS")})
_SESSION_HEADER: Final = "zt-session"
_MIB: Final = 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class ZitiLimits:
    """Hard limits and pacing of the client, in one place."""

    #: A response body longer than this is refused (decoded bytes).
    max_body_bytes: int = 16 * _MIB
    #: A listing that needs more pages than this is refused.
    max_pages: int = 100
    #: ``limit`` asked for on each page (the controller caps it at 500).
    page_size: int = 100
    #: First retry waits this long, then twice as long each time.
    backoff_s: float = 0.25
    #: How long a request waits for a cluster without a leader to elect one.
    leader_wait_s: float = 20.0


class ZitiClient:
    """Client of one OpenZiti controller's Edge Management API (or a cluster's).

    ``base_url`` is the controller's web address (``https://ctrl.example:1280``; a trailing
    ``/edge/management/v1`` is accepted and dropped); ``fallback_urls``, the other members
    of its raft cluster, tried in order when it cannot be reached. ``verify`` is the path of the CA
    bundle that signed the controller's server certificate, ``True`` for the system
    trust store, or ``False`` (tests and the lab only). ``retries`` counts retries of
    idempotent requests after the first attempt. ``transport`` replaces the network
    (tests use ``httpx.MockTransport``). ``limits`` overrides :class:`ZitiLimits` (body
    cap, page cap, page size, backoff); the defaults are the appliance's hard limits.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify: str | bool,
        timeout: float = 10.0,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        limits: ZitiLimits | None = None,
        fallback_urls: Sequence[str] = (),
    ) -> None:
        roots = [_root(url) for url in (base_url, *fallback_urls)]
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self._username = username
        self._password = password
        self._retries = retries
        self._limits = limits or ZitiLimits()
        self._token: str | None = None
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic
        context = _ssl_context(verify)
        self._members = [
            httpx.Client(
                base_url=root,
                verify=context,
                timeout=httpx.Timeout(timeout),
                transport=transport,
                trust_env=False,
                follow_redirects=False,
                headers={"Accept": "application/json"},
            )
            for root in roots
        ]
        self._http = self._members[0]

    @property
    def base_url(self) -> str:
        """The web address of the controller (cluster member) this client now uses."""
        return str(self._http.base_url).rstrip("/")

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools. The controller session simply expires."""
        for member in self._members:
            member.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZitiClient({self.base_url!r}, user={self._username!r})"

    # --- informational ------------------------------------------------------------------

    def version(self) -> ControllerVersion:
        """The controller's version (``GET /version``; needs no session)."""
        path = f"{EDGE_MANAGEMENT_PATH}/version"
        body = self._request("GET", path, auth=False)
        return self._parse("GET", path, lambda: ControllerVersion.from_api(_data(body)))

    # --- identities ---------------------------------------------------------------------

    def list_identities(self, filter: str | None = None) -> list[Identity]:
        """Every identity matching ``filter`` (the controller's query language), all pages."""
        return self._list(f"{EDGE_MANAGEMENT_PATH}/identities", filter, Identity.from_api)

    def get_identity(self, id: str) -> Identity:
        """One identity by id; :class:`NotFoundError` if there is none."""
        path = f"{EDGE_MANAGEMENT_PATH}/identities/{_segment(id)}"
        body = self._request("GET", path)
        return self._parse("GET", path, lambda: Identity.from_api(_data(body)))

    def create_identity(
        self,
        name: str,
        *,
        type: str,
        role_attributes: Sequence[str],
        enrollment_minutes: int | None,
    ) -> EnrollmentToken:
        """Create a non-admin identity waiting for one-time-token enrollment.

        ``type`` is one of :data:`IDENTITY_TYPES`. With ``enrollment_minutes`` None the
        identity is created with ``"enrollment": {"ott": true}`` and the token lives as
        long as the controller's ``enrollment.edgeIdentity.duration`` (180 min by
        default). Otherwise the identity is created without an enrollment and an OTT
        enrollment expiring in that many minutes is added (``POST /enrollments``); if that
        fails the identity is deleted again, so the call creates all or nothing.
        Returns the identity id with its one-time JWT and expiry.
        """
        if not name.strip():
            raise ValueError("an identity needs a non-empty name")
        if type not in IDENTITY_TYPES:
            raise ValueError(f"expected an identity type in {IDENTITY_TYPES}, got {type!r}")
        attributes = _role_attributes(role_attributes)
        if enrollment_minutes is not None:
            _positive_minutes(enrollment_minutes, "enrollment_minutes")
        body: dict[str, Any] = {
            "name": name,
            "type": type,
            "isAdmin": False,
            "roleAttributes": attributes,
        }
        if enrollment_minutes is None:
            body["enrollment"] = {"ott": True}
        path = f"{EDGE_MANAGEMENT_PATH}/identities"
        identity_id = self._created_id("POST", path, self._request("POST", path, json=body))
        if enrollment_minutes is not None:
            try:
                self._create_ott_enrollment(identity_id, enrollment_minutes)
            except ZitiError as exc:
                self._undo_create(identity_id, name, exc)
                raise
        return self._enrollment_token(identity_id)

    def delete_identity(self, id: str) -> None:
        """Delete an identity; the controller then closes its connections."""
        self._request("DELETE", f"{EDGE_MANAGEMENT_PATH}/identities/{_segment(id)}")

    def disable_identity(self, id: str, minutes: int | None) -> None:
        """Reject the identity's sessions for ``minutes``, or until enabled when None.

        The API reads ``durationMinutes: 0`` as "indefinitely", so None is sent as 0 and
        a duration must be at least one minute.
        """
        if minutes is not None:
            _positive_minutes(minutes, "minutes")
        self._request(
            "POST",
            f"{EDGE_MANAGEMENT_PATH}/identities/{_segment(id)}/disable",
            json={"durationMinutes": 0 if minutes is None else minutes},
        )

    def enable_identity(self, id: str) -> None:
        """Lift a disable (``POST /identities/{id}/enable``, no body)."""
        self._request("POST", f"{EDGE_MANAGEMENT_PATH}/identities/{_segment(id)}/enable")

    def reissue_enrollment(self, id: str, minutes: int) -> EnrollmentToken:
        """Give an identity that has not enrolled a fresh one-time token.

        An outstanding OTT enrollment (expired or not) is refreshed with
        ``POST /enrollments/{id}/refresh`` (the controller mints a new JWT; the old one
        stops working); an identity with no enrollment gets one with ``POST /enrollments``.
        An identity that already holds a credential is refused.
        """
        _positive_minutes(minutes, "minutes")
        identity = self.get_identity(id)
        if identity.enrolled:
            raise AlreadyEnrolledError(
                f"identity {identity.name!r} ({identity.id}) on {self.base_url} is already "
                "enrolled; expected an identity waiting for enrollment",
                hint="to re-enroll it, delete the identity and create it again",
            )
        if identity.ott is not None:
            path = f"{EDGE_MANAGEMENT_PATH}/enrollments/{_segment(identity.ott.id)}/refresh"
            self._request("POST", path, json={"expiresAt": _expires_at(minutes)})
        else:
            self._create_ott_enrollment(identity.id, minutes)
        return self._enrollment_token(identity.id)

    @staticmethod
    def identity_state(identity: Identity, *, now: datetime | None = None) -> IdentityState:
        """ "pending", "enrolled", "token expired" or "disabled" (see :func:`identity_state`)."""
        return identity_state(identity, now=now)

    # --- services and policies ----------------------------------------------------------

    def list_services(self, filter: str | None = None) -> list[Service]:
        """Every service matching ``filter``, all pages."""
        return self._list(f"{EDGE_MANAGEMENT_PATH}/services", filter, Service.from_api)

    def create_service_policy(
        self,
        name: str,
        *,
        type: Literal["Dial", "Bind"],
        identity_roles: Sequence[str],
        service_roles: Sequence[str],
        semantic: Literal["AnyOf", "AllOf"] = "AnyOf",
    ) -> str:
        """Create a Dial or Bind service policy; returns its id.

        Roles are ``#attribute``, ``@id`` or ``#all``; an empty role list is refused
        (a policy that matches nothing is a mistake, not a grant).
        """
        if type not in ("Dial", "Bind"):
            raise ValueError(f"expected a service policy type 'Dial' or 'Bind', got {type!r}")
        body = {
            "name": _name(name),
            "type": type,
            "semantic": _semantic(semantic),
            "identityRoles": _roles(identity_roles, "identity_roles"),
            "serviceRoles": _roles(service_roles, "service_roles"),
        }
        path = f"{EDGE_MANAGEMENT_PATH}/service-policies"
        return self._created_id("POST", path, self._request("POST", path, json=body))

    def delete_service_policy(self, id: str) -> None:
        """Delete a service policy; identities it granted lose that access."""
        self._request("DELETE", f"{EDGE_MANAGEMENT_PATH}/service-policies/{_segment(id)}")

    def list_service_policies(self, filter: str | None = None) -> list[ServicePolicy]:
        """Every service policy matching ``filter``, all pages."""
        return self._list(
            f"{EDGE_MANAGEMENT_PATH}/service-policies", filter, ServicePolicy.from_api
        )

    def create_edge_router_policy(
        self,
        name: str,
        *,
        identity_roles: Sequence[str],
        edge_router_roles: Sequence[str],
        semantic: Literal["AnyOf", "AllOf"] = "AnyOf",
    ) -> str:
        """Create an edge router policy (which identities may use which routers); its id."""
        body = {
            "name": _name(name),
            "semantic": _semantic(semantic),
            "identityRoles": _roles(identity_roles, "identity_roles"),
            "edgeRouterRoles": _roles(edge_router_roles, "edge_router_roles"),
        }
        path = f"{EDGE_MANAGEMENT_PATH}/edge-router-policies"
        return self._created_id("POST", path, self._request("POST", path, json=body))

    def delete_edge_router_policy(self, id: str) -> None:
        """Delete an edge router policy."""
        self._request("DELETE", f"{EDGE_MANAGEMENT_PATH}/edge-router-policies/{_segment(id)}")

    def list_edge_router_policies(self, filter: str | None = None) -> list[EdgeRouterPolicy]:
        """Every edge router policy matching ``filter``, all pages."""
        return self._list(
            f"{EDGE_MANAGEMENT_PATH}/edge-router-policies", filter, EdgeRouterPolicy.from_api
        )

    # --- sessions and circuits ----------------------------------------------------------

    def list_api_sessions(self, filter: str | None = None) -> list[ApiSession]:
        """Every legacy API session matching ``filter`` (OIDC sessions are not listed)."""
        return self._list(f"{EDGE_MANAGEMENT_PATH}/api-sessions", filter, ApiSession.from_api)

    def list_sessions(self, filter: str | None = None) -> list[Session]:
        """Every legacy service session matching ``filter``."""
        return self._list(f"{EDGE_MANAGEMENT_PATH}/sessions", filter, Session.from_api)

    def list_circuits(self) -> list[Circuit]:
        """Every open circuit, from the Fabric API (``GET /fabric/v1/circuits``)."""
        return self._list(f"{FABRIC_PATH}/circuits", None, Circuit.from_api)

    # --- enrollment helpers -------------------------------------------------------------

    def _create_ott_enrollment(self, identity_id: str, minutes: int) -> None:
        path = f"{EDGE_MANAGEMENT_PATH}/enrollments"
        body = {"method": "ott", "identityId": identity_id, "expiresAt": _expires_at(minutes)}
        self._created_id("POST", path, self._request("POST", path, json=body))

    def _enrollment_token(self, identity_id: str) -> EnrollmentToken:
        identity = self.get_identity(identity_id)
        ott = identity.ott
        if ott is None or ott.expires_at is None:
            raise ControllerResponseError(
                f"expected identity {identity_id} on {self.base_url} to have an OTT "
                "enrollment with a JWT and an expiry (data.enrollment.ott), found "
                + ("none" if ott is None else "no expiresAt"),
                hint="the identity exists; reissue its enrollment or delete it",
            )
        return EnrollmentToken(
            identity_id=identity.id,
            enrollment_id=ott.id,
            expires_at=ott.expires_at,
            jwt=ott.jwt,
        )

    def _undo_create(self, identity_id: str, name: str, cause: ZitiError) -> None:
        try:
            self.delete_identity(identity_id)
        except ZitiError as cleanup:
            raise ZitiError(
                f"created identity {name!r} ({identity_id}) on {self.base_url} but could not "
                f"give it an enrollment token ({cause}), and deleting it again failed "
                f"({cleanup})",
                hint=f"delete identity {identity_id} by hand before trying again",
            ) from cause
        log.warning("deleted identity %s again: its enrollment could not be created", name)

    # --- transport ----------------------------------------------------------------------

    def _list(
        self,
        path: str,
        filter: str | None,
        parse: Callable[[object], T],
    ) -> list[T]:
        """Read every page of a listing: ``limit``/``offset`` until ``totalCount``."""
        limits = self._limits
        items: list[T] = []
        offset = 0
        for _ in range(limits.max_pages):
            params: dict[str, str | int] = {"limit": limits.page_size, "offset": offset}
            if filter is not None:
                params["filter"] = filter
            body = self._request("GET", path, params=params)
            try:
                page, total = _page(body)
                items.extend(parse(element) for element in page)
            except ResponseShapeError as exc:
                raise ControllerResponseError(f"GET {self.base_url}{path}: {exc}") from exc
            offset += len(page)
            if not page or offset >= total:
                return items
        raise ControllerResponseError(
            f"listing GET {self.base_url}{path} did not end after {limits.max_pages} pages "
            f"of {limits.page_size} ({len(items)} read so far); refusing to read more",
            hint="narrow the filter",
        )

    def _login(self) -> str:
        path = f"{EDGE_MANAGEMENT_PATH}/authenticate"
        body = self._request(
            "POST",
            path,
            params={"method": "password"},
            json={"username": self._username, "password": self._password},
            auth=False,
        )
        token = self._parse(
            "POST", path, lambda: _str_field(_data(body), "token", "current API session")
        )
        log.debug("logged in to %s as %s", self.base_url, self._username)
        return token

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        auth: bool = True,
    ) -> object:
        """Send one API request under the retry and re-login rules; the parsed JSON body."""
        idempotent = method in _IDEMPOTENT
        attempt = 0
        relogged = False
        unreachable: set[int] = set()
        leader_deadline: float | None = None
        while True:
            headers: dict[str, str] = {}
            if auth:
                if self._token is None:
                    self._token = self._login()
                headers[_SESSION_HEADER] = self._token
            try:
                status, content = self._send_once(method, path, params, json, headers)
            except httpx.TransportError as exc:
                if _not_connected(exc) and self._next_member(unreachable, exc):
                    continue
                if idempotent and attempt < self._retries:
                    attempt += 1
                    self._backoff(attempt, method, path, type(exc).__name__)
                    continue
                raise self._unreachable(method, path, exc) from exc
            if status == 401 and auth and not relogged:
                log.info("session refused by %s (401); logging in again", self.base_url)
                self._token = None
                relogged = True
                continue
            if (status, _error_envelope(content)[0]) in _NOT_APPLIED:
                now = self._clock()
                leader_deadline = leader_deadline or now + self._limits.leader_wait_s
                if now < leader_deadline:
                    log.warning(
                        "%s applied nothing (HTTP %d); asking again in 1s", self.base_url, status
                    )
                    self._sleep(1.0)
                    continue
            if status >= 500 and idempotent and attempt < self._retries:
                attempt += 1
                self._backoff(attempt, method, path, f"HTTP {status}")
                continue
            if status >= 400:
                raise self._status_error(method, path, status, content)
            return self._json(method, path, content)

    def _next_member(self, unreachable: set[int], exc: httpx.TransportError) -> bool:
        """Move to the next cluster member not yet found unreachable in this request.

        False when there is none: every member refused the connection. A session belongs to
        the member that made it, so the next one is logged in to afresh.
        """
        here = self._members.index(self._http)
        unreachable.add(here)
        for step in range(1, len(self._members)):
            candidate = (here + step) % len(self._members)
            if candidate not in unreachable:
                log.warning(
                    "cannot connect to the controller at %s (%s); using %s",
                    self.base_url,
                    type(exc).__name__,
                    self._members[candidate].base_url,
                )
                self._http = self._members[candidate]
                self._token = None
                return True
        return False

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        body: object,
        headers: Mapping[str, str],
    ) -> tuple[int, bytes]:
        """One HTTP exchange; the body is read with the size cap."""
        request = self._http.build_request(method, path, params=params, json=body, headers=headers)
        response = self._http.send(request, stream=True)
        try:
            cap = self._limits.max_body_bytes
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise self._too_large(method, path, f"{declared} bytes declared")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise self._too_large(method, path, "more than that sent")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)
        finally:
            response.close()

    def _backoff(self, attempt: int, method: str, path: str, why: str) -> None:
        delay = self._limits.backoff_s * (2 ** (attempt - 1))
        log.warning(
            "%s %s%s failed (%s); retry %d of %d in %.2fs",
            method,
            self.base_url,
            path,
            why,
            attempt,
            self._retries,
            delay,
        )
        if delay > 0:
            self._sleep(delay)

    # --- error construction -------------------------------------------------------------

    def _unreachable(
        self, method: str, path: str, exc: httpx.TransportError
    ) -> ControllerUnreachableError:
        detail = str(exc) or type(exc).__name__
        if _is_tls_failure(exc):
            what = "the TLS handshake failed"
            hint = (
                "check that `verify` names the CA bundle that signed the controller's "
                "certificate and that the URL's host name is in that certificate"
            )
        elif isinstance(exc, httpx.TimeoutException):
            what = "it did not answer in time"
            hint = "check that the controller is running and not overloaded, then try again"
        else:
            what = "the connection failed"
            hint = (
                "check that the controller is running and that its host and port are "
                "reachable from here (DNS, firewall), then try again"
            )
        login = path == f"{EDGE_MANAGEMENT_PATH}/authenticate"
        if method not in _IDEMPOTENT and not login and not isinstance(exc, httpx.ConnectError):
            hint += f"; the {method} may or may not have been applied, check before repeating"
        return ControllerUnreachableError(
            f"cannot reach the OpenZiti controller at {self.base_url}: {what} during "
            f"{method} {path} ({type(exc).__name__}: {detail})",
            url=self.base_url,
            hint=hint,
        )

    def _status_error(self, method: str, path: str, status: int, content: bytes) -> ZitiError:
        code, api_message, cause = _error_envelope(content)
        found = f"HTTP {status}"
        if code or api_message:
            found += f" {code or '?'}: {api_message or '(no message)'}"
        if cause:
            found += f" ({cause})"
        where = f"{method} {self.base_url}{path}"
        if status == 401:
            if path == f"{EDGE_MANAGEMENT_PATH}/authenticate":
                return ControllerAuthError(
                    f"the OpenZiti controller at {self.base_url} refused the password of "
                    f"user {self._username!r}: expected a session, got {found}",
                    hint="check the controller admin username and password in the settings",
                )
            return ControllerAuthError(
                f"the OpenZiti controller at {self.base_url} refused {where} with a fresh "
                f"session for {self._username!r}: {found}",
                hint=f"check that {self._username!r} is an admin identity on the controller",
            )
        cls = NotFoundError if status == 404 else ControllerRequestError
        return cls(
            f"{where}: expected HTTP 2xx, got {found}",
            status=status,
            code=code,
            api_message=api_message,
            method=method,
            path=path,
        )

    def _too_large(self, method: str, path: str, found: str) -> ControllerResponseError:
        cap = self._limits.max_body_bytes
        size = f"{cap} bytes" + (f" ({cap / _MIB:g} MiB)" if cap >= _MIB else "")
        return ControllerResponseError(
            f"{method} {self.base_url}{path}: expected a response body of at most {size}, "
            f"found {found}; refused"
        )

    def _json(self, method: str, path: str, content: bytes) -> object:
        if not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise ControllerResponseError(
                f"{method} {self.base_url}{path}: expected a JSON body, found {content[:80]!r}"
            ) from None

    def _parse(self, method: str, path: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except ResponseShapeError as exc:
            raise ControllerResponseError(f"{method} {self.base_url}{path}: {exc}") from exc

    def _created_id(self, method: str, path: str, body: object) -> str:
        return self._parse(method, path, lambda: _str_field(_data(body), "id", "created entity"))


# --- helpers --------------------------------------------------------------------------------


def _ssl_context(verify: str | bool) -> ssl.SSLContext | bool:
    """``verify`` as httpx wants it: a CA path becomes an SSLContext (no deprecated str)."""
    if isinstance(verify, bool):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise ZitiError(
            f"expected a PEM CA bundle for the controller at {verify}, found none usable ({exc})",
            hint="point `verify` at the controller's CA certificate file",
        ) from exc


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text


def _data(body: object) -> object:
    if not isinstance(body, Mapping) or "data" not in body:
        raise ResponseShapeError('expected an envelope {"data": …, "meta": …}, found none')
    return body["data"]


def _str_field(obj: object, key: str, what: str) -> str:
    if not isinstance(obj, Mapping) or not isinstance(obj.get(key), str) or not obj[key]:
        raise ResponseShapeError(f"expected {what} to carry a non-empty string {key!r}")
    value: str = obj[key]
    return value


def _page(body: object) -> tuple[list[object], int]:
    data = _data(body)
    if not isinstance(data, list):
        raise ResponseShapeError("expected a list envelope's data to be an array")
    meta = body.get("meta") if isinstance(body, Mapping) else None
    pagination = meta.get("pagination") if isinstance(meta, Mapping) else None
    total = pagination.get("totalCount") if isinstance(pagination, Mapping) else None
    if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
        raise ResponseShapeError(
            f"expected meta.pagination.totalCount (a count) in a list envelope, found {total!r}"
        )
    return data, int(total)


def _root(url: str) -> str:
    """A controller's web address without a trailing slash or API base path."""
    root = url.rstrip("/").removesuffix(EDGE_MANAGEMENT_PATH).rstrip("/")
    if not root.startswith(("https://", "http://")):
        raise ZitiError(f"expected the controller URL to start with https://, found {url!r}")
    return root


def _not_connected(exc: httpx.TransportError) -> bool:
    """True when the request never reached the controller: no connection was made."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _error_envelope(content: bytes) -> tuple[str | None, str | None, str | None]:
    """``code``, ``message`` and a short cause from ``{"error": {…}}``, when present."""
    try:
        body = json.loads(content) if content.strip() else None
    except ValueError:
        return None, None, None
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None, None, None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    cause: str | None = None
    raw_cause = error.get("cause")
    if isinstance(raw_cause, Mapping) and isinstance(raw_cause.get("message"), str):
        cause = raw_cause["message"]
    elif isinstance(error.get("causeMessage"), str) and error["causeMessage"]:
        cause = error["causeMessage"]
    return code, message, cause


def _segment(value: str) -> str:
    """An id as one path segment: refuse anything that could change the path."""
    if not value or any(c in value for c in "/?#%") or value in (".", ".."):
        raise ValueError(f"expected an entity id, got {value!r}")
    return value


def _name(name: str) -> str:
    if not name.strip():
        raise ValueError("a policy needs a non-empty name")
    return name


def _semantic(semantic: str) -> str:
    if semantic not in ("AnyOf", "AllOf"):
        raise ValueError(f"expected semantic 'AnyOf' or 'AllOf', got {semantic!r}")
    return semantic


def _roles(roles: Sequence[str], what: str) -> list[str]:
    if isinstance(roles, str):
        raise TypeError(f"{what} must be a list of roles, not the string {roles!r}")
    values = list(roles)
    if not values:
        raise ValueError(f"expected at least one role in {what}; a policy on nothing is refused")
    for role in values:
        if len(role) < 2 or role[0] not in "#@":
            raise ValueError(
                f"expected each of {what} to be '#attribute', '@id' or '#all', got {role!r}"
            )
    return values


def _role_attributes(attributes: Sequence[str]) -> list[str]:
    if isinstance(attributes, str):
        raise TypeError(f"role_attributes must be a list, not the string {attributes!r}")
    values = list(attributes)
    for attribute in values:
        if not attribute or attribute[0] in "#@":
            raise ValueError(
                f"expected a bare role attribute (policies add the '#'), got {attribute!r}"
            )
    return values


def _positive_minutes(minutes: int, what: str) -> None:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
        raise ValueError(f"expected {what} to be a whole number of minutes >= 1, got {minutes!r}")


def _expires_at(minutes: int) -> str:
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
