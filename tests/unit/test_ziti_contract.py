"""The client and both fakes against OpenZiti's published Edge Management API (v0.28.1).

(a) every public ZitiClient method once, its requests and the fake's answers checked;
(b) the checker bites; (c) the objects tests/unit/fake_controller.py returns are what the
real API's JSON parses to; and the list of spec/live-controller disagreements.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.ziti import (
    Circuit,
    ControllerResponseError,
    EnrollmentToken,
    Identity,
    OttEnrollment,
    Service,
    ZitiClient,
    ZitiLimits,
)
from tests.unit import fake_controller
from tests.unit.edge_api_contract import (
    DEVIATIONS,
    OUT_OF_CONTRACT,
    ContractTransport,
    ContractViolationError,
    Deviation,
    check_request,
    check_response,
    edge_contract,
    off_contract,
)
from tests.unit.fake_edge_api import (
    BASE,
    MGMT,
    PASSWORD,
    USER,
    FakeEdgeApi,
    api_error,
    created,
    entity,
    identity_json,
    listing,
    meta,
    ok,
    ott_json,
)

Handler = Callable[[httpx.Request], httpx.Response]
CIRCUITS = "/fabric/v1/circuits"


def empty() -> httpx.Response:
    """What the controller answers a delete, disable or enable (``EmptyOkData``)."""
    return httpx.Response(200, json={"data": {}, "meta": {}})


def one(item: dict[str, Any]) -> Handler:
    return lambda r: listing([item], limit=100, offset=0, total=1)


def answers(*bodies: dict[str, Any]) -> Handler:
    """Answers ``ok(body)`` with each body in turn."""
    pending: Iterator[dict[str, Any]] = iter(bodies)
    return lambda r: ok(next(pending))


SERVICE = {
    **entity("svc-1", "services"),
    "name": "llm",
    "roleAttributes": ["llm"],
    "configs": [],
    "config": {},
    "encryptionRequired": True,
    "terminatorStrategy": "smartrouting",
    "maxIdleTimeMillis": 0,
    "permissions": ["Invalid"],
    "postureQueries": [],
}
SERVICE_POLICY = {
    **entity("sp-1", "service-policies"),
    "name": "vendor-dial",
    "type": "Dial",
    "semantic": "AnyOf",
    "identityRoles": ["#vendor"],
    "identityRolesDisplay": [{"name": "#vendor", "role": "#vendor"}],
    "serviceRoles": ["#llm"],
    "serviceRolesDisplay": [{"name": "#llm", "role": "#llm"}],
    "postureCheckRoles": None,
    "postureCheckRolesDisplay": [],
}
EDGE_ROUTER_POLICY = {
    **entity("erp-1", "edge-router-policies"),
    "name": "vendor-routers",
    "semantic": "AnyOf",
    "identityRoles": ["#vendor"],
    "identityRolesDisplay": [{"name": "#vendor", "role": "#vendor"}],
    "edgeRouterRoles": ["#all"],
    "edgeRouterRolesDisplay": [{"name": "#all", "role": "#all"}],
    "isSystem": False,
}
API_SESSION = {
    **entity("as-1", "api-sessions"),
    "token": "0f6b1c4e",
    "identityId": "id-1",
    "identity": {"entity": "identities", "id": "id-1", "name": "vendor-alice"},
    "authenticatorId": "auth-1",
    "ipAddress": "10.0.0.5",
    "configTypes": [],
    "authQueries": [],
    "isMfaRequired": False,
    "isMfaComplete": False,
    "isCertExtendable": False,
    "lastActivityAt": "2026-05-01T11:30:00.000Z",
    "cachedLastActivityAt": "2026-05-01T11:30:00.000Z",
}
SESSION = {
    **entity("s-1", "sessions"),
    "token": "4e1d9a0b",
    "type": "Dial",
    "identityId": "id-1",
    "apiSessionId": "as-1",
    "apiSession": {"entity": "api-sessions", "id": "as-1"},
    "serviceId": "svc-1",
    "service": {"entity": "services", "id": "svc-1", "name": "llm"},
    "edgeRouters": [],
    "servicePolicies": [],
}
CIRCUIT = {
    "id": "circ-1",
    "createdAt": "2026-05-01T11:00:00.000Z",
    "clientId": "cl-1",
    "service": {"id": "svc-1", "name": "llm"},
    "path": {"nodes": [{"id": "r1", "name": "edge-a"}], "links": []},
}
PENDING = identity_json("id-1", ott=ott_json("2099-01-01T00:00:00.000Z", eid="enr-1"))
FRESH = identity_json("id-9", ott=ott_json("2099-01-01T00:00:00.000Z", eid="enr-9"))


# --- (a) every public method, request and answer checked -------------------------------

Call = tuple[str, list[tuple[str, str, Handler]], Callable[[ZitiClient], object]]
CALLS: list[Call] = [
    ("version", [("GET", "/version", lambda r: ok({"version": "v2.0.3"}))], ZitiClient.version),
    ("list_identities", [("GET", "/identities", one(PENDING))], lambda c: c.list_identities()),
    (
        "get_identity",
        [("GET", "/identities/id-1", answers(PENDING))],
        lambda c: c.get_identity("id-1"),
    ),
    (
        "create_identity",
        [
            ("POST", "/identities", lambda r: created("id-9", "identities")),
            ("GET", "/identities/id-9", answers(FRESH)),
        ],
        lambda c: c.create_identity(
            "a", type="User", role_attributes=["v"], enrollment_minutes=None
        ),
    ),
    (
        "create_identity",
        [
            ("POST", "/identities", lambda r: created("id-9", "identities")),
            ("POST", "/enrollments", lambda r: created("enr-9", "enrollments")),
            ("GET", "/identities/id-9", answers(FRESH)),
        ],
        lambda c: c.create_identity("a", type="Device", role_attributes=[], enrollment_minutes=30),
    ),
    (
        "delete_identity",
        [("DELETE", "/identities/id-1", lambda r: empty())],
        lambda c: c.delete_identity("id-1"),
    ),
    (
        "disable_identity",
        [("POST", "/identities/id-1/disable", lambda r: empty())],
        lambda c: c.disable_identity("id-1", 15),
    ),
    (
        "enable_identity",
        [("POST", "/identities/id-1/enable", lambda r: empty())],
        lambda c: c.enable_identity("id-1"),
    ),
    (
        "reissue_enrollment",
        [
            ("GET", "/identities/id-1", answers(PENDING, PENDING)),
            ("POST", "/enrollments/enr-1/refresh", lambda r: empty()),  # RespondWithEmptyOk
        ],
        lambda c: c.reissue_enrollment("id-1", 60),
    ),
    (
        "reissue_enrollment",
        [
            ("GET", "/identities/id-1", answers(identity_json("id-1"), PENDING)),
            ("POST", "/enrollments", lambda r: created("enr-1", "enrollments")),
        ],
        lambda c: c.reissue_enrollment("id-1", 60),
    ),
    (
        "list_services",
        [("GET", "/services", one(SERVICE))],
        lambda c: c.list_services('name = "llm"'),
    ),
    (
        "create_service_policy",
        [("POST", "/service-policies", lambda r: created("sp-1", "service-policies"))],
        lambda c: c.create_service_policy(
            "p", type="Bind", identity_roles=["@id-1"], service_roles=["#llm"]
        ),
    ),
    (
        "delete_service_policy",
        [("DELETE", "/service-policies/sp-1", lambda r: empty())],
        lambda c: c.delete_service_policy("sp-1"),
    ),
    (
        "list_service_policies",
        [("GET", "/service-policies", one(SERVICE_POLICY))],
        lambda c: c.list_service_policies(),
    ),
    (
        "create_edge_router_policy",
        [("POST", "/edge-router-policies", lambda r: created("erp-1", "edge-router-policies"))],
        lambda c: c.create_edge_router_policy(
            "r", identity_roles=["#v"], edge_router_roles=["#all"]
        ),
    ),
    (
        "delete_edge_router_policy",
        [("DELETE", "/edge-router-policies/erp-1", lambda r: empty())],
        lambda c: c.delete_edge_router_policy("erp-1"),
    ),
    (
        "list_edge_router_policies",
        [("GET", "/edge-router-policies", one(EDGE_ROUTER_POLICY))],
        lambda c: c.list_edge_router_policies(),
    ),
    (
        "list_api_sessions",
        [("GET", "/api-sessions", one(API_SESSION))],
        lambda c: c.list_api_sessions(),
    ),
    ("list_sessions", [("GET", "/sessions", one(SESSION))], lambda c: c.list_sessions()),
    ("list_circuits", [("GET", CIRCUITS, one(CIRCUIT))], lambda c: c.list_circuits()),
]


def serve(fake: FakeEdgeApi) -> tuple[ZitiClient, ContractTransport]:
    transport = ContractTransport(fake)
    client = ZitiClient(
        BASE, USER, PASSWORD, verify=False, transport=transport, limits=ZitiLimits(backoff_s=0)
    )
    return client, transport


def full(path: str) -> str:
    return path if path.startswith("/fabric/") else MGMT + path


@pytest.mark.parametrize(("method", "routes", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_each_client_method_speaks_the_spec(
    method: str, routes: list[tuple[str, str, Handler]], call: Callable[[ZitiClient], object]
) -> None:
    fake = FakeEdgeApi()
    for verb, path, handler in routes:
        fake.route(verb, full(path), handler)
    client, transport = serve(fake)
    with client:
        call(client)
    sent = {(e.operation.method, e.operation.path) for e in transport.exchanges}
    for verb, path, _ in routes:
        assert (verb, full(path)) in sent, f"{method}: {verb} {full(path)} was never sent"
    assert all(e.exempt is None for e in transport.exchanges)
    outside = {
        (e.operation.method, e.operation.path, e.operation.out_of_contract)
        for e in transport.exchanges
        if e.operation.template is None
    }
    assert outside == {
        (verb, full(path), OUT_OF_CONTRACT[(verb, full(path))])
        for verb, path, _ in routes
        if (verb, full(path)) in OUT_OF_CONTRACT
    }


def test_the_table_covers_every_public_method() -> None:
    public = {
        name
        for name, value in vars(ZitiClient).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert {c[0] for c in CALLS} == public - {"close"}


def test_client_tests_send_everything_through_the_contract() -> None:
    source = (Path(__file__).parent / "test_ziti_client.py").read_text()
    assert "httpx.MockTransport(" not in source


# --- (b) the checker bites --------------------------------------------------------------

IDENTITY = {"name": "a", "type": "User", "isAdmin": False}


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "found"),
    [
        ("GET", f"{MGMT}/identitiez", {}, None, "GET /edge/management/v1/identitiez: no path"),
        ("GET", f"{MGMT}/identities/id-1/nonsense", {}, None, "no path"),
        ("GET", "/fabric/v1/links", {}, None, "expected a path under /edge/management/v1"),
        ("PUT", f"{MGMT}/version", {}, None, "PUT /edge/management/v1/version"),
        ("POST", f"{MGMT}/identities/id-1", {}, IDENTITY, "not POST"),
        ("GET", f"{MGMT}/identities", {"sort": "name"}, None, "'sort' is not declared"),
        ("GET", f"{MGMT}/identities", {"limit": "ten"}, None, "'limit' expected integer"),
        ("POST", f"{MGMT}/authenticate", {}, {"username": "admin"}, "'method' missing"),
        ("POST", f"{MGMT}/identities", {}, {**IDENTITY, "isAdmin": "no"}, "at /isAdmin"),
        ("POST", f"{MGMT}/identities", {}, {"name": "a", "isAdmin": False}, '"type" is a required'),
        ("POST", f"{MGMT}/identities", {}, {**IDENTITY, "type": "Admin"}, "at /type"),
        ("POST", f"{MGMT}/identities", {}, None, "expected a JSON body"),
        ("POST", f"{MGMT}/identities/id-1/enable", {}, {}, "declares none"),
        ("POST", f"{MGMT}/identities/id-1/disable", {}, {"minutes": 5}, "durationMinutes"),
    ],
)
def test_a_request_off_the_spec_fails(
    method: str, path: str, query: dict[str, str], body: Any, found: str
) -> None:
    with pytest.raises(ContractViolationError, match=re.escape(found)) as info:
        check_request(method, path, query, body)
    assert method in str(info.value) and path in str(info.value)


def without(detail: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != key}


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "found"),
    [
        (
            "GET",
            f"{MGMT}/identities/id-1",
            200,
            {"data": without(PENDING, "name"), "meta": {}},
            '"name" is a required',
        ),
        (
            "GET",
            f"{MGMT}/identities/id-1",
            200,
            {"data": {**PENDING, "isAdmin": "no"}, "meta": {}},
            "at /data/isAdmin",
        ),
        ("GET", f"{MGMT}/identities/id-1", 200, {"data": PENDING}, '"meta" is a required'),
        (
            "GET",
            f"{MGMT}/identities",
            200,
            {"data": [without(PENDING, "typeId")], "meta": meta()},
            "at /data/0",
        ),
        (
            "GET",
            f"{MGMT}/services",
            200,
            {"data": [without(SERVICE, "_links")], "meta": meta()},
            '"_links" is a required',
        ),
        (
            "GET",
            f"{MGMT}/version",
            404,
            {"error": {"code": "NOT_FOUND"}, "meta": {}},
            "HTTP 404, which",
        ),
        ("DELETE", f"{MGMT}/identities/id-1", 200, None, "expected a JSON body"),
        (
            "GET",
            f"{MGMT}/identities/id-1",
            404,
            {"error": {"code": "NOT_FOUND", "cause": None}, "meta": {}},
            "at /error/cause",
        ),
    ],
)
def test_an_answer_off_the_spec_fails(
    method: str, path: str, status: int, body: Any, found: str
) -> None:
    with pytest.raises(ContractViolationError, match=re.escape(found)) as info:
        check_response(method, path, status, body)
    assert f"{method} {path}" in str(info.value)


def test_the_transport_fails_the_test_not_the_client() -> None:
    fake = FakeEdgeApi()
    fake.route("GET", f"{MGMT}/identities/id-1", answers(without(PENDING, "enrollment")))
    client, transport = serve(fake)
    with client, pytest.raises(ContractViolationError, match='"enrollment" is a required'):
        client.get_identity("id-1")
    assert [e.status for e in transport.exchanges] == [200]  # the login passed


def test_an_exemption_needs_a_reason_and_is_recorded() -> None:
    with pytest.raises(ValueError, match="reason"):
        off_contract(ok({}), " ")
    fake = FakeEdgeApi()
    fake.route(
        "GET", f"{MGMT}/identities/id-1", lambda r: off_contract(ok([]), "a list, on purpose")
    )
    client, transport = serve(fake)
    with client, pytest.raises(ControllerResponseError, match="identity"):
        client.get_identity("id-1")
    assert transport.exchanges[-1].exempt == "a list, on purpose"


def test_an_undeclared_error_status_fails_even_in_an_error_envelope() -> None:
    fake = FakeEdgeApi()
    fake.route("GET", f"{MGMT}/version", lambda r: api_error(404, "NOT_FOUND", "gone"))
    client, _ = serve(fake)
    with client, pytest.raises(ContractViolationError, match="GET /edge/management/v1/version"):
        client.version()


# --- (c) the Python-level fake returns what the real API's JSON parses to ---------------

GO_ZERO_TIME = "0001-01-01T00:00:00.000Z"  # what Go renders for an unset time


def rfc3339(moment: datetime | None) -> str:
    if moment is None:
        return GO_ZERO_TIME
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def identity_api(identity: Identity) -> dict[str, Any]:
    """The ``identityDetail`` a controller renders for this identity."""
    detail = identity_json(identity.id, identity.name, disabled=identity.disabled)
    detail.pop("disabledAt", None)
    authenticators: dict[str, Any] = {}
    if identity.has_cert_authenticator:
        authenticators["cert"] = {"id": f"cert-{identity.id}", "fingerprint": "ab12"}
    if identity.has_updb_authenticator:
        authenticators["updb"] = {"id": f"updb-{identity.id}", "username": identity.name}
    ott = identity.ott
    detail.update(
        createdAt=rfc3339(identity.created_at),
        type={"entity": "identity-types", "id": identity.type_name, "name": identity.type_name},
        typeId=identity.type_name,
        roleAttributes=list(identity.role_attributes),
        isAdmin=identity.is_admin,
        authenticators=authenticators,
        enrollment={}
        if ott is None
        else {"ott": ott_json(rfc3339(ott.expires_at), ott.jwt, ott.id)},
        hasApiSession=identity.has_api_session,
        hasEdgeRouterConnection=identity.has_edge_router_connection,
    )
    for key, moment in (
        ("disabledAt", identity.disabled_at),
        ("disabledUntil", identity.disabled_until),
    ):
        if moment is not None:
            detail[key] = rfc3339(moment)
    return detail


def service_api(service: Service) -> dict[str, Any]:
    """The ``serviceDetail`` a controller renders for this service (to an admin)."""
    return {
        **SERVICE,
        **entity(service.id, "services"),
        "name": service.name,
        "roleAttributes": list(service.role_attributes),
        "configs": list(service.configs),
        "encryptionRequired": service.encryption_required,
        "terminatorStrategy": service.terminator_strategy,
    }


def circuit_api(circuit: Circuit) -> dict[str, Any]:
    """The fabric ``circuitDetail`` (out of this spec; its shape as Circuit.from_api reads it)."""
    detail: dict[str, Any] = {
        "id": circuit.id,
        "createdAt": rfc3339(circuit.created_at),
        "clientId": circuit.client_id,
        "service": {"id": circuit.service_id, "name": circuit.service_name},
        "path": {"nodes": [{"id": r, "name": r} for r in circuit.path_routers], "links": []},
    }
    if circuit.terminator_id is not None:
        detail["terminator"] = {"id": circuit.terminator_id}
    return detail


@pytest.fixture
def python_fake() -> fake_controller.FakeController:
    """The Python-level fake after the calls a service test makes."""
    fake = fake_controller.FakeController()
    fake.create_identity(
        "vendor-alice", type="User", role_attributes=["vendor"], enrollment_minutes=None
    )
    fake.create_identity("vendor-bob", type="Device", role_attributes=[], enrollment_minutes=30)
    fake.identities["z2"]["enrolled"] = True
    fake.disable_identity("z2", None)
    fake.circuits["c1"] = ("z1", "tiny")
    return fake


def envelope_of_list(path: str, items: list[dict[str, Any]]) -> None:
    body = {"data": items, "meta": meta({"limit": 100, "offset": 0, "totalCount": len(items)})}
    check_response("GET", path, 200, body)


def test_fake_identities_are_what_the_api_answers(
    python_fake: fake_controller.FakeController,
) -> None:
    identities = python_fake.list_identities()
    assert identities
    details = [identity_api(i) for i in identities]
    for identity, detail in zip(identities, details, strict=True):
        assert Identity.from_api(detail) == identity
        check_response("GET", f"{MGMT}/identities/{identity.id}", 200, {"data": detail, "meta": {}})
    envelope_of_list(f"{MGMT}/identities", details)


def test_fake_services_are_what_the_api_answers(
    python_fake: fake_controller.FakeController,
) -> None:
    services = python_fake.list_services()
    assert services
    details = [service_api(s) for s in services]
    for service, detail in zip(services, details, strict=True):
        assert Service.from_api(detail) == service
    envelope_of_list(f"{MGMT}/services", details)


def test_fake_circuits_parse_back_and_are_declared_out_of_contract(
    python_fake: fake_controller.FakeController,
) -> None:
    circuits = python_fake.list_circuits()
    assert circuits
    for circuit in circuits:
        assert Circuit.from_api(circuit_api(circuit)) == circuit
    assert (
        check_response("GET", CIRCUITS, 200, {}).out_of_contract
        == OUT_OF_CONTRACT[("GET", CIRCUITS)]
    )


def read_token_back(identity: Identity) -> EnrollmentToken:
    """Create ``identity`` through the client against a controller answering its detail."""
    fake = FakeEdgeApi()
    fake.route("POST", f"{MGMT}/identities", lambda r: created(identity.id, "identities"))
    fake.route("GET", f"{MGMT}/identities/{identity.id}", answers(identity_api(identity)))
    client, _ = serve(fake)
    with client:
        return client.create_identity("x", type="User", role_attributes=[], enrollment_minutes=None)


def test_fake_enrollment_tokens_are_what_the_client_reads_from_the_api(
    python_fake: fake_controller.FakeController,
) -> None:
    tokens = [
        python_fake.create_identity(
            "vendor-carol", type="User", role_attributes=[], enrollment_minutes=None
        ),
        python_fake.reissue_enrollment("z1", 60),
    ]
    (template,) = [i for i in python_fake.list_identities() if i.id == "z1"]
    for token in tokens:
        ott = OttEnrollment(token.enrollment_id, token.expires_at, token.jwt)
        identity = dataclasses.replace(template, id=token.identity_id, ott=ott)
        assert read_token_back(identity) == token


# --- where the live controller wins -----------------------------------------------------

#: For each patching deviation: an answer the live controller gives, which the spec as
#: published refuses.
LIVE_ANSWERS: dict[str, tuple[str, str, int, Any]] = {
    "apiSessionDetail-cachedUpdatedAt": (
        "GET",
        f"{MGMT}/api-sessions",
        200,
        {"data": [API_SESSION], "meta": meta({"limit": 1, "offset": 0, "totalCount": 1})},
    ),
    "servicePolicyDetail-postureCheckRoles-null": (
        "GET",
        f"{MGMT}/service-policies/sp-1",
        200,
        {"data": SERVICE_POLICY, "meta": {}},
    ),
    "identityDetail-interfaces-null": (
        "GET",
        f"{MGMT}/identities/id-1",
        200,
        {"data": PENDING, "meta": {}},
    ),
    "interface-addresses-null": (
        "GET",
        f"{MGMT}/identities/id-1",
        200,
        {
            "data": {
                **PENDING,
                "interfaces": [
                    {
                        "name": "ifb0",
                        "hardwareAddress": "1a:74:3a:c3:40:c3",
                        "mtu": 1500,
                        "index": 2,
                        "isUp": False,
                        "isRunning": False,
                        "isLoopback": False,
                        "isBroadcast": True,
                        "isMulticast": False,
                        "addresses": None,
                    }
                ],
            },
            "meta": {},
        },
    ),
    "serviceDetail-config-null": (
        "GET",
        f"{MGMT}/services/svc-1",
        200,
        {"data": {**SERVICE, "config": None}, "meta": {}},
    ),
    "any-operation-HTTP-500": (
        "POST",
        f"{MGMT}/service-policies",
        500,
        {"error": {"code": "UNHANDLED", "message": "An unhandled error occurred"}, "meta": meta()},
    ),
}


@pytest.mark.parametrize("deviation", DEVIATIONS, ids=lambda d: d.name)
def test_spec_deviations_are_listed_and_each_patch_is_needed(deviation: Deviation) -> None:
    assert deviation.reason and "\n" not in deviation.reason
    if deviation.patch is None:  # a note: the spec allows what the client does
        assert deviation.name not in LIVE_ANSWERS
        return
    method, path, status, body = LIVE_ANSWERS[deviation.name]
    with pytest.raises(ContractViolationError):
        edge_contract(patched=False).check_response(method, path, status, body)
    edge_contract().check_response(method, path, status, body)


def test_every_patching_deviation_has_a_live_answer() -> None:
    assert set(LIVE_ANSWERS) == {d.name for d in DEVIATIONS if d.patch is not None}
