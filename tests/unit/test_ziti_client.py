"""ZitiClient against fakes shaped like the Edge Management API's documented answers.

The fake API and the answers' shapes are in tests/unit/fake_edge_api.py: the envelopes of
openziti/edge-api management.yml and the field names of its definitions. See
appliance/ziti/__init__.py for the version.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import appliance.ziti as ziti
from appliance.errors import ApplianceError
from appliance.ziti import (
    ControllerAuthError,
    ControllerRequestError,
    ControllerResponseError,
    ControllerUnreachableError,
    Identity,
    NotFoundError,
    ZitiClient,
    ZitiError,
    ZitiLimits,
    identity_state,
)
from tests.unit.edge_api_contract import ContractTransport, off_contract
from tests.unit.fake_edge_api import (
    BASE,
    MGMT,
    PASSWORD,
    USER,
    FakeEdgeApi,
    Handler,
    api_error,
    created,
    entity,
    identity_json,
    listing,
    meta,
    ok,
    ott_json,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> FakeEdgeApi:
    return FakeEdgeApi()


@pytest.fixture
def client(fake: FakeEdgeApi) -> Iterator[ZitiClient]:
    with ZitiClient(
        BASE,
        USER,
        PASSWORD,
        verify=False,
        transport=ContractTransport(fake),
        limits=ZitiLimits(backoff_s=0),
    ) as c:
        yield c


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


# --- public surface ---------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert sorted(ziti.__all__) == sorted(
        [
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
    )
    assert ziti.__doc__ is not None and "openziti/edge-api" in ziti.__doc__


def test_error_tree_hangs_under_appliance_error() -> None:
    assert issubclass(ZitiError, ApplianceError)
    for cls in (ControllerUnreachableError, ControllerAuthError, ControllerRequestError):
        assert issubclass(cls, ZitiError)
    assert issubclass(NotFoundError, ControllerRequestError)
    assert issubclass(ControllerResponseError, ZitiError)


# --- login ------------------------------------------------------------------------------


def test_logs_in_lazily_once_and_sends_the_token(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route("GET", f"{MGMT}/services", lambda r: listing([], limit=100, offset=0, total=0))
    assert fake.requests == []  # nothing before the first call

    client.list_services()
    client.list_services()

    auth = fake.calls("POST", f"{MGMT}/authenticate")
    assert len(auth) == 1
    assert auth[0].url.params["method"] == "password"
    assert body_of(auth[0]) == {"username": USER, "password": PASSWORD}
    assert "zt-session" not in auth[0].headers
    gets = fake.calls("GET", f"{MGMT}/services")
    assert [r.headers["zt-session"] for r in gets] == ["tok-1", "tok-1"]
    assert str(gets[0].url).startswith(f"{BASE}{MGMT}/services?")


def test_base_url_with_api_path_is_accepted(fake: FakeEdgeApi) -> None:
    fake.route("GET", f"{MGMT}/services", lambda r: listing([], limit=100, offset=0, total=0))
    with ZitiClient(
        f"{BASE}{MGMT}/", USER, PASSWORD, verify=False, transport=ContractTransport(fake)
    ) as c:
        assert c.base_url == BASE
        c.list_services()
    assert fake.calls("GET", f"{MGMT}/services")[0].url.host == "ctrl.example"


def test_expired_session_is_renewed_exactly_once(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route("GET", f"{MGMT}/services", lambda r: listing([], limit=100, offset=0, total=0))
    client.list_services()
    fake.valid_tokens.clear()  # the controller forgot the session (expiry, restart)

    client.list_services()

    assert fake.logins == 2
    gets = fake.calls("GET", f"{MGMT}/services")
    assert [r.headers["zt-session"] for r in gets] == ["tok-1", "tok-1", "tok-2"]


def test_401_after_a_fresh_login_is_an_auth_error_not_a_loop(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route(
        "GET",
        f"{MGMT}/identities",
        lambda r: api_error(401, "UNAUTHORIZED", "The session is not authorized"),
    )
    with pytest.raises(ControllerAuthError) as info:
        client.list_identities()
    assert fake.logins == 2
    assert len(fake.calls("GET", f"{MGMT}/identities")) == 2
    assert BASE in str(info.value) and "UNAUTHORIZED" in str(info.value)


def test_bad_credentials_are_an_auth_error(fake: FakeEdgeApi) -> None:
    with (
        ZitiClient(BASE, USER, "wrong", verify=False, transport=ContractTransport(fake)) as c,
        pytest.raises(ControllerAuthError) as info,
    ):
        c.list_services()
    message = str(info.value)
    assert "INVALID_AUTH" in message and BASE in message and "'admin'" in message
    assert "wrong" not in message  # the password never appears
    assert len(fake.calls("POST", f"{MGMT}/authenticate")) == 1  # a POST: never retried
    assert fake.calls("GET", f"{MGMT}/services") == []


def test_version_needs_no_session(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "GET",
        f"{MGMT}/version",
        lambda r: ok(
            {
                "version": "v2.0.3",
                "revision": "e86e337a1f36",
                "buildDate": "2026-08-20 19:41:33",
                "runtimeVersion": "go1.26.1",
                "capabilities": ["OIDC_AUTH", "HA_CONTROLLER"],
                "apiVersions": {"edge-management": {"v1": {"path": MGMT}}},
            }
        ),
    )
    version = client.version()
    assert version.version == "v2.0.3"
    assert version.capabilities == ("OIDC_AUTH", "HA_CONTROLLER")
    assert fake.logins == 0


# --- pagination -------------------------------------------------------------------------


def test_listing_follows_limit_and_offset_across_three_pages(fake: FakeEdgeApi) -> None:
    everyone = [identity_json(f"id-{n}", f"user-{n}", cert=True) for n in range(5)]

    def page(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"])
        return listing(everyone[offset : offset + limit], limit=limit, offset=offset, total=5)

    fake.route("GET", f"{MGMT}/identities", page)
    with ZitiClient(
        BASE,
        USER,
        PASSWORD,
        verify=False,
        transport=ContractTransport(fake),
        limits=ZitiLimits(page_size=2),
    ) as c:
        found = c.list_identities(filter='roleAttributes contains "vendor"')

    assert [i.name for i in found] == [f"user-{n}" for n in range(5)]
    gets = fake.calls("GET", f"{MGMT}/identities")
    assert [(r.url.params["limit"], r.url.params["offset"]) for r in gets] == [
        ("2", "0"),
        ("2", "2"),
        ("2", "4"),
    ]
    assert {r.url.params["filter"] for r in gets} == {'roleAttributes contains "vendor"'}


def test_listing_that_never_ends_stops_after_100_pages(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return listing([identity_json(f"id-{offset}")], limit=1, offset=offset, total=10**9)

    fake.route("GET", f"{MGMT}/identities", endless)
    with pytest.raises(ControllerResponseError) as info:
        client.list_identities()
    assert len(fake.calls("GET", f"{MGMT}/identities")) == 100
    assert "100 pages" in str(info.value)


def test_listing_without_total_count_is_refused(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route("GET", f"{MGMT}/services", lambda r: ok([]))
    with pytest.raises(ControllerResponseError, match=r"meta\.pagination\.totalCount"):
        client.list_services()


# --- identities -------------------------------------------------------------------------


def test_create_identity_posts_the_documented_body_and_returns_the_jwt(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route("POST", f"{MGMT}/identities", lambda r: created("id-9", "identities"))
    fake.route(
        "GET",
        f"{MGMT}/identities/id-9",
        lambda r: ok(identity_json("id-9", ott=ott_json("2026-05-01T15:00:00.123Z"))),
    )

    token = client.create_identity(
        "vendor-alice", type="User", role_attributes=["vendor"], enrollment_minutes=None
    )

    (post,) = fake.calls("POST", f"{MGMT}/identities")
    assert body_of(post) == {
        "name": "vendor-alice",
        "type": "User",
        "isAdmin": False,
        "roleAttributes": ["vendor"],
        "enrollment": {"ott": True},
    }
    assert token.identity_id == "id-9"
    assert token.enrollment_id == "enr-1"
    assert token.jwt == "eyJhbGciOi.ott.jwt"
    assert token.expires_at == datetime(2026, 5, 1, 15, 0, 0, 123000, tzinfo=UTC)
    assert "eyJ" not in repr(token)  # the secret stays out of logs
    assert fake.calls("POST", f"{MGMT}/enrollments") == []


def test_create_identity_with_a_lifetime_adds_an_ott_enrollment(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route("POST", f"{MGMT}/identities", lambda r: created("id-9", "identities"))
    fake.route("POST", f"{MGMT}/enrollments", lambda r: created("enr-7", "enrollments"))
    fake.route(
        "GET",
        f"{MGMT}/identities/id-9",
        lambda r: ok(identity_json("id-9", ott=ott_json("2026-05-01T12:30:00Z", eid="enr-7"))),
    )
    before = datetime.now(UTC).replace(microsecond=0)

    token = client.create_identity(
        "vendor-bob", type="Device", role_attributes=[], enrollment_minutes=30
    )

    after = datetime.now(UTC)
    (post,) = fake.calls("POST", f"{MGMT}/identities")
    assert "enrollment" not in body_of(post)
    (enrollment,) = fake.calls("POST", f"{MGMT}/enrollments")
    sent = body_of(enrollment)
    assert sent["method"] == "ott" and sent["identityId"] == "id-9"
    expires = datetime.fromisoformat(sent["expiresAt"])
    assert before + timedelta(minutes=30) <= expires <= after + timedelta(minutes=30)
    assert token.enrollment_id == "enr-7"


def test_create_identity_is_undone_when_its_enrollment_fails(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route("POST", f"{MGMT}/identities", lambda r: created("id-9", "identities"))
    fake.route(
        "POST",
        f"{MGMT}/enrollments",
        lambda r: api_error(
            400, "COULD_NOT_VALIDATE", "The supplied request contains an invalid document"
        ),
    )
    fake.route("DELETE", f"{MGMT}/identities/id-9", lambda r: ok({}))

    with pytest.raises(ControllerRequestError) as info:
        client.create_identity("x", type="User", role_attributes=[], enrollment_minutes=5)

    assert info.value.status == 400 and info.value.code == "COULD_NOT_VALIDATE"
    assert len(fake.calls("DELETE", f"{MGMT}/identities/id-9")) == 1
    assert len(fake.calls("POST", f"{MGMT}/identities")) == 1


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"type": "Router", "role_attributes": [], "enrollment_minutes": None}, "identity type"),
        ({"type": "User", "role_attributes": ["#vendor"], "enrollment_minutes": None}, "bare"),
        ({"type": "User", "role_attributes": [], "enrollment_minutes": 0}, "minutes"),
    ],
)
def test_create_identity_refuses_bad_arguments_before_sending(
    fake: FakeEdgeApi, client: ZitiClient, kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        client.create_identity("x", **kwargs)
    assert fake.requests == []


NOW_ISO = "2026-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("identity", "state"),
    [
        (identity_json(ott=ott_json("2026-05-01T12:00:01Z")), "pending"),
        (identity_json(ott=ott_json("2026-05-01T11:59:59Z")), "token expired"),
        (identity_json(), "token expired"),  # neither a token nor a credential
        (identity_json(cert=True), "enrolled"),
        (identity_json(cert=True, disabled=True), "disabled"),
        (identity_json(ott=ott_json("2026-05-01T13:00:00Z"), disabled=True), "disabled"),
    ],
)
def test_identity_state_mapping(identity: dict[str, Any], state: str) -> None:
    parsed = Identity.from_api(identity)
    assert identity_state(parsed, now=NOW) == state
    assert ZitiClient.identity_state(parsed, now=NOW) == state


def test_identity_parses_the_documented_fields(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "GET",
        f"{MGMT}/identities/id-1",
        lambda r: ok(
            identity_json(cert=True, disabled=True, disabled_until="2026-05-01T13:00:00.000Z")
        ),
    )
    identity = client.get_identity("id-1")
    assert identity.type_name == "Default"
    assert identity.role_attributes == ("vendor",)
    assert identity.enrolled and identity.has_cert_authenticator
    assert identity.disabled_until == datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    assert identity.ott is None


def test_disable_and_enable_send_the_documented_bodies(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route("POST", f"{MGMT}/identities/id-1/disable", lambda r: ok({}))
    fake.route("POST", f"{MGMT}/identities/id-1/enable", lambda r: ok({}))

    client.disable_identity("id-1", 15)
    client.disable_identity("id-1", None)
    client.enable_identity("id-1")

    disables = fake.calls("POST", f"{MGMT}/identities/id-1/disable")
    assert [body_of(r) for r in disables] == [{"durationMinutes": 15}, {"durationMinutes": 0}]
    (enable,) = fake.calls("POST", f"{MGMT}/identities/id-1/enable")
    assert enable.content == b""
    with pytest.raises(ValueError, match="minutes"):
        client.disable_identity("id-1", 0)


def test_reissue_refreshes_an_expired_ott_enrollment(fake: FakeEdgeApi, client: ZitiClient) -> None:
    answers = iter(
        [
            identity_json(ott=ott_json("2026-04-01T00:00:00Z", jwt="old.jwt", eid="enr-1")),
            identity_json(ott=ott_json("2099-01-01T00:00:00Z", jwt="new.jwt", eid="enr-1")),
        ]
    )
    fake.route("GET", f"{MGMT}/identities/id-1", lambda r: ok(next(answers)))
    fake.route("POST", f"{MGMT}/enrollments/enr-1/refresh", lambda r: ok({"id": "enr-1"}))

    token = client.reissue_enrollment("id-1", 60)

    (refresh,) = fake.calls("POST", f"{MGMT}/enrollments/enr-1/refresh")
    assert set(body_of(refresh)) == {"expiresAt"}
    assert token.jwt == "new.jwt"
    assert fake.calls("POST", f"{MGMT}/enrollments") == []


def test_reissue_creates_an_enrollment_when_none_is_left(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    answers = iter(
        [identity_json(), identity_json(ott=ott_json("2099-01-01T00:00:00Z", eid="enr-2"))]
    )
    fake.route("GET", f"{MGMT}/identities/id-1", lambda r: ok(next(answers)))
    fake.route("POST", f"{MGMT}/enrollments", lambda r: created("enr-2", "enrollments"))

    token = client.reissue_enrollment("id-1", 60)

    (post,) = fake.calls("POST", f"{MGMT}/enrollments")
    assert body_of(post)["method"] == "ott" and body_of(post)["identityId"] == "id-1"
    assert token.enrollment_id == "enr-2"


def test_reissue_refuses_an_enrolled_identity(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route("GET", f"{MGMT}/identities/id-1", lambda r: ok(identity_json(cert=True)))
    with pytest.raises(ZitiError, match="already enrolled"):
        client.reissue_enrollment("id-1", 60)
    assert [r for r in fake.requests if r.method == "POST" and "enrollments" in r.url.path] == []


def test_404_is_not_found_with_code_message_and_request(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_identity("missing")
    error = info.value
    assert error.status == 404
    assert error.code == "NOT_FOUND"
    assert error.api_message == "The resource requested was not found or is no longer available"
    assert (error.method, error.path) == ("GET", f"{MGMT}/identities/missing")
    assert "GET https://ctrl.example:1280/edge/management/v1/identities/missing" in str(error)
    assert "expected HTTP 2xx, got HTTP 404 NOT_FOUND" in str(error)


def test_ids_cannot_change_the_request_path(fake: FakeEdgeApi, client: ZitiClient) -> None:
    with pytest.raises(ValueError, match="entity id"):
        client.delete_identity("../service-policies/x")
    assert fake.requests == []


# --- retries ----------------------------------------------------------------------------


def flaky(fail: list[Exception | httpx.Response], then: Handler) -> Handler:
    """A handler that fails as listed (raising or answering), then behaves."""

    def handler(request: httpx.Request) -> httpx.Response:
        if fail:
            failure = fail.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return then(request)

    return handler


def test_get_is_retried_after_a_connection_error(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "GET",
        f"{MGMT}/services",
        flaky(
            [httpx.ConnectError("connection reset")],
            lambda r: listing(
                [
                    {
                        **entity("svc-1", "services"),
                        "name": "llm",
                        "roleAttributes": ["llm"],
                        "configs": ["cfg-1"],
                        "config": {},
                        "encryptionRequired": True,
                        "terminatorStrategy": "smartrouting",
                        "maxIdleTimeMillis": 0,
                        "permissions": ["Invalid"],
                        "postureQueries": [],
                    }
                ],
                limit=100,
                offset=0,
                total=1,
            ),
        ),
    )
    services = client.list_services()
    assert [s.name for s in services] == ["llm"]
    assert services[0].encryption_required is True
    assert len(fake.calls("GET", f"{MGMT}/services")) == 2


def test_get_retries_5xx_with_growing_backoff_then_gives_up(fake: FakeEdgeApi) -> None:
    fake.route(
        "GET",
        f"{MGMT}/identities/id-1",
        lambda r: api_error(503, "CLUSTER_HAS_NO_LEADER", "cluster has no leader"),
    )
    sleeps: list[float] = []
    with ZitiClient(
        BASE, USER, PASSWORD, verify=False, retries=2, transport=ContractTransport(fake)
    ) as c:
        c._sleep = sleeps.append
        with pytest.raises(ControllerRequestError) as info:
            c.get_identity("id-1")
    assert len(fake.calls("GET", f"{MGMT}/identities/id-1")) == 3
    assert sleeps == [0.25, 0.5]
    assert info.value.status == 503 and info.value.code == "CLUSTER_HAS_NO_LEADER"


def test_delete_is_retried_after_a_timeout(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "DELETE",
        f"{MGMT}/service-policies/sp-1",
        flaky([httpx.ReadTimeout("timed out")], lambda r: ok({})),
    )
    client.delete_service_policy("sp-1")
    assert len(fake.calls("DELETE", f"{MGMT}/service-policies/sp-1")) == 2


def test_post_is_never_retried_after_a_connection_error(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route(
        "POST",
        f"{MGMT}/identities",
        flaky([httpx.ReadTimeout("timed out")], lambda r: created("id-1", "identities")),
    )
    with pytest.raises(ControllerUnreachableError) as info:
        client.create_identity("x", type="User", role_attributes=[], enrollment_minutes=None)
    assert len(fake.calls("POST", f"{MGMT}/identities")) == 1
    assert info.value.hint is not None and "may or may not have been applied" in info.value.hint


def test_post_is_never_retried_after_a_5xx(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "POST",
        f"{MGMT}/service-policies",
        lambda r: api_error(500, "UNHANDLED", "An unhandled error occurred"),
    )
    with pytest.raises(ControllerRequestError) as info:
        client.create_service_policy(
            "vendor-dial", type="Dial", identity_roles=["#vendor"], service_roles=["#llm"]
        )
    assert len(fake.calls("POST", f"{MGMT}/service-policies")) == 1
    assert info.value.status == 500 and info.value.code == "UNHANDLED"
    assert "POST" in str(info.value) and "/service-policies" in str(info.value)


# --- unreachable ------------------------------------------------------------------------


def test_refused_connection_names_the_controller_url() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    with (
        ZitiClient(url, USER, PASSWORD, verify=False, timeout=5) as c,
        pytest.raises(ControllerUnreachableError) as info,
    ):
        c.list_identities()
    assert url in str(info.value)
    assert info.value.url == url
    assert info.value.hint is not None and "controller is running" in info.value.hint


def test_unreachable_get_is_tried_retries_plus_one_times() -> None:
    seen: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    with (
        ZitiClient(
            BASE,
            USER,
            PASSWORD,
            verify=False,
            retries=2,
            transport=ContractTransport(down),
            limits=ZitiLimits(backoff_s=0),
        ) as c,
        pytest.raises(ControllerUnreachableError) as info,
    ):
        c.version()
    assert len(seen) == 3
    assert BASE in str(info.value) and "Name or service not known" in str(info.value)


def test_tls_failure_points_at_the_ca_bundle() -> None:
    def bad_cert(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

    with (
        ZitiClient(BASE, USER, PASSWORD, verify=False, transport=ContractTransport(bad_cert)) as c,
        pytest.raises(ControllerUnreachableError) as info,
    ):
        c.list_services()
    assert "TLS" in str(info.value)
    assert info.value.hint is not None and "verify" in info.value.hint


def test_missing_ca_bundle_fails_at_construction(tmp_path: Any) -> None:
    with pytest.raises(ZitiError, match="CA bundle"):
        ZitiClient(BASE, USER, PASSWORD, verify=str(tmp_path / "absent.pem"))


# --- size limit -------------------------------------------------------------------------


def test_oversize_body_is_refused(fake: FakeEdgeApi, client: ZitiClient) -> None:
    huge = b'{"data": [], "meta": {}, "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    fake.route("GET", f"{MGMT}/services", lambda r: httpx.Response(200, content=huge))
    with pytest.raises(ControllerResponseError, match="at most 16777216 bytes"):
        client.list_services()
    assert len(fake.calls("GET", f"{MGMT}/services")) == 1  # not retried


def test_oversize_body_without_length_is_cut_off(fake: FakeEdgeApi, client: ZitiClient) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB on offer, streamed without a Content-Length
            sent.append(1)
            yield b"x" * (1024 * 1024)

    fake.route(
        "GET",
        f"{MGMT}/services",
        lambda r: off_contract(
            httpx.Response(200, content=chunks()),
            "not JSON and streamed without a length: the client must stop reading at the cap",
        ),
    )
    with pytest.raises(ControllerResponseError, match="more than that sent"):
        client.list_services()
    assert len(sent) <= 17  # reading stopped just past the cap


def test_body_at_the_limit_is_accepted_one_byte_more_is_not() -> None:
    answer = json.dumps({"data": {"version": "v2.0.3"}, "meta": meta()}).encode()

    def version(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer)

    for cap, accepted in ((len(answer), True), (len(answer) - 1, False)):
        with ZitiClient(
            BASE,
            USER,
            PASSWORD,
            verify=False,
            transport=ContractTransport(version),
            limits=ZitiLimits(max_body_bytes=cap),
        ) as c:
            if accepted:
                assert c.version().version == "v2.0.3"
            else:
                with pytest.raises(ControllerResponseError, match=f"at most {cap} bytes"):
                    c.version()


# --- policies, sessions, circuits -------------------------------------------------------


def test_service_policy_create_list_delete(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route("POST", f"{MGMT}/service-policies", lambda r: created("sp-1", "service-policies"))
    fake.route(
        "GET",
        f"{MGMT}/service-policies",
        lambda r: listing(
            [
                {
                    **entity("sp-1", "service-policies"),
                    "name": "vendor-dial",
                    "type": "Dial",
                    "semantic": "AnyOf",
                    "identityRoles": ["#vendor"],
                    "identityRolesDisplay": [{"name": "#vendor", "role": "#vendor"}],
                    "serviceRoles": ["@svc-1"],
                    "serviceRolesDisplay": [{"name": "@llm", "role": "@svc-1"}],
                    "postureCheckRoles": None,
                    "postureCheckRolesDisplay": [],
                }
            ],
            limit=100,
            offset=0,
            total=1,
        ),
    )
    fake.route("DELETE", f"{MGMT}/service-policies/sp-1", lambda r: ok({}))

    policy_id = client.create_service_policy(
        "vendor-dial", type="Dial", identity_roles=["#vendor"], service_roles=["@svc-1"]
    )
    policies = client.list_service_policies(filter='type = "Dial"')
    client.delete_service_policy(policy_id)

    assert policy_id == "sp-1"
    (post,) = fake.calls("POST", f"{MGMT}/service-policies")
    assert body_of(post) == {
        "name": "vendor-dial",
        "type": "Dial",
        "semantic": "AnyOf",
        "identityRoles": ["#vendor"],
        "serviceRoles": ["@svc-1"],
    }
    assert policies[0].identity_roles == ("#vendor",) and policies[0].posture_check_roles == ()
    assert len(fake.calls("DELETE", f"{MGMT}/service-policies/sp-1")) == 1


@pytest.mark.parametrize(
    ("identity_roles", "service_roles"),
    [([], ["#llm"]), (["#vendor"], []), (["vendor"], ["#llm"])],
)
def test_service_policy_on_nothing_is_refused(
    fake: FakeEdgeApi,
    client: ZitiClient,
    identity_roles: list[str],
    service_roles: list[str],
) -> None:
    with pytest.raises(ValueError, match="role"):
        client.create_service_policy(
            "p", type="Dial", identity_roles=identity_roles, service_roles=service_roles
        )
    assert fake.requests == []


def test_edge_router_policy_body(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "POST", f"{MGMT}/edge-router-policies", lambda r: created("erp-1", "edge-router-policies")
    )
    fake.route("DELETE", f"{MGMT}/edge-router-policies/erp-1", lambda r: ok({}))
    policy_id = client.create_edge_router_policy(
        "vendor-routers", identity_roles=["#vendor"], edge_router_roles=["#all"], semantic="AllOf"
    )
    client.delete_edge_router_policy(policy_id)
    (post,) = fake.calls("POST", f"{MGMT}/edge-router-policies")
    assert body_of(post) == {
        "name": "vendor-routers",
        "semantic": "AllOf",
        "identityRoles": ["#vendor"],
        "edgeRouterRoles": ["#all"],
    }
    assert len(fake.calls("DELETE", f"{MGMT}/edge-router-policies/erp-1")) == 1


def test_sessions_drop_their_tokens(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "GET",
        f"{MGMT}/api-sessions",
        lambda r: listing(
            [
                {
                    **entity("as-1", "api-sessions"),
                    "token": "SECRET-API",
                    "identityId": "id-1",
                    "identity": {"entity": "identities", "id": "id-1", "name": "vendor-alice"},
                    "authenticatorId": "auth-1",
                    "ipAddress": "10.0.0.5",
                    "configTypes": [],
                    "authQueries": [],
                    "isMfaRequired": False,
                    "isMfaComplete": False,
                    "isCertExtendable": False,
                    "createdAt": "2026-05-01T11:00:00.000Z",
                    "lastActivityAt": "2026-05-01T11:30:00.000Z",
                }
            ],
            limit=100,
            offset=0,
            total=1,
        ),
    )
    fake.route(
        "GET",
        f"{MGMT}/sessions",
        lambda r: listing(
            [
                {
                    **entity("s-1", "sessions"),
                    "token": "SECRET-SESSION",
                    "type": "Dial",
                    "identityId": "id-1",
                    "apiSessionId": "as-1",
                    "apiSession": {"id": "as-1"},
                    "serviceId": "svc-1",
                    "service": {"id": "svc-1", "name": "llm"},
                    "edgeRouters": [],
                    "servicePolicies": [],
                    "createdAt": "2026-05-01T11:00:00.000Z",
                }
            ],
            limit=100,
            offset=0,
            total=1,
        ),
    )
    (api_session,) = client.list_api_sessions(filter='identity = "id-1"')
    (session,) = client.list_sessions()
    assert api_session.identity_name == "vendor-alice" and api_session.ip_address == "10.0.0.5"
    assert session.service_name == "llm" and session.type == "Dial"
    assert "SECRET" not in repr(api_session) + repr(session)
    assert fake.calls("GET", f"{MGMT}/api-sessions")[0].url.params["filter"] == 'identity = "id-1"'


def test_circuits_come_from_the_fabric_api_with_the_same_session(
    fake: FakeEdgeApi, client: ZitiClient
) -> None:
    fake.route(
        "GET",
        "/fabric/v1/circuits",
        lambda r: listing(
            [
                {
                    "id": "circ-1",
                    "createdAt": "2026-05-01T11:00:00.000Z",
                    "clientId": "cl-1",
                    "service": {"id": "svc-1", "name": "llm"},
                    "terminator": {"id": "term-1"},
                    "path": {"nodes": [{"id": "r1", "name": "edge-a"}], "links": []},
                }
            ],
            limit=100,
            offset=0,
            total=1,
        ),
    )
    (circuit,) = client.list_circuits()
    assert circuit.service_name == "llm" and circuit.path_routers == ("edge-a",)
    (get,) = fake.calls("GET", "/fabric/v1/circuits")
    assert get.headers["zt-session"] == "tok-1"


def test_malformed_entity_is_a_response_error(fake: FakeEdgeApi, client: ZitiClient) -> None:
    fake.route(
        "GET",
        f"{MGMT}/identities/id-1",
        lambda r: off_contract(ok({"id": "id-1", "name": 7}), "malformed on purpose: name is 7"),
    )
    with pytest.raises(ControllerResponseError, match=r"identity\.name"):
        client.get_identity("id-1")
