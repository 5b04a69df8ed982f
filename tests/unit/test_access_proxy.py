"""The access proxy's front and back apps with stand-ins for llm-gateway and vLLM (ADR 0016)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from appliance.access import proxy as access_proxy
from appliance.access.config import AccessConfig
from appliance.access.journal import UsageJournal
from appliance.access.limiter import Limiter
from appliance.access.policy import key_digest, parse_policy
from appliance.access.proxy import AccessProxy
from appliance.access.slots import FixedGateway
from tests.unit.access_fakes import (
    GATEWAY_KEY,
    BreakingDoor,
    FakeGateway,
    FakeModel,
    policy_document,
    routing_document,
    serving,
)

pytestmark = pytest.mark.anyio

ALICE = "sk-site-alice"
BOB = "sk-site-bob"
TODAY = datetime.now(UTC).date()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Site:
    proxy: AccessProxy
    model: FakeModel
    journal: UsageJournal
    client: httpx.AsyncClient
    door: BreakingDoor

    def apply(self, **document: Any) -> None:
        self.proxy.set_policy(parse_policy(json.dumps(document)[:16], policy_document(**document)))

    async def chat(self, key: str | None = ALICE, **body: Any) -> httpx.Response:
        request = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}]}
        request.update(body)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return await self.client.post("/v1/chat/completions", json=request, headers=headers)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The proxy's two listeners, llm-gateway and the model server, on loopback sockets."""
    model = FakeModel()
    journal = UsageJournal(tmp_path / "usage.db")
    servers: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        model_url = await stack.enter_async_context(serving(model, servers))
        # The model server is reached through a door that can drop connections, as the
        # overlay's circuits to a GPU host that stops are dropped.
        door = BreakingDoor(int(model_url.rsplit(":", 1)[1]))
        door_url = await stack.enter_async_context(door.open())
        upstream = await stack.enter_async_context(aiohttp.ClientSession())
        config = AccessConfig(
            backend_url=door_url,
            data_dir=tmp_path,
            static_keys=[
                {"name": "appliance-health", "sha256": key_digest("health"), "models": ["tiny"]}
            ],
        )
        gateway = FixedGateway("http://127.0.0.1:9", GATEWAY_KEY)  # its URL once it listens
        proxy = AccessProxy(config, Limiter(), journal, gateway=gateway, http=upstream)
        back_url = await stack.enter_async_context(serving(proxy.back, servers))
        to_back = await stack.enter_async_context(httpx.AsyncClient(base_url=back_url))
        gateway = FixedGateway(
            await stack.enter_async_context(serving(FakeGateway(to_back), servers)), GATEWAY_KEY
        )
        proxy.gateway = gateway
        front_url = await stack.enter_async_context(serving(proxy.front, servers))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=front_url))
        found = Site(proxy, model, journal, client, door)
        found.apply(
            keys={ALICE: "alice", BOB: "bob"},
            identities={
                "alice": {"groups": ["team-a"], "models": ["tiny"]},
                "bob": {"groups": ["team-a"], "models": []},
            },
        )
        yield found
        for server in servers:
            server.should_exit = True
    journal.close()


