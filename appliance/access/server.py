"""``appliance access serve``: the proxy's two listeners and its admin link in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import uvicorn

from appliance.access.config import AccessConfig
from appliance.access.journal import UsageJournal
from appliance.access.limiter import Limiter
from appliance.access.periods import local_day
from appliance.access.proxy import AccessProxy
from appliance.access.slots import FixedGateway, GatewaySlots, Slot
from appliance.access.sync import AdminLink, PolicyStore, admin_client

__all__ = ["serve"]

log = logging.getLogger(__name__)
#: How long a stop waits for answers in progress (the unit gives podman 30 s).
_GRACE_SECONDS = 25


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve` (two share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: AccessConfig) -> None:
    """Run until SIGTERM or SIGINT; answers in progress may finish first."""
    # Secrets first: a missing one stops the start before anything is opened.
    gateway_key = (
        None if config.gateway_slots else config.secret(config.gateway_key_file, "llm-gateway key")
    )
    admin_token = config.secret(config.admin_token_file, "admin service token")
    journal = UsageJournal(config.data_dir / "usage.db")
    store = PolicyStore(config.data_dir / "policy.json")
    limiter = Limiter()
    # aiohttp on the two loopback legs: a tenth of httpx's cost per request (ADR 0016).
    upstream = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=config.upstream_timeout_seconds
        ),
        auto_decompress=False,
    )
    gateway: FixedGateway | GatewaySlots
    if config.gateway_slots:
        gateway = GatewaySlots(
            [Slot(s.name, f"http://{s.listen}", config=s.config) for s in config.gateway_slots],
            backend_url=f"http://{config.backend_listen}",
            http=upstream,
        )
    else:
        gateway = FixedGateway(config.gateway_url, gateway_key)
    proxy = AccessProxy(config, limiter, journal, gateway=gateway, http=upstream)
    saved = store.load()
    if saved is not None:
        proxy.set_policy(saved)
        log.info("the last access policy received (%s) is in force", saved.version[:12])
    else:
        log.warning(
            "no access policy yet: only the configuration's static keys work until "
            "the admin service is reached"
        )
    today = local_day(datetime.now(UTC), proxy.policy.timezone)
    limiter.load_usage(journal.tokens_since(today - timedelta(days=40)))
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=config.address(which)[0],
                port=config.address(which)[1],
                interface="asgi3",
                lifespan="off",
                proxy_headers=False,
                access_log=False,
                timeout_graceful_shutdown=_GRACE_SECONDS,
                log_level="warning",
            )
        )
        for app, which in ((proxy.front, "listen"), (proxy.back, "backend_listen"))
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # Started after the saved policy is in force: the slots begin with its routing.
    link_task: asyncio.Task[None] | None = None
    gateway_task = asyncio.create_task(gateway.run())
    client: httpx.AsyncClient | None = None
    if config.admin_url:
        client = admin_client(
            config.admin_ca,
            admin_token,
            config.policy_wait_seconds + 10,
        )
        link = AdminLink(
            proxy,
            journal,
            store,
            client,
            admin_url=config.admin_url,
            gateway_name=config.gateway_name,
            wait_seconds=config.policy_wait_seconds,
            upload_seconds=config.upload_seconds,
        )
        link_task = asyncio.create_task(link.run())
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        gateway_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gateway_task
        if link_task is not None:
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link_task
        if client is not None:
            await client.aclose()
        await upstream.close()
        journal.close()
