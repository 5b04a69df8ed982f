"""Whether this site's OpenZiti controller answers: reachable, unreachable, or not installed.

The pages and ``GET /api/v1/controller/status`` say it up front, before anyone tries an
action. The probe is the controller's unauthenticated ``GET /edge/management/v1/version``
with a short timeout (``controller_probe_timeout``) and no retry; its answer is reused for
``controller_status_seconds``, and one probe runs at a time, so a page waits at most one
short probe, never the controller's full timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx

from appliance.admin.controller import probe_client
from appliance.admin.settings import AdminSettings
from appliance.db.models import utcnow
from appliance.errors import ApplianceError
from appliance.ziti import EDGE_MANAGEMENT_PATH, ZitiClient

__all__ = ["ControllerState", "ControllerStatus", "ControllerWatch"]

ControllerState = Literal["reachable", "unreachable", "not installed"]
#: Asks the controller for its version; returns it or raises ApplianceError.
Probe = Callable[[], str]


@dataclass(frozen=True)
class ControllerStatus:
    """What the last probe found.

    ``since`` is when the controller was first found unreachable in the current outage;
    ``tried`` names the request that was made; ``detail`` is its version or the error.
    """

    state: ControllerState
    url: str | None
    checked_at: datetime
    detail: str
    tried: str | None = None
    since: datetime | None = None
    version: str | None = None

    def summary(self) -> str:
        """One line for people."""
        if self.state == "not installed":
            return (
                "No OpenZiti controller is installed on this site (the admin settings name "
                "no controller_password_file): identities and model access cannot be "
                "created here, and break-glass access cannot be handed out."
            )
        if self.state == "reachable":
            return f"Controller {self.url} is reachable (version {self.version})."
        since = f"{self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "now"
        return (
            f"Controller {self.url} is unreachable since {since}. Last tried at "
            f"{self.checked_at:%H:%M:%S} UTC: {self.tried}: {self.detail}. Changes that "
            "need it are refused until it answers."
        )


class ControllerWatch:
    """Probes the controller on demand, at most every ``controller_status_seconds``.

    ``probe`` replaces the version request, ``clock`` (monotonic, for reuse) and ``wall``
    (UTC, for what is shown) the clocks: tests give their own.
    """

    def __init__(
        self,
        settings: AdminSettings,
        *,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._probe = probe
        self._clock = clock
        self._wall = wall
        self._client: ZitiClient | None = None
        self._lock = threading.Lock()
        self._last: ControllerStatus | None = None
        self._last_at = 0.0

    def status(self) -> ControllerStatus:
        """The controller's status, probed now unless a recent answer can be reused."""
        if not self.settings.controller_installed:
            return ControllerStatus("not installed", None, self._wall(), "no controller configured")
        last = self._last
        if last is not None and self._clock() - self._last_at < self._ttl():
            return last
        # One probe at a time. While one runs, others reuse the previous answer; only the
        # very first callers, with no answer yet, wait for it (at most one short probe).
        if not self._lock.acquire(blocking=last is None):
            return last if last is not None else self._probe_now(None)
        try:
            if self._last is None or self._clock() - self._last_at >= self._ttl():
                self._last = self._probe_now(self._last)
                self._last_at = self._clock()
            return self._last
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the probe's connection pool."""
        if self._client is not None:
            self._client.close()

    def _ttl(self) -> float:
        return self.settings.controller_status_seconds

    def _probe_now(self, previous: ControllerStatus | None) -> ControllerStatus:
        url = self.settings.controller_url
        tried = (
            f"GET {url.rstrip('/')}{EDGE_MANAGEMENT_PATH}/version "
            f"(timeout {self.settings.controller_probe_timeout:g} s)"
        )
        now = self._wall()
        try:
            version = (self._probe or self._default_probe)()
        except (ApplianceError, httpx.HTTPError, OSError, ValueError) as exc:
            since = previous.since if previous and previous.state == "unreachable" else now
            return ControllerStatus("unreachable", url, now, str(exc), tried, since)
        return ControllerStatus("reachable", url, now, version, tried, version=version)

    def _default_probe(self) -> str:
        if self._client is None:
            self._client = probe_client(self.settings)
        return self._client.version().version