def _error(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


async def test_a_granted_key_gets_an_answer_and_its_exact_usage_is_journaled(site: Site) -> None:
    answer = await site.chat(max_tokens=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 5
    (row,) = site.journal.rows()
    prompt, completion = site.model.reported[0]
    assert (row.identity, row.model, row.requests) == ("alice", "tiny", 1)
    assert (row.prompt_tokens, row.completion_tokens, row.errors) == (prompt, completion, 0)
    # The model never sees the request id: llm-gateway carried it, the back leg took it out.
    assert "user" not in site.model.requests[0]


async def test_a_streamed_answer_is_counted_exactly_though_the_gateway_drops_usage(
    site: Site,
) -> None:
    answer = await site.chat(stream=True)
    assert answer.status_code == 200
    events = [e for e in answer.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    # No chunk without choices reaches a client that did not ask for usage.
    assert all(c["choices"] for c in chunks)
    (row,) = site.journal.rows()
    assert (row.prompt_tokens, row.completion_tokens) == site.model.reported[0]
    assert site.model.requests[0]["stream_options"] == {
        "include_usage": True,
        "continuous_usage_stats": True,
    }


async def test_a_model_connection_that_breaks_unanswered_is_tried_again_on_a_new_one(
    site: Site,
) -> None:
    # Two circuits to a GPU host that stopped: the request goes on a third and is answered.
    site.door.breaks = 2
    answer = await site.chat(max_tokens=5)
    assert answer.status_code == 200, answer.text
    assert site.door.broken == 2
    assert len(site.model.requests) == 1
    assert site.proxy.meters.model_retries == 2
    (row,) = site.journal.rows()
    assert (row.requests, row.completion_tokens, row.errors) == (1, 5, 0)


async def test_model_connections_are_reused_until_they_have_served_their_time(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        assert (await site.chat(max_tokens=2)).status_code == 200
    assert site.door.connections == 1  # one circuit, kept alive
    # Retired at every request: each connection is closed after its answer, and the next
    # request opens a new one (a new circuit, which the overlay may put on another host).
    monkeypatch.setattr(access_proxy, "_MODEL_RETIRE_EVERY_S", 0.0)
    site.proxy._retire_at = 0.0
    for stream in (False, True, False):
        assert (await site.chat(max_tokens=2, stream=stream)).status_code == 200
    assert site.door.connections == 3  # the first one's last request closed it too
    monkeypatch.setattr(access_proxy, "_MODEL_RETIRE_EVERY_S", 3600.0)
    site.proxy._retire_at = float("inf")
    for _ in range(2):
        assert (await site.chat(max_tokens=2)).status_code == 200
    assert site.door.connections == 4  # the third was closed after its answer too
    assert len(site.model.requests) == 8


async def test_model_connections_that_keep_breaking_give_a_clear_error(site: Site) -> None:
    site.door.breaks = 100
    answer = await site.chat(max_tokens=5)
    assert answer.status_code == 502
    assert "the model server does not answer" in answer.json()["error"]["message"]
    assert site.door.broken == 4  # the tries, then the error; no request is left hanging
    assert site.model.requests == []
    (row,) = site.journal.rows()
    assert (row.requests, row.errors) == (1, 1)


async def test_a_model_that_times_out_is_not_asked_again(site: Site) -> None:
    # A read timeout means the model was busy with the request: a repeat would double it.
    site.model.delay = 1.0
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.2)) as impatient:
        shared, site.proxy._http = site.proxy._http, impatient
        try:
            with pytest.raises(aiohttp.ServerTimeoutError):
                await site.proxy._post_to_model(
                    f"{site.proxy.config.backend_url}/v1/chat/completions", body.encode()
                )
        finally:
            site.proxy._http = shared
    assert len(site.model.requests) == 1
    assert site.proxy.meters.model_retries == 0


async def test_a_stream_cut_short_ends_with_an_error_event_in_openais_shape(site: Site) -> None:
    site.model.cut_after = 3
    answer = await site.chat(stream=True)
    assert answer.status_code == 200  # the stream had begun
    events = [e for e in answer.text.split("\n\n") if e]
    assert "data: [DONE]" not in events
    assert [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1]] == ["w "] * 3
    error = json.loads(events[-1][6:])["error"]
    assert (error["type"], error["code"]) == ("server_error", "stream_interrupted")
    assert "send the request again" in error["message"]
    (row,) = site.journal.rows()
    assert (row.completion_tokens, row.errors) == (3, 1)  # counted up to where it broke


def _quick_path_checks(site: Site) -> None:
    site.proxy.model_path.silence_s = 0.3
    site.proxy.model_path.check_s = 0.3


async def test_a_stream_whose_path_goes_silent_ends_with_an_error_not_a_hang(
    site: Site,
) -> None:
    # A partition between the gateway host and the GPU host: the circuit stays open and
    # nothing comes. The stream ends once the model server's health does not answer.
    _quick_path_checks(site)
    site.model.pause = 5.0
    asked = asyncio.ensure_future(site.chat(stream=True))
    while not site.model.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the first chunk is on its way
    site.door.partition()
    try:
        answer = await asyncio.wait_for(asked, 3.0)
    finally:
        site.door.heal()
    assert answer.status_code == 200  # the stream had begun
    events = [e for e in answer.text.split("\n\n") if e]
    assert "data: [DONE]" not in events
    error = json.loads(events[-1][6:])["error"]
    assert (error["type"], error["code"]) == ("server_error", "stream_interrupted")
    assert site.proxy.meters.model_paths_lost == 1
    (row,) = site.journal.rows()
    assert (row.requests, row.completion_tokens, row.errors) == (1, 1, 1)


async def test_a_request_whose_path_is_silent_before_any_answer_gets_a_clear_error(
    site: Site,
) -> None:
    _quick_path_checks(site)
    site.door.partition()
    try:
        answer = await asyncio.wait_for(site.chat(max_tokens=5), 3.0)
    finally:
        site.door.heal()
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]  # llm-gateway's error, with our words
    assert "health check did not answer" in message and "try again" in message
    assert site.proxy.meters.model_paths_lost == 1
    assert b"appliance_access_model_paths_lost_total 1" in site.proxy.meters.render([])
    health = site.proxy.health()  # what the installer's status reads afterwards
    assert health["model_paths_lost"] == 1
    assert 0 <= float(health["model_path_lost_seconds_ago"]) < 5  # type: ignore[arg-type]


