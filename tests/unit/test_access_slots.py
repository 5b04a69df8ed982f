"""Two llm-gateway slots taking turns: a routing change reaches new requests and cuts no
answer in flight. systemd's part (a path unit restarts a slot's unit when its file changes)
is played by ``Systemd`` below; llm-gateway's by a stand-in that takes its file's key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from appliance.access.gateway_config import (
    read_gateway_file,
    render_gateway_config,
    routing_digest,
)
from appliance.access.slots import GatewaySlots, GatewayUnavailableError, Slot
from tests.unit.access_fakes import routing_document, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowGateway:
    """llm-gateway as the slots meet it: its file's key or 401; /stream answers until told."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        allowed = (b"authorization", f"Bearer {self.key}".encode()) in scope["headers"]
        await send({"type": "http.response.start", "status": 200 if allowed else 401})
        if scope["path"] == "/stream":
            await send({"type": "http.response.body", "body": b"first ", "more_body": True})
            await self.release.wait()
        await send({"type": "http.response.body", "body": b"end", "more_body": False})


class Systemd:
    """Restarts a slot's instance when its file is replaced, as the path unit does; a
    routing named in ``broken`` never comes up."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self.running: dict[str, SlowGateway] = {}
        self.starts: dict[str, int] = {slot.name: 0 for slot in slots}
        self.broken: set[str] = set()
        self._stops: dict[str, contextlib.AsyncExitStack] = {}

    async def watch(self) -> None:
        seen: dict[str, int] = {}
        while True:
            for slot in self.slots:
                assert slot.config is not None
                stamp = slot.config.stat().st_ino if slot.config.exists() else 0
                if stamp and seen.get(slot.name) != stamp:
                    seen[slot.name] = stamp
                    await self._restart(slot)
            await asyncio.sleep(0.02)

    async def _restart(self, slot: Slot) -> None:
        """Stop the slot's instance (cutting what it serves) and start one on its file."""
        assert slot.config is not None
        if slot.name in self._stops:
            self.running.pop(slot.name).release.set()
            await self._stops.pop(slot.name).aclose()
        found = read_gateway_file(slot.config)
        assert found is not None
        self.starts[slot.name] += 1
        if found.digest in self.broken:
            return
        port = int(slot.url.rsplit(":", 1)[1])
        stack = contextlib.AsyncExitStack()
        gateway = SlowGateway(found.key)
        await stack.enter_async_context(serving(gateway, port=port))
        self.running[slot.name] = gateway
        self._stops[slot.name] = stack

    async def stop(self) -> None:
        for stack in self._stops.values():
            await stack.aclose()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def site(
    tmp_path: Path,
) -> AsyncIterator[tuple[GatewaySlots, Systemd, aiohttp.ClientSession]]:
    slots = [
        Slot(name, f"http://127.0.0.1:{_free_port()}", config=tmp_path / name / "config.yaml")
        for name in ("a", "b")
    ]
    systemd = Systemd(slots)
    watcher = asyncio.create_task(systemd.watch())
    async with aiohttp.ClientSession() as http:
        gateway = GatewaySlots(
            slots,
            backend_url="http://127.0.0.1:8082",
            http=http,
            start_seconds=3,
            probe_seconds=0.02,
        )
        runner = asyncio.create_task(gateway.run())
        yield gateway, systemd, http
        runner.cancel()
        watcher.cancel()
        await systemd.stop()


