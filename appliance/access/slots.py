"""Which llm-gateway the access proxy's front sends to: one fixed, or two that take turns.

llm-gateway reads its configuration (its routing) at start only, and a restart cuts every
stream in flight. So the gateway host runs two instances, "slots", each under its own
systemd unit that a path unit restarts when its file changes (ADR 0017). A new routing is
written into the slot nobody is using, once its last answer has ended; when that instance
answers with the file's own key it runs the new file, and new requests go there. Requests
already on the other slot finish where they are. A routing that does not come up leaves
the slot in use as it was, and the health answer says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from appliance.access.gateway_config import (
    read_gateway_file,
    render_gateway_config,
    routing_digest,
    write_gateway_file,
)

__all__ = ["FixedGateway", "GatewaySlots", "GatewayUnavailableError", "Slot"]

log = logging.getLogger(__name__)


class GatewayUnavailableError(Exception):
    """No llm-gateway instance is ready for requests (yet)."""


@dataclass
class Slot:
    """One llm-gateway instance: where it listens, its file, the key that file holds."""

    name: str
    url: str
    key: str | None = None
    config: Path | None = None
    digest: str | None = None
    in_flight: int = 0

    def auth(self) -> dict[str, str]:
        """The header llm-gateway asks for."""
        return {"authorization": f"Bearer {self.key}"} if self.key else {}


class FixedGateway:
    """One llm-gateway whose file the installer writes: routing is not changed live."""

    def __init__(self, url: str, key: str | None) -> None:
        self._slot = Slot("fixed", url, key)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Slot]:
        """The instance for one request."""
        self._slot.in_flight += 1
        try:
            yield self._slot
        finally:
            self._slot.in_flight -= 1

    def desire(self, routing: Mapping[str, Any] | None) -> None:
        """Routing is the installer's here: nothing to do."""

    def routing_live(self, routing: Mapping[str, Any] | None) -> bool:
        """Whether ``routing`` is what the instance runs (never known here: assume so)."""
        return True

    def health(self) -> dict[str, object]:
        """The instance, for the proxy's health answer."""
        return {"gateway": self._slot.url, "routing": "fixed by the installer"}

    async def run(self) -> None:
        """Nothing to keep up."""


class GatewaySlots:
    """Two llm-gateway instances taking turns, so a routing change cuts no answer."""

    def __init__(
        self,
        slots: list[Slot],
        *,
        backend_url: str,
        http: aiohttp.ClientSession,
        start_seconds: float = 120.0,
        probe_seconds: float = 0.25,
    ) -> None:
        if len(slots) != 2:
            raise ValueError(f"two llm-gateway slots take turns; found {len(slots)}")
        self._slots = slots
        self._backend_url = backend_url
        self._http = http
        self._start_seconds = start_seconds
        self._probe_seconds = probe_seconds
        self.active: Slot | None = None
        self._desired: Mapping[str, Any] | None = None
        self._changed = asyncio.Event()
        #: What stops the desired routing from being served, for /health ("" when none).
        self.problem = "starting"
        for slot in slots:
            found = read_gateway_file(slot.config) if slot.config else None
            if found is not None:
                slot.key, slot.digest = found.key, found.digest

    @contextlib.contextmanager
    def lease(self) -> Iterator[Slot]:
        """The instance for one request: the active one, held until the answer ends."""
        slot = self.active
        if slot is None:
            raise GatewayUnavailableError(self.problem or "starting")
        slot.in_flight += 1
        try:
            yield slot
        finally:
            slot.in_flight -= 1

    def desire(self, routing: Mapping[str, Any] | None) -> None:
        """Serve ``routing`` from now on, as soon as an instance runs it."""
        self._desired = routing
        self._changed.set()

    def routing_live(self, routing: Mapping[str, Any] | None) -> bool:
        """Whether the instance taking new requests runs ``routing``."""
        return self.active is not None and self.active.digest == routing_digest(routing)

    def health(self) -> dict[str, object]:
        """Which slot serves, with which routing, and what stands in the way of a change."""
        active = self.active
        return {
            "gateway": f"{active.name} ({active.url})" if active else "none ready",
            "routing": (active.digest or "?")[:12] if active else "none",
            "routing_change": self.problem or "none pending",
            "gateway_in_flight": {slot.name: slot.in_flight for slot in self._slots},
        }

    async def run(self) -> None:
        """Keep an instance running the desired routing, until cancelled."""
        self._changed.set()  # the start: take up a running slot, or start one
        while True:
            await self._changed.wait()
            self._changed.clear()
            desired = self._desired
            try:
                await self._serve(desired)
            except (GatewayUnavailableError, OSError) as exc:
                # A slot that did not start, or its file not written (a full disk): the
                # routing before stays in force, and /health says why.
                self.problem = (
                    str(exc)
                    if isinstance(exc, GatewayUnavailableError)
                    else f"cannot write llm-gateway's file: {exc}; the routing before stays"
                )
                log.warning("llm-gateway: %s", exc)
                await asyncio.sleep(5)  # then try again, unless a newer routing came
                self._changed.set()

    async def _serve(self, routing: Mapping[str, Any] | None) -> None:
        want = routing_digest(routing)
        if self.active is not None and self.active.digest == want:
            self.problem = ""
            return
        if self.active is None:
            # A restarted proxy: an instance may already run the routing wanted.
            for slot in self._slots:
                if slot.digest == want and await self._answers(slot):
                    self._take(slot, "already running")
                    return
        target = self._idle_slot()
        if target.config is None:
            raise GatewayUnavailableError(f"slot {target.name} has no file to write")
        await self._drained(target)
        target.key = secrets.token_hex(32)
        target.digest = want
        write_gateway_file(
            target.config,
            render_gateway_config(
                listen=target.url.removeprefix("http://"),
                backend_url=self._backend_url,
                key=target.key,
                routing=routing,
            ),
        )
        self.problem = f"waiting for slot {target.name} to start with routing {want[:12]}"
        log.info("llm-gateway: %s", self.problem)
        deadline = time.monotonic() + self._start_seconds
        while not await self._answers(target):
            if time.monotonic() > deadline:
                raise GatewayUnavailableError(
                    f"slot {target.name} did not answer with routing {want[:12]} within "
                    f"{self._start_seconds:.0f} s (see its unit's log: journalctl -u "
                    f"appliance-llm-gateway-{target.name}); the routing before it stays"
                )
            await asyncio.sleep(self._probe_seconds)
        self._take(target, "started")

    def _take(self, slot: Slot, how: str) -> None:
        self.active = slot
        self.problem = ""
        log.info("llm-gateway: slot %s %s, routing %s", slot.name, how, (slot.digest or "")[:12])

    def _idle_slot(self) -> Slot:
        """The slot new requests do not go to (the first when none is active)."""
        if self.active is None:
            return self._slots[0]
        return next(slot for slot in self._slots if slot is not self.active)

    async def _drained(self, slot: Slot) -> None:
        """Wait until the answers still running on ``slot`` have ended: it is about to
        restart, and a restart cuts them."""
        while slot.in_flight:
            self.problem = (
                f"waiting for {slot.in_flight} answer(s) on slot {slot.name} to end "
                "before it restarts with the new routing"
            )
            await asyncio.sleep(self._probe_seconds)

    async def _answers(self, slot: Slot) -> bool:
        """Whether ``slot``'s instance runs its file: it takes the file's key."""
        if not slot.key:
            return False
        try:
            async with self._http.get(
                f"{slot.url}/v1/models",
                headers=slot.auth(),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