async def test_a_silent_model_that_still_answers_its_health_is_waited_for(site: Site) -> None:
    # vLLM may hold an answer back for longer than the silence allowed (others' long
    # prompts, a preempted sequence): its health answers, so the request goes on.
    _quick_path_checks(site)
    site.model.delay = 1.0
    assert (await site.chat(max_tokens=5)).status_code == 200
    site.model.delay, site.model.pause = 0.0, 1.0
    streamed = await site.chat(stream=True)
    assert "data: [DONE]" in streamed.text
    assert site.proxy.meters.model_paths_lost == 0


async def test_a_client_that_asks_for_stream_usage_gets_it_before_done(site: Site) -> None:
    answer = await site.chat(stream=True, stream_options={"include_usage": True})
    events = [e for e in answer.text.split("\n\n") if e]
    usage = json.loads(events[-2][6:])
    assert usage["choices"] == []
    prompt, completion = site.model.reported[0]
    assert usage["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "missing_api_key"), ("sk-site-nobody", 401, "invalid_api_key")],
)
async def test_a_missing_or_unknown_key_is_refused_and_counted(
    site: Site, key: str | None, status: int, code: str
) -> None:
    answer = await site.chat(key)
    assert answer.status_code == status
    assert _error(answer)["code"] == code
    assert site.model.requests == []
    (row,) = site.journal.rows()
    assert (row.identity, row.requests, row.refused) == ("", 0, {"key": 1})


async def test_an_expired_key_is_refused_with_when(site: Site) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    site.apply(
        keys={ALICE: "alice"},
        identities={"alice": {"groups": [], "models": ["tiny"]}},
        expires={ALICE: past},
    )
    answer = await site.chat()
    assert answer.status_code == 401
    assert _error(answer)["code"] == "expired_api_key"
    assert past[:16] in _error(answer)["message"]


async def test_a_disabled_identitys_key_is_refused_once_the_policy_leaves_it_out(
    site: Site,
) -> None:
    assert (await site.chat()).status_code == 200
    site.apply(keys={ALICE: "alice"}, identities={})  # the admin service drops it when disabled
    assert (await site.chat()).status_code == 401


async def test_a_model_not_granted_is_403_and_an_unknown_model_404(site: Site) -> None:
    refused = await site.chat(BOB)
    assert refused.status_code == 403
    assert _error(refused)["code"] == "model_not_granted"
    unknown = await site.chat(model="gpt-4")
    assert unknown.status_code == 404
    assert "tiny" in _error(unknown)["message"]
    assert site.model.requests == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "tiny", "messages": []}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (
            b'{"model": "tiny", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}',
            "max_tokens",
        ),
        (b'{"model": "tiny", "n": true, "messages": [{"role": "user", "content": "x"}]}', "'n'"),
    ],
)
async def test_malformed_requests_get_one_clear_error_and_count_nothing(
    site: Site, body: bytes, why: str
) -> None:
    answer = await site.client.post(
        "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {ALICE}"}
    )
    assert answer.status_code == 400
    assert why in _error(answer)["message"]
    assert site.journal.rows() == []


async def test_an_oversized_body_is_413(site: Site) -> None:
    huge = "x" * (site.proxy.config.max_body_bytes + 1)
    answer = await site.chat(messages=[{"role": "user", "content": huge}])
    assert answer.status_code == 413
    assert _error(answer)["type"] == "invalid_request_error"


