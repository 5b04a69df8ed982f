"""Issue 13: the admin service follows a raft cluster's leader. ZitiClient against fake
members: one that refuses connections (its controller stopped), one without a leader
(an election is on), one that answers."""

from __future__ import annotations

import httpx
import pytest

from appliance.ziti import (
    ControllerRequestError,
    ControllerUnreachableError,
    ZitiClient,
    ZitiLimits,
)
from tests.unit.edge_api_contract import ContractTransport
from tests.unit.fake_edge_api import (
    MGMT,
    PASSWORD,
    USER,
    FakeEdgeApi,
    api_error,
    created,
    identity_json,
    ok,
    ott_json,
)

MEMBERS = ("https://ctrl1.example:1281", "https://ctrl2.example:1280", "https://ctrl3.example:1280")


class Cluster:
    """Fake members by host; a stopped one refuses connections."""

    def __init__(self) -> None:
        self.members = {host: FakeEdgeApi() for host in ("ctrl1", "ctrl2", "ctrl3")}
        self.stopped: set[str] = set()
        self.connects: list[str] = []
        for fake in self.members.values():
            fake.route("POST", f"{MGMT}/identities", lambda r: created("id-9", "identities"))
            fake.route(
                "GET",
                f"{MGMT}/identities/id-9",
                lambda r: ok(identity_json("id-9", ott=ott_json("2026-05-01T15:00:00Z"))),
            )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        self.connects.append(host)
        if host in self.stopped:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return self.members[host](request)


def _client(cluster: Cluster, **limits: float) -> ZitiClient:
    return ZitiClient(
        MEMBERS[0],
        USER,
        PASSWORD,
        verify=False,
        transport=ContractTransport(cluster),
        limits=ZitiLimits(backoff_s=0, **limits),
        fallback_urls=MEMBERS[1:],
    )


def _create(client: ZitiClient) -> str:
    token = client.create_identity(
        "analyst", type="User", role_attributes=[], enrollment_minutes=None
    )
    return token.identity_id


def test_a_stopped_member_is_passed_over_and_the_next_one_logged_in_to() -> None:
    cluster = Cluster()
    client = _client(cluster)
    assert _create(client) == "id-9"  # ctrl1 answers while it runs
    cluster.stopped.add("ctrl1")
    assert _create(client) == "id-9"
    assert client.base_url == MEMBERS[1]
    # The create went to ctrl2 once, after a login there; nothing was sent twice.
    ctrl2 = cluster.members["ctrl2"]
    assert ctrl2.logins == 1
    assert len(ctrl2.calls("POST", f"{MGMT}/identities")) == 1
    # It stays with ctrl2, even once ctrl1 is back.
    cluster.stopped.clear()
    cluster.connects.clear()
    _create(client)
    assert set(cluster.connects) == {"ctrl2"}


def test_with_every_member_stopped_the_error_says_so() -> None:
    cluster = Cluster()
    cluster.stopped.update(cluster.members)
    client = _client(cluster)
    with pytest.raises(ControllerUnreachableError, match="cannot reach the OpenZiti controller"):
        _create(client)
    assert sorted(set(cluster.connects)) == ["ctrl1", "ctrl2", "ctrl3"]


def test_a_member_without_a_leader_is_asked_again_until_one_is_elected() -> None:
    cluster = Cluster()
    ctrl1 = cluster.members["ctrl1"]
    # As seen in the lab: a follower first fails to forward to the leader that has just
    # stopped (429), then has no leader while the others elect one (503).
    answers = [
        api_error(
            429,
            "SERVER_TOO_MANY_REQUESTS",
            "Too many requests to alter state have been issued.",
            cause={"message": "timeout waiting for peer"},
        ),
        api_error(503, "CLUSTER_NO_LEADER", "cluster has no leader"),
        api_error(503, "CLUSTER_NO_LEADER", "cluster has no leader"),
    ]
    ctrl1.route(
        "POST",
        f"{MGMT}/identities",
        lambda r: answers.pop(0) if answers else created("id-9", "identities"),
    )
    client = _client(cluster)
    slept: list[float] = []
    client._sleep = slept.append
    assert _create(client) == "id-9"
    assert slept == [1.0, 1.0, 1.0]
    # The 503s applied nothing: a POST repeated after them creates one identity.
    assert len(ctrl1.calls("POST", f"{MGMT}/identities")) == 4


def test_no_leader_for_longer_than_the_wait_is_an_error() -> None:
    cluster = Cluster()
    ctrl1 = cluster.members["ctrl1"]
    ctrl1.route(
        "POST",
        f"{MGMT}/identities",
        lambda r: api_error(503, "CLUSTER_NO_LEADER", "cluster has no leader"),
    )
    client = _client(cluster, leader_wait_s=3)
    now = [0.0]
    client._clock = lambda: now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client._sleep = sleep
    with pytest.raises(ControllerRequestError, match="CLUSTER_NO_LEADER"):
        _create(client)
    assert len(ctrl1.calls("POST", f"{MGMT}/identities")) == 4  # at 0, 1, 2 and 3 s
