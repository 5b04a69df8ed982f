"""The proxy's admin link: policy pulled and kept, usage handed over without loss."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.access.config import AccessConfig
from appliance.access.journal import UsageJournal
from appliance.access.limiter import Limiter
from appliance.access.policy import parse_policy
from appliance.access.proxy import AccessProxy
from appliance.access.slots import FixedGateway
from appliance.access.sync import AdminLink, PolicyStore
from tests.unit.access_fakes import policy_document

DAY = date(2026, 12, 6)


class FakeAdmin(httpx.AsyncBaseTransport):
    """The admin service's two access routes, with an off switch."""

    def __init__(self) -> None:
        self.up = True
        self.document = policy_document(
            keys={"sk-a": "alice"}, identities={"alice": {"groups": [], "models": ["tiny"]}}
        )
        self.stored: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.uploads = 0

    @property
    def version(self) -> str:
        return str(hash(json.dumps(self.document, sort_keys=True)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.headers["authorization"] == "Bearer t0ken"
        if request.url.path.endswith("/policy"):
            if request.url.params["version"] == self.version:
                return httpx.Response(304)
            return httpx.Response(200, json={"version": self.version, "policy": self.document})
        body = json.loads(request.content)
        self.uploads += 1
        for row in body["rows"]:
            key = (body["gateway"], row["identity"], row["model"], row["day"])
            old = self.stored.get(key, {})
            self.stored[key] = {
                k: max(v, old.get(k, 0)) if isinstance(v, int) else v for k, v in row.items()
            }
        return httpx.Response(200, json={"accepted": len(body["rows"])})


def _link(tmp_path: Path, admin: FakeAdmin) -> tuple[AdminLink, AccessProxy, UsageJournal]:
    journal = UsageJournal(tmp_path / "usage.db")
    proxy = AccessProxy(
        AccessConfig(data_dir=tmp_path),
        Limiter(),
        journal,
        gateway=FixedGateway("http://127.0.0.1:9", None),
        http=httpx.AsyncClient(),
    )
    client = httpx.AsyncClient(transport=admin, headers={"authorization": "Bearer t0ken"})
    link = AdminLink(
        proxy,
        journal,
        PolicyStore(tmp_path / "policy.json"),
        client,
        admin_url="https://admin",
        gateway_name="gw1",
        wait_seconds=1,
        upload_seconds=1,
    )
    return link, proxy, journal


def test_a_policy_is_applied_and_kept_for_a_restart(tmp_path: Path) -> None:
    admin = FakeAdmin()
    link, proxy, _ = _link(tmp_path, admin)
    assert asyncio.run(link.poll_once()) is True
    assert proxy.policy.version == admin.version
    assert asyncio.run(link.poll_once()) is False  # unchanged: 304
    kept = PolicyStore(tmp_path / "policy.json").load()
    assert kept is not None
    assert kept.version == admin.version
    assert set(kept.keys) == set(proxy.policy.keys) - {
        k for k, e in proxy.policy.keys.items() if str(e.key_id).startswith("static:")
    }


def test_a_malformed_policy_leaves_the_last_good_one_in_force(tmp_path: Path) -> None:
    admin = FakeAdmin()
    link, proxy, _ = _link(tmp_path, admin)
    asyncio.run(link.poll_once())
    good = proxy.policy.version
    admin.document = {"timezone": "UTC"}
    with pytest.raises(Exception, match="malformed"):
        asyncio.run(link.poll_once())
    assert proxy.policy.version == good
    assert PolicyStore(tmp_path / "policy.json").load().version == good  # type: ignore[union-attr]


def test_usage_waits_while_the_admin_service_is_down_and_arrives_whole(tmp_path: Path) -> None:
    admin = FakeAdmin()
    link, _, journal = _link(tmp_path, admin)
    for _ in range(3):
        journal.count("alice", "tiny", DAY, requests=1, prompt_tokens=5, completion_tokens=7)
    assert asyncio.run(link.upload_once()) == 1
    admin.up = False
    for _ in range(4):
        journal.count("alice", "tiny", DAY, requests=1, prompt_tokens=5, completion_tokens=7)
    journal.count("bob", "tiny", DAY, refused="tokens_per_day")
    with pytest.raises(httpx.ConnectError):
        asyncio.run(link.upload_once())
    assert len(journal.pending()[0]) == 2
    admin.up = True
    asyncio.run(link.upload_once())
    assert journal.pending() == ([], 0)
    alice = admin.stored[("gw1", "alice", "tiny", DAY.isoformat())]
    assert (alice["requests"], alice["prompt_tokens"], alice["completion_tokens"]) == (7, 35, 49)
    assert admin.stored[("gw1", "bob", "tiny", DAY.isoformat())]["refused"] == {"tokens_per_day": 1}
    # Sent again (an acknowledgement lost): the same absolute values, nothing doubles.
    journal.acknowledge(0)
    journal._db.execute("DELETE FROM meta")
    asyncio.run(link.upload_once())
    assert admin.stored[("gw1", "alice", "tiny", DAY.isoformat())]["requests"] == 7


def test_a_restarted_proxy_goes_on_with_what_it_knew(tmp_path: Path) -> None:
    admin = FakeAdmin()
    link, _, journal = _link(tmp_path, admin)
    asyncio.run(link.poll_once())
    journal.count("alice", "tiny", DAY, requests=1, prompt_tokens=3, completion_tokens=4)
    journal.close()
    again = UsageJournal(tmp_path / "usage.db")
    kept = PolicyStore(tmp_path / "policy.json").load()
    assert kept is not None
    assert "alice" in kept.identities
    assert list(again.tokens_since(DAY)) == [("alice", DAY, 7)]
    assert [r.requests for r in again.pending()[0]] == [1]


def test_the_stored_policy_must_parse(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"version": "v", "policy": {"timezone": 1}}')
    assert PolicyStore(tmp_path / "policy.json").load() is None
    assert parse_policy("v", policy_document()).keys == {}
