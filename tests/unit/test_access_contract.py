"""The admin service's real routes and the access proxy's real link, talking (ADR 0016).

The policy the admin service computes must parse where the proxy reads it, a key made by
an admin must open the proxy at the next poll, and usage the proxy hands over must be what
the admin service shows and audits. Both sides are the product's own code; only the
controller is a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from appliance.access.config import AccessConfig
from appliance.access.journal import UsageJournal
from appliance.access.limiter import Limiter, Refusal
from appliance.access.policy import key_digest
from appliance.access.proxy import AccessProxy
from appliance.access.slots import FixedGateway
from appliance.access.sync import AdminLink, PolicyStore
from tests.unit.admin_access_site import BEARER, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(tmp_path / "admin")


def _link(site: Site, tmp_path: Path) -> tuple[AdminLink, AccessProxy, UsageJournal, Limiter]:
    journal = UsageJournal(tmp_path / "usage.db")
    limiter = Limiter()
    proxy = AccessProxy(
        AccessConfig(data_dir=tmp_path),
        limiter,
        journal,
        gateway=FixedGateway("http://127.0.0.1:9", None),
        http=None,
    )  # type: ignore[arg-type]
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(site.client.app), base_url="http://admin", headers=BEARER
    )
    link = AdminLink(
        proxy,
        journal,
        PolicyStore(tmp_path / "policy.json"),
        client,
        admin_url="http://admin",
        gateway_name="gw1",
        wait_seconds=1,
        upload_seconds=1,
    )
    return link, proxy, journal, limiter


def test_a_key_made_by_an_admin_opens_the_proxy_at_the_next_poll(
    site: Site, tmp_path: Path
) -> None:
    link, proxy, _, limiter = _link(site, tmp_path)
    alice = site.identity("alice", ["team-a"])
    csrf = site.login("admin1")
    assert (
        site.client.post(
            "/api/v1/grants", json={"subject": "#team-a", "model_service": "tiny"}, headers=csrf
        ).status_code
        == 201
    )
    made = site.client.post(f"/api/v1/identities/{alice}/keys", json={}, headers=csrf)
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    assert asyncio.run(link.poll_once()) is True
    entry = proxy.policy.key(key_digest(key))
    assert entry is not None
    assert entry.identity == "alice"
    assert proxy.policy.identity("alice").models == {"tiny"}  # type: ignore[union-attr]
    assert str(proxy.policy.timezone) == "Europe/Berlin"
    # A limit set by an admin is in force at the next poll too.
    limit = site.client.put(
        "/api/v1/limits", json={"subject": "#team-a", "concurrent_requests": 1}, headers=csrf
    )
    assert limit.status_code == 200, limit.text
    assert asyncio.run(link.poll_once()) is True
    limiter.admit("alice", prompt_bound=1, max_tokens=1)
    with pytest.raises(Refusal, match="#team-a"):
        limiter.admit("alice", prompt_bound=1, max_tokens=1)
    # Revoked: gone from the policy at the next poll.
    key_id = made.json()["id"]
    assert site.client.delete(f"/api/v1/keys/{key_id}", headers=csrf).status_code == 204
    assert asyncio.run(link.poll_once()) is True
    assert proxy.policy.key(key_digest(key)) is None


def test_usage_handed_over_is_what_the_admin_service_shows_and_audits(
    site: Site, tmp_path: Path
) -> None:
    link, _, journal, _ = _link(site, tmp_path)
    day = datetime.now(UTC).date()
    for _ in range(3):
        journal.count("alice", "tiny", day, requests=1, prompt_tokens=11, completion_tokens=5)
    journal.count("alice", "tiny", day, refused="tokens_per_day")
    assert asyncio.run(link.upload_once()) == 1
    assert asyncio.run(link.upload_once()) == 0  # nothing new: nothing sent
    site.login("aud")
    shown = site.client.get(
        "/api/v1/usage", params={"since": day.isoformat(), "until": day.isoformat()}
    )
    assert shown.status_code == 200, shown.text
    (row,) = shown.json()
    assert (row["identity"], row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (
        "alice",
        3,
        33,
        15,
    )
    assert row["refused"]["tokens_per_day"] == 1
    (record,) = site.audit("usage.rollup")
    assert record.target == "gw1"
