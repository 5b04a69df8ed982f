"""The access proxy's link to the admin service: the policy pulled, usage handed over.

Both run for as long as the proxy runs and never stop it: with the admin service down the
proxy goes on with the last policy it received (kept on disk, so a restart keeps it too)
and its journal keeps the usage until the admin service acknowledges it. Each outage is
logged once when it starts and once when it ends, not on every try.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from appliance._fsutil import atomic_write_bytes
from appliance.access.journal import UsageJournal
from appliance.access.policy import Policy, PolicyError, parse_policy
from appliance.access.proxy import AccessProxy

__all__ = ["AdminLink", "PolicyStore", "admin_client"]

log = logging.getLogger(__name__)
_RETRY_SECONDS = 2.0


class PolicyStore:
    """The last policy received, in one file written atomically (root only)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def load(self) -> Policy | None:
        """The stored policy, or None when there is none or it cannot be used."""
        try:
            saved = orjson.loads(self._path.read_bytes())
            return parse_policy(str(saved["version"]), saved["policy"])
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, PolicyError) as exc:
            log.warning(
                "the stored access policy %s cannot be used (%s): waiting for a new one",
                self._path,
                exc,
            )
            return None

    def save(self, version: str, document: Any) -> None:
        """Keep ``document`` as the last policy received."""
        atomic_write_bytes(
            self._path, orjson.dumps({"version": version, "policy": document}), mode=0o600
        )


def admin_client(ca: Path | None, token: str | None, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for the admin service: its own certificate pinned, the token sent."""
    verify: ssl.SSLContext | bool = True
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        # The certificate itself is the trust anchor (pinned); the name the overlay's local
        # proxy is reached by (127.0.0.1) need not be in it.
        context.check_hostname = False
        verify = context
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(verify=verify, headers=headers, timeout=timeout)


class AdminLink:
    """Pulls the policy and hands over usage, for one proxy."""

    def __init__(
        self,
        proxy: AccessProxy,
        journal: UsageJournal,
        store: PolicyStore,
        client: httpx.AsyncClient,
        *,
        admin_url: str,
        gateway_name: str,
        wait_seconds: float,
        upload_seconds: float,
    ) -> None:
        self._proxy = proxy
        self._journal = journal
        self._store = store
        self._client = client
        self._url = admin_url.rstrip("/") + "/api/v1/access"
        self._gateway = gateway_name
        self._wait = wait_seconds
        self._upload_every = upload_seconds
        self._down: dict[str, bool] = {"policy": False, "usage": False}

    async def run(self) -> None:
        """Both loops, until cancelled."""
        await asyncio.gather(self.follow_policy(), self.hand_over_usage())

    async def follow_policy(self) -> None:
        """Long-poll the admin service; apply and keep each new policy."""
        while True:
            try:
                changed = await self.poll_once()
            except Exception as exc:  # the link must outlive any answer
                self._outage("policy", exc)
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            self._recovered("policy")
            if changed is None:
                await asyncio.sleep(_RETRY_SECONDS)

    async def poll_once(self) -> bool | None:
        """One long poll: True when a new policy was applied, False when none came, None
        when the admin service answered something unexpected (it is logged)."""
        answer = await self._client.get(
            f"{self._url}/policy",
            params={"version": self._proxy.policy.version, "wait": self._wait},
            timeout=self._wait + 10,
        )
        if answer.status_code == 304:
            return False
        if answer.status_code != 200:
            raise ValueError(f"HTTP {answer.status_code}: {answer.text[:200]}")
        body = orjson.loads(answer.content)
        policy = parse_policy(str(body["version"]), body["policy"])
        self._store.save(policy.version, body["policy"])
        self._proxy.set_policy(policy)
        log.info("access policy %s in force", policy.version[:12])
        return True

    async def hand_over_usage(self) -> None:
        """Post what the journal holds that the admin service has not acknowledged."""
        while True:
            try:
                await self.upload_once()
            except Exception as exc:  # the link must outlive any answer
                self._outage("usage", exc)
            else:
                self._recovered("usage")
            await asyncio.sleep(self._upload_every)

    async def upload_once(self) -> int:
        """Upload every pending row; the number of rows acknowledged."""
        sent = 0
        while True:
            rows, newest = self._journal.pending()
            if not rows:
                return sent
            answer = await self._client.post(
                f"{self._url}/usage",
                content=orjson.dumps(
                    {"gateway": self._gateway, "rows": [r.as_upload() for r in rows]}
                ),
                headers={"content-type": "application/json"},
            )
            if answer.status_code != 200:
                raise ValueError(f"HTTP {answer.status_code}: {answer.text[:200]}")
            self._journal.acknowledge(newest)
            sent += len(rows)

    def _outage(self, what: str, exc: Exception) -> None:
        if not self._down[what]:
            self._proxy.admin_outages[what] = (
                f"{datetime.now(UTC).isoformat(timespec='seconds')} ({type(exc).__name__}: "
                f"{str(exc)[:200]})"
            )
            log.warning(
                "the admin service does not answer for the %s (%s: %s): going on with %s",
                what,
                type(exc).__name__,
                exc,
                "the last policy received" if what == "policy" else "usage kept here",
            )
        self._down[what] = True

    def _recovered(self, what: str) -> None:
        self._proxy.admin_outages.pop(what, None)
        if self._down[what]:
            log.warning("the admin service answers again for the %s", what)
        self._down[what] = False