async def test_a_budget_used_up_is_429_with_its_reset_and_retry_after(site: Site) -> None:
    site.apply(
        keys={ALICE: "alice"},
        identities={"alice": {"groups": [], "models": ["tiny"]}},
        limits={"@alice": {"tokens_per_day": 200}},
    )
    answers = [await site.chat(max_tokens=10) for _ in range(6)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    error = _error(refused[0])
    assert (error["type"], error["code"]) == ("insufficient_quota", "tokens_per_day")
    assert "resets at" in error["message"]
    assert 0 < int(refused[0].headers["retry-after"]) <= 86400
    counted = sum(r.prompt_tokens + r.completion_tokens for r in site.journal.rows())
    assert counted <= 200
    assert site.journal.rows()[0].refused == {"tokens_per_day": len(refused)}


async def test_a_request_over_the_remaining_budget_is_cut_to_fit(site: Site) -> None:
    site.apply(
        keys={ALICE: "alice"},
        identities={"alice": {"groups": [], "models": ["tiny"]}},
        limits={"@alice": {"tokens_per_day": 400}},
        context_tokens=4096,
    )
    answer = await site.chat()  # no max_tokens: the whole context would be reserved
    assert answer.status_code == 200
    assert 1 <= site.model.requests[0]["max_tokens"] < 400


async def test_a_new_key_works_the_moment_its_policy_arrives(site: Site) -> None:
    carol = "sk-site-carol"
    assert (await site.chat(carol)).status_code == 401
    site.apply(keys={carol: "carol"}, identities={"carol": {"groups": [], "models": ["tiny"]}})
    assert (await site.chat(carol)).status_code == 200


async def test_the_health_key_works_without_any_policy(tmp_path: Path, site: Site) -> None:
    site.apply()  # an empty policy: the static key still works
    assert (await site.chat("health")).status_code == 200


async def test_models_lists_what_the_key_may_use(site: Site) -> None:
    listed = await site.client.get("/v1/models", headers={"authorization": f"Bearer {ALICE}"})
    assert [m["id"] for m in listed.json()["data"]] == ["tiny"]
    assert (await site.client.get("/v1/models")).status_code == 401


async def test_an_unknown_route_is_404_in_openais_shape(site: Site) -> None:
    answer = await site.client.get("/v1/embeddings")
    assert answer.status_code == 404
    assert _error(answer)["code"] == "not_found"


async def test_sixty_four_racing_clients_never_take_a_budget_past_its_end(site: Site) -> None:
    budget = 1500
    site.apply(
        keys={ALICE: "alice", BOB: "bob"},
        identities={
            "alice": {"groups": ["team-a"], "models": ["tiny"]},
            "bob": {"groups": ["team-a"], "models": ["tiny"]},
        },
        limits={"#team-a": {"tokens_per_day": budget}},
    )

    async def race() -> list[httpx.Response]:
        return await asyncio.gather(
            *(
                site.chat(ALICE if i % 2 else BOB, max_tokens=12, stream=bool(i % 3))
                for i in range(64)
            )
        )

    answers = await race()
    statuses = {a.status_code for a in answers}
    assert statuses == {200, 429}
    rows = site.journal.rows()
    counted = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    assert counted == sum(p + c for p, c in site.model.reported)  # the model's own count
    assert counted <= budget
    assert sum(r.requests for r in rows) == sum(a.status_code == 200 for a in answers)
    assert site.proxy._limiter.in_flight("#team-a") == 0


async def test_usage_counts_on_the_site_day(tmp_path: Path, site: Site) -> None:
    site.apply(
        keys={ALICE: "alice"},
        identities={"alice": {"groups": [], "models": ["tiny"]}},
        timezone="Pacific/Kiritimati",  # UTC+14: most often another date than UTC's
    )
    await site.chat()
    (row,) = site.journal.rows()
    from zoneinfo import ZoneInfo

    assert row.day == datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert isinstance(date.fromisoformat(row.day), date)


async def test_metrics_are_for_an_identity_granted_them_and_carry_no_key(site: Site) -> None:
    ops = "sk-site-ops"
    site.apply(
        keys={ALICE: "alice", ops: "ops"},
        identities={
            "alice": {"groups": ["team-a"], "models": ["tiny"]},
            "ops": {"groups": [], "models": ["metrics"]},
        },
        limits={"@alice": {"tokens_per_day": 10_000}},
    )
    assert (await site.chat(stream=True)).status_code == 200
    assert (await site.chat(model="nope")).status_code == 404
    refused = await site.client.get("/metrics", headers={"authorization": f"Bearer {ALICE}"})
    assert refused.status_code == 403
    assert _error(refused)["code"] == "metrics_not_granted"
    assert (await site.client.get("/metrics")).status_code == 401
    answer = await site.client.get("/metrics", headers={"authorization": f"Bearer {ops}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    prompt, completion = site.model.reported[0]
    assert (
        f'appliance_access_tokens_total{{identity="alice",model="tiny",kind="prompt"}} {prompt}'
    ) in text
    assert 'appliance_access_requests_total{identity="alice",model="tiny",outcome="ok"} 1' in text
    assert (
        f'appliance_access_tokens_total{{identity="alice",model="tiny",kind="completion"}} '
        f"{completion}"
    ) in text
    assert 'appliance_access_refusals_total{identity="alice",reason="model"} 1' in text
    assert "# TYPE appliance_access_policy_age_seconds gauge" in text
    assert "sk-site" not in text
    assert key_digest(ALICE) not in text
    # A chat asking for the grant's name is no model: not served.
    assert (await site.chat(ops, model="metrics")).status_code == 404


def _routed(site: Site, *, allow_explicit_model: bool = False, models: list[str]) -> None:
    site.apply(
        keys={ALICE: "alice", BOB: "bob"},
        identities={
            "alice": {"groups": [], "models": models},
            "bob": {"groups": [], "models": ["tiny"]},
        },
        models=("tiny", "tiny-sensitive"),
        routing=routing_document(allow_explicit_model=allow_explicit_model),
    )


async def test_auto_is_routed_and_counted_under_the_model_the_routing_chose(site: Site) -> None:
    _routed(site, models=["auto", "tiny", "tiny-sensitive"])
    sensitive = await site.chat(
        model="auto", messages=[{"role": "user", "content": "summarise this patient file"}]
    )
    general = await site.chat(model="auto", stream=True)
    assert (sensitive.status_code, general.status_code) == (200, 200), sensitive.text
    assert [r["model"] for r in site.model.requests] == ["tiny-sensitive", "tiny"]
    rows = {row.model: row for row in site.journal.rows()}
    assert set(rows) == {"tiny-sensitive", "tiny"}
    assert (rows["tiny"].prompt_tokens, rows["tiny"].completion_tokens) == (site.model.reported[1])


async def test_auto_is_unknown_while_the_site_does_not_route(site: Site) -> None:
    refused = await site.chat(model="auto")
    assert refused.status_code == 404
    assert _error(refused)["code"] == "model_not_found"
    assert site.model.requests == []


async def test_an_explicit_model_is_refused_where_the_site_routes_everything(
    site: Site,
) -> None:
    _routed(site, models=["auto", "tiny", "tiny-sensitive"])
    refused = await site.chat(model="tiny")
    assert refused.status_code == 400
    assert _error(refused)["code"] == "explicit_model_not_allowed"
    assert "'auto'" in _error(refused)["message"]
    assert site.model.requests == []
    assert site.journal.rows()[0].refused == {"model": 1}
    _routed(site, allow_explicit_model=True, models=["auto", "tiny", "tiny-sensitive"])
    assert (await site.chat(model="tiny")).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_a_route_to_a_model_not_granted_is_refused_and_never_reaches_it(
    site: Site, stream: bool
) -> None:
    _routed(site, models=["auto", "tiny"])
    refused = await site.chat(
        model="auto",
        stream=stream,
        messages=[{"role": "user", "content": "a patient's history"}],
    )
    assert refused.status_code == 403
    error = _error(refused)
    assert error["code"] == "routed_model_not_granted"
    assert "'tiny-sensitive'" in error["message"]
    assert site.model.requests == []
    (row,) = site.journal.rows()
    assert (row.model, row.requests, row.refused) == ("tiny-sensitive", 0, {"model": 1})
    # The budget's reservation is given back: nothing was used.
    assert all(n == 0 for _, n in site.proxy._limiter.in_flight_all())


async def test_models_lists_auto_only_while_the_site_routes(site: Site) -> None:
    site.apply(
        keys={ALICE: "alice"},
        identities={"alice": {"groups": [], "models": ["auto", "tiny", "metrics"]}},
    )
    listed = await site.client.get("/v1/models", headers={"authorization": f"Bearer {ALICE}"})
    assert [m["id"] for m in listed.json()["data"]] == ["tiny"]
    _routed(site, models=["auto", "tiny"])
    listed = await site.client.get("/v1/models", headers={"authorization": f"Bearer {ALICE}"})
    assert [m["id"] for m in listed.json()["data"]] == ["auto", "tiny"]
