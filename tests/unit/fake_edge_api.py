"""The OpenZiti controller's Edge Management API, faked at the HTTP level for ZitiClient.

Answers have the documented shapes of openziti/edge-api management.yml: the envelopes
(``{"data": …, "meta": …}`` and ``{"error": {"code", "message", …}, "meta": …}``) and the
field names of its definitions (``identityDetail``, ``currentApiSessionDetail``,
``createEnvelope``, ``pagination``…). tests/unit/edge_api_contract.py checks them against
the published spec. (tests/unit/fake_controller.py is another fake: of the controller as
the admin services call it, one level up.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

BASE = "https://ctrl.example:1280"
MGMT = "/edge/management/v1"
USER, PASSWORD = "admin", "s3cret"

Handler = Callable[[httpx.Request], httpx.Response]


# --- documented shapes ------------------------------------------------------------------


def meta(pagination: dict[str, int] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}
    if pagination is not None:
        m["pagination"] = pagination
    return m


def ok(data: Any, status: int = 200, **pagination: int) -> httpx.Response:
    return httpx.Response(status, json={"data": data, "meta": meta(pagination or None)})


def listing(items: list[dict[str, Any]], *, limit: int, offset: int, total: int) -> httpx.Response:
    return ok(items, limit=limit, offset=offset, totalCount=total)


def api_error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    """An ``apiErrorEnvelope`` as the controller renders it: empty fields are omitted."""
    error = {
        "code": code,
        "message": message,
        "requestId": "270908d6-f2ef-4577-b973-67bec18ae376",
        **extra,
    }
    return httpx.Response(status, json={"error": error, "meta": meta()})


def entity(entity_id: str, kind: str) -> dict[str, Any]:
    """The ``baseEntity`` fields every detail carries."""
    return {
        "_links": {"self": {"href": f"./{kind}/{entity_id}"}},
        "createdAt": "2026-05-01T10:00:00.000Z",
        "updatedAt": "2026-05-01T10:00:00.000Z",
        "id": entity_id,
        "tags": {},
    }


def created(entity_id: str, kind: str) -> httpx.Response:
    return ok({"_links": {"self": {"href": f"./{kind}/{entity_id}"}}, "id": entity_id}, 201)


def identity_json(
    identity_id: str = "id-1",
    name: str = "vendor-alice",
    *,
    ott: dict[str, Any] | None = None,
    cert: bool = False,
    disabled: bool = False,
    disabled_until: str | None = None,
) -> dict[str, Any]:
    """An ``identityDetail`` as a v2 controller renders it (nil times are omitted)."""
    detail = {
        **entity(identity_id, "identities"),
        "name": name,
        "type": {"entity": "identity-types", "id": "Default", "name": "Default"},
        "typeId": "Default",
        "isAdmin": False,
        "isDefaultAdmin": False,
        "isMfaEnabled": False,
        "roleAttributes": ["vendor"],
        "authenticators": ({"cert": {"fingerprint": "ab12", "id": "auth-1"}} if cert else {}),
        "enrollment": {"ott": ott} if ott is not None else {},
        "disabled": disabled,
        "hasApiSession": False,
        "hasEdgeRouterConnection": False,
        "edgeRouterConnectionStatus": "offline",
        "envInfo": {},
        "sdkInfo": {},
        "externalId": None,
        "appData": {},
        "authPolicy": {"entity": "auth-policies", "id": "default", "name": "Default"},
        "authPolicyId": "default",
        "defaultHostingCost": 0,
        "defaultHostingPrecedence": "default",
        "serviceHostingCosts": {},
        "serviceHostingPrecedences": {},
        "interfaces": None,
        "permissions": None,
    }
    if disabled:
        detail["disabledAt"] = "2026-05-01T11:00:00.000Z"
    if disabled_until is not None:
        detail["disabledUntil"] = disabled_until
    return detail


def ott_json(
    expires_at: str, jwt: str = "eyJhbGciOi.ott.jwt", eid: str = "enr-1"
) -> dict[str, Any]:
    return {"id": eid, "jwt": jwt, "token": "0a1b2c", "expiresAt": expires_at}


class FakeEdgeApi:
    """The controller's Edge Management API over HTTP (an ``httpx`` handler): it logs in,
    checks ``zt-session``, answers the routes a test gives it and records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        self.logins = 0
        self.valid_tokens: set[str] = set()

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == f"{MGMT}/authenticate":
            return self._authenticate(request)
        if (request.method, path) != ("GET", f"{MGMT}/version"):
            token = request.headers.get("zt-session")
            if token not in self.valid_tokens:
                return api_error(
                    401,
                    "UNAUTHORIZED",
                    "The request could not be completed. The session is not authorized "
                    "or the credentials are invalid",
                )
        handler = self.routes.get((request.method, path))
        if handler is None:
            return api_error(
                404, "NOT_FOUND", "The resource requested was not found or is no longer available"
            )
        return handler(request)

    def _authenticate(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("method") == "password"
        body = json.loads(request.content)
        if body != {"username": USER, "password": PASSWORD}:
            return api_error(401, "INVALID_AUTH", "The authentication request failed")
        self.logins += 1
        token = f"tok-{self.logins}"
        self.valid_tokens.add(token)
        return ok(
            {
                **entity(f"apisess-{self.logins}", "current-api-session"),
                "expiresAt": "2026-05-01T12:30:00.000Z",
                "expirationSeconds": 1800,
                "token": token,
                "identity": {"entity": "identities", "id": "admin-id", "name": "Default Admin"},
                "identityId": "admin-id",
                "authenticatorId": "admin-updb",
                "ipAddress": "127.0.0.1",
                "configTypes": [],
                "authQueries": [],
                "isMfaRequired": False,
                "isMfaComplete": False,
                "isCertExtendable": False,
                "lastActivityAt": "2026-05-01T12:00:00.000Z",
                "cachedLastActivityAt": "2026-05-01T12:00:00.000Z",
            }
        )

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]
