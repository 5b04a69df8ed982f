"""The access policy the admin service serves the gateway hosts' access proxies (ADR 0016):
its content, its version, the long poll and the bearer token."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from appliance.admin.services import grants
from appliance.admin.services.access_policy import policy_version
from appliance.db.models import Identity
from tests.unit.admin_access_site import BEARER, Site, make_site

POLICY = "/api/v1/access/policy"


def fetch(site: Site, version: str = "", wait: float = 0) -> tuple[str, dict[str, object]]:
    answer = site.client.get(POLICY, params={"version": version, "wait": wait}, headers=BEARER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["version"], body["policy"]


def test_the_policy_names_keys_identities_models_and_limits(site: Site) -> None:
    admin = site.login("admin1")
    alice = site.identity("alice", ["team-a"])
    site.identity("bob")
    with site.db() as db:
        for subject, model in (("@alice", "tiny"), ("#team-a", "big")):
            grants.grant_model(
                db, site.controller, subject=subject, model_service=model, actor="a", client=""
            )
    made = site.client.post(
        f"/api/v1/identities/{alice}/keys",
        json={"expires_at": "2030-01-01T00:00:00+00:00"},
        headers=admin,
    ).json()
    limit = {"subject": "#team-a", "tokens_per_day": 1000, "concurrent_requests": 4}
    assert site.client.put("/api/v1/limits", json=limit, headers=admin).status_code == 200

    version, policy = fetch(site)
    assert version == policy_version(policy)
    assert len(version) == 64
    expected_key = {
        "sha256": hashlib.sha256(made["api_key"].encode()).hexdigest(),
        "key_id": made["id"],
        "identity": "alice",
        "expires_at": "2030-01-01T00:00:00+00:00",
    }
    assert policy == {
        "timezone": "Europe/Berlin",
        "models": ["tiny", "big"],
        "context_tokens": 256,
        "keys": [expected_key],
        "identities": {
            "alice": {"groups": ["kind-user", "team-a"], "models": ["big", "tiny"]},
            "bob": {"groups": ["kind-user"], "models": []},
        },
        "limits": {
            "#team-a": {
                "tokens_per_day": 1000,
                "tokens_per_week": None,
                "tokens_per_month": None,
                "requests_per_minute": None,
                "concurrent_requests": 4,
            }
        },
        "routing": None,  # off until an admin sets it (test_admin_routing.py)
    }
    assert made["api_key"] not in json.dumps(policy)  # only its hash


def test_the_version_is_stable_and_each_change_gives_a_new_one(site: Site) -> None:
    admin = site.login("admin1")
    alice = site.identity("alice", ["team-a"])
    site.client.post(f"/api/v1/identities/{alice}/keys", json={}, headers=admin)
    first, _ = fetch(site)
    assert fetch(site)[0] == first  # nothing changed: the same version

    # A group grant: the model appears for the group's members.
    with site.db() as db:
        grants.grant_model(
            db, site.controller, subject="#team-a", model_service="big", actor="a", client=""
        )
    second, policy = fetch(site, first)
    assert second != first
    assert policy["identities"]["alice"]["models"] == ["big"]  # type: ignore[index]

    # A limit: it appears.
    site.client.put(
        "/api/v1/limits",
        json={"subject": "@alice", "requests_per_minute": 60},
        headers=admin,
    )
    third, policy = fetch(site, second)
    assert third != second
    assert policy["limits"]["@alice"]["requests_per_minute"] == 60  # type: ignore[index]

    # Disabling the identity: it and its keys leave.
    assert site.client.post(f"/api/v1/identities/{alice}/disable", headers=admin).status_code == 200
    fourth, policy = fetch(site, third)
    assert fourth != third
    assert policy["keys"] == [] and "alice" not in policy["identities"]  # type: ignore[operator]

    # Missing on the controller: out too; enabled and back: in again.
    with site.db() as db:
        row = db.get(Identity, alice)
        assert row is not None
        row.state = "missing on controller"
        db.commit()
    assert "alice" not in fetch(site)[1]["identities"]  # type: ignore[operator]


def test_a_revoked_key_leaves_the_policy(site: Site) -> None:
    admin = site.login("admin1")
    alice = site.identity("alice")
    key = site.client.post(f"/api/v1/identities/{alice}/keys", json={}, headers=admin).json()
    _, policy = fetch(site)
    assert [k["key_id"] for k in policy["keys"]] == [key["id"]]  # type: ignore[attr-defined]
    assert site.client.delete(f"/api/v1/keys/{key['id']}", headers=admin).status_code == 204
    assert fetch(site)[1]["keys"] == []


def test_the_long_poll_answers_304_after_the_wait_when_nothing_changed(site: Site) -> None:
    version, _ = fetch(site)
    started = time.monotonic()
    answer = site.client.get(POLICY, params={"version": version, "wait": 1}, headers=BEARER)
    took = time.monotonic() - started
    assert answer.status_code == 304 and answer.content == b""
    assert 0.9 <= took < 5


def test_the_long_poll_answers_at_once_when_the_version_differs(site: Site) -> None:
    started = time.monotonic()
    answer = site.client.get(POLICY, params={"version": "0" * 64, "wait": 30}, headers=BEARER)
    assert answer.status_code == 200
    assert time.monotonic() - started < 5


def test_the_long_poll_sees_a_change_made_while_it_waits(site: Site) -> None:
    """The poll looks again every 0.5 s, each time in a fresh transaction."""
    import threading

    version, _ = fetch(site)
    site.login("admin1")

    def change() -> None:
        time.sleep(0.7)
        site.identity("carol")

    thread = threading.Thread(target=change)
    thread.start()
    started = time.monotonic()
    answer = site.client.get(POLICY, params={"version": version, "wait": 10}, headers=BEARER)
    thread.join()
    assert answer.status_code == 200, answer.text
    assert "carol" in answer.json()["policy"]["identities"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_a_missing_or_wrong_token_is_401(site: Site, headers: dict[str, str]) -> None:
    answer = site.client.get(POLICY, headers=headers)
    assert answer.status_code == 401
    assert "access token" in answer.json()["error"]["message"]
    upload = site.client.post(
        "/api/v1/access/usage", json={"gateway": "gw1", "rows": []}, headers=headers
    )
    assert upload.status_code == 401


def test_a_logged_in_admin_without_the_token_is_refused(site: Site) -> None:
    """A browser session is not the access token."""
    site.login("admin1")
    assert site.client.get(POLICY).status_code == 401


def test_without_the_setting_the_routes_say_so(tmp_path: Path) -> None:
    for site in make_site(tmp_path, access_token_file=None):
        answer = site.client.get(POLICY, headers=BEARER)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "access sync is not configured here"


def test_a_bad_wait_is_refused(site: Site) -> None:
    answer = site.client.get(POLICY, params={"wait": 31}, headers=BEARER)
    assert answer.status_code == 422