async def _until(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_new_routing_reaches_new_requests_and_cuts_no_stream(site: Any) -> None:
    gateway, systemd, http = site
    gateway.desire(None)
    await _until(lambda: gateway.routing_live(None))
    first = gateway.active
    routed = routing_document()
    with gateway.lease() as slot:
        async with http.get(f"{slot.url}/stream", headers=slot.auth()) as stream:
            assert await stream.content.readexactly(6) == b"first "
            gateway.desire(routed)
            await _until(lambda: gateway.routing_live(routed))
            assert gateway.active is not first
            # The stream on the slot that stopped taking requests goes on to its end.
            systemd.running[first.name].release.set()
            assert await stream.content.read() == b"end"
    assert systemd.starts == {"a": 1, "b": 1}


async def test_a_slot_restarts_only_once_its_last_answer_has_ended(site: Any) -> None:
    gateway, systemd, http = site
    gateway.desire(None)
    await _until(lambda: gateway.routing_live(None))
    old = gateway.active
    with gateway.lease() as slot:
        async with http.get(f"{slot.url}/stream", headers=slot.auth()) as stream:
            await stream.content.readexactly(6)
            gateway.desire(routing_document())
            await _until(lambda: gateway.routing_live(routing_document()))
            # A third routing wants the old slot back, which still serves the stream.
            third = routing_document(allow_explicit_model=True)
            gateway.desire(third)
            await _until(lambda: "waiting for 1 answer" in gateway.problem)
            assert not gateway.routing_live(third)
            assert systemd.starts[old.name] == 1
            systemd.running[old.name].release.set()
            assert await stream.content.read() == b"end"
    await _until(lambda: gateway.routing_live(third))
    assert gateway.active is old and systemd.starts[old.name] == 2


async def test_a_routing_that_does_not_start_leaves_the_one_before_serving(site: Any) -> None:
    gateway, systemd, _ = site
    gateway.desire(None)
    await _until(lambda: gateway.routing_live(None))
    before = gateway.active
    systemd.broken.add(routing_digest(routing_document()))
    gateway.desire(routing_document())
    await _until(lambda: "did not answer" in gateway.problem)
    assert gateway.active is before
    with gateway.lease() as slot:
        assert slot is before
    assert "journalctl -u appliance-llm-gateway-" in gateway.health()["routing_change"]


async def test_a_file_that_cannot_be_written_leaves_the_routing_before_serving(
    site: Any,
) -> None:
    gateway, systemd, _ = site
    gateway.desire(None)
    await _until(lambda: gateway.routing_live(None))
    before = gateway.active
    idle = next(slot for slot in systemd.slots if slot is not before)
    blocked = idle.config.parent / "blocked"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where a folder goes")
    idle.config = blocked / "config.yaml"
    gateway.desire(routing_document())
    await _until(lambda: "cannot write llm-gateway's file" in gateway.problem)
    assert gateway.active is before and gateway.routing_live(None)


async def test_a_restarted_proxy_takes_up_the_slot_already_running_its_routing(
    site: Any, tmp_path: Path
) -> None:
    gateway, systemd, http = site
    routed = routing_document()
    gateway.desire(routed)
    await _until(lambda: gateway.routing_live(routed))
    starts = dict(systemd.starts)
    again = GatewaySlots(
        [Slot(s.name, s.url, config=s.config) for s in systemd.slots],
        backend_url="http://127.0.0.1:8082",
        http=http,
        probe_seconds=0.02,
    )
    again.desire(routed)
    runner = asyncio.create_task(again.run())
    try:
        await _until(lambda: again.routing_live(routed))
    finally:
        runner.cancel()
    assert systemd.starts == starts  # nothing restarted


async def test_no_slot_ready_is_a_clear_refusal(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        gateway = GatewaySlots(
            [Slot(n, "http://127.0.0.1:9", config=tmp_path / n / "c.yaml") for n in "ab"],
            backend_url="http://127.0.0.1:8082",
            http=http,
        )
        with pytest.raises(GatewayUnavailableError, match="starting"), gateway.lease():
            pass


def test_the_file_renders_keyword_rules_an_explicit_default_and_no_outside_provider() -> None:
    text = render_gateway_config(
        listen="127.0.0.1:8081",
        backend_url="http://127.0.0.1:8082",
        key="k" * 64,
        routing=routing_document(),
    )
    document = yaml.safe_load(text)
    assert document["providers"] == {"local": {"base_url": "http://127.0.0.1:8082"}}
    routing = document["routing"]
    assert routing["allow_explicit_model"] is False
    assert routing["default_route"] == "general"
    assert routing["heuristics"] == {
        "enabled": True,
        "rules": [{"match": {"keywords": ["patient"]}, "route": "sensitive"}],
    }
    assert routing["semantic"] == {"enabled": False}
    assert [(r["name"], r["model"]) for r in routing["routes"]] == [
        ("sensitive", "tiny-sensitive"),
        ("general", "tiny"),
    ]


def test_semantic_routes_embed_through_the_back_listener(tmp_path: Path) -> None:
    routing = routing_document()
    routing["routes"][0]["examples"] = ["a clinical note about a person"]
    routing["semantic"] = {"model": "embedder", "threshold": 0.8}
    text = render_gateway_config(
        listen="127.0.0.1:8083", backend_url="http://127.0.0.1:8082", key="k", routing=routing
    )
    document = yaml.safe_load(text)
    assert document["routing"]["semantic"] == {
        "enabled": True,
        "provider": "openai",
        "model": "embedder",
        "threshold": 0.8,
    }
    assert document["providers"]["open_ai"]["base_url"] == "http://127.0.0.1:8082"
    assert document["routing"]["routes"][0]["examples"] == ["a clinical note about a person"]


def test_a_file_written_here_reads_back_its_key_and_routing(tmp_path: Path) -> None:
    from appliance.access.gateway_config import write_gateway_file

    path = tmp_path / "a" / "config.yaml"
    write_gateway_file(
        path,
        render_gateway_config(listen="127.0.0.1:8081", backend_url="x", key="sekrit", routing=None),
    )
    found = read_gateway_file(path)
    assert found is not None and (found.key, found.digest) == ("sekrit", "none")
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(path.parent.iterdir()) == [path]  # nothing half-written beside it
    path.write_text("listen: x\n")
    assert read_gateway_file(path) is None
