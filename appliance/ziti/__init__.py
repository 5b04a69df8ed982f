"""Client of the OpenZiti controller's Edge Management API (and the Fabric API's circuits).

Used by the admin service to enroll identities and grant access, and by break-glass to
cut access. Written from the API's own documents, not from guesses; tested against fakes
shaped like them (tests/unit/test_ziti_client.py) because the real controller could not
be built on the development machine.

Documents read (a later engineer can check them there):

* Edge Management API, Swagger 2.0: repository ``openziti/edge-api``, file
  ``management.yml`` (generated from ``source/management.yml`` and its includes) at
  commit 87257deff17d166b17f9f4a6fa27d99d444fe774 (main, 2026-04-30), ``info.version``
  0.29.0, ``basePath /edge/management/v1``. The target controller, ``openziti/ziti``
  tag v2.0.3, pins ``github.com/openziti/edge-api v0.31.0``, which was not in the
  snapshot read (the ziti commit that moved the pin, 15835d748, uses it for an OIDC
  capability constant). Every request and field used here was checked against the
  v2.0.3 controller code that serves it (below).
* Fabric API, Swagger 2.0: repository ``openziti/ziti``, tag v2.0.3
  (commit e86e337a1f36a071211d52a3bfe58f399a3dc15c), file ``controller/specs/swagger.yml``,
  ``info.version`` 0.16.54, ``basePath /fabric/v1``, same ``zt-session`` apiKey header.
* Controller behaviour behind the spec, same ziti tag: ``controller/internal/routes/``
  (``identity_router.go``, ``identity_api_model.go``, ``base_router.go``,
  ``query_options.go``, ``authenticate_router.go``), ``controller/model/``
  (``enrollment_manager.go``, ``enrollment_model.go``, ``identity_manager.go``) and
  ``controller/db/identity_store.go``.

What the documents say, and what this package does with it:

* ``POST /authenticate?method=password`` with ``{"username", "password"}`` answers a
  ``currentApiSessionDetailEnvelope``; ``data.token`` goes in the ``zt-session`` header.
  This is the legacy API session, deprecated in v2 in favour of OIDC and due to be removed
  in v3 (ziti CHANGELOG, release 2.0.0): revisit this login then.
* Lists take ``limit``/``offset``/``filter`` and answer ``meta.pagination`` with
  ``limit``, ``offset``, ``totalCount``; the controller caps ``limit`` at 500.
* ``identityCreate`` requires ``name``, ``type`` (enum User, Device, Service, Router,
  Default) and ``isAdmin``; its ``enrollment`` block is ``{"ott": true}`` and has no
  expiry field. A v2.0.3 controller ignores ``type`` and stores "Default". The token's
  lifetime is the controller's ``enrollment.edgeIdentity.duration`` unless an
  enrollment is created with ``POST /enrollments {"method": "ott", "identityId",
  "expiresAt"}``. The JWT and expiry are read back at ``data.enrollment.ott.jwt`` and
  ``.expiresAt`` of ``GET /identities/{id}``.
* An expired token is replaced with ``POST /enrollments/{id}/refresh {"expiresAt"}``
  ("for expired or unexpired enrollments … a new JWT will be generated").
* ``POST /identities/{id}/disable {"durationMinutes": N}`` (0 means indefinitely);
  ``POST /identities/{id}/enable`` has no body. ``identityDetail.disabled`` is computed
  by the controller from ``disabledAt``/``disabledUntil``.
* Errors are ``apiErrorEnvelope``: ``{"error": {"code", "message", "cause",
  "causeMessage", …}, "meta": …}`` (e.g. 404 ``NOT_FOUND``, 401 ``UNAUTHORIZED``,
  ``INVALID_AUTH`` from /authenticate).
* ``GET /fabric/v1/circuits``: the spec text says it "does not support filtering, sorting,
  or pagination", but it declares ``limit``/``offset``/``filter`` and v2.0.3 serves it
  through the same paginated list handler, so it is read page by page like the others.
"""

from __future__ import annotations

from appliance.ziti.client import (
    EDGE_MANAGEMENT_PATH,
    FABRIC_PATH,
    IDENTITY_TYPES,
    ZitiClient,
    ZitiLimits,
)
from appliance.ziti.errors import (
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
    OttEnrollment,
    Service,
    ServicePolicy,
    Session,
    identity_state,
)

__all__ = [
    "EDGE_MANAGEMENT_PATH",
    "FABRIC_PATH",
    "IDENTITY_TYPES",
    "ApiSession",
    "Circuit",
    "ControllerAuthError",
    "ControllerRequestError",
    "ControllerResponseError",
    "ControllerUnreachableError",
    "ControllerVersion",
    "EdgeRouterPolicy",
    "EnrollmentToken",
    "Identity",
    "IdentityState",
    "NotFoundError",
    "OttEnrollment",
    "Service",
    "ServicePolicy",
    "Session",
    "ZitiClient",
    "ZitiError",
    "ZitiLimits",
    "identity_state",
]
