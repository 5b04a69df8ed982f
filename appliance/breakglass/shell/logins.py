"""Who may open a vendor shell: one secret per engineer per window, checked at each login.

Why a secret of our own besides the overlay: the overlay admits the window's engineer
identities to the ``vendor-shell-<host>`` services, but the proxy behind them sees only a
loopback connection. The engineer logs in to the proxy as their engineer name with the
shell secret handed over beside their enrollment token at activation, and so the proxy
knows the window and the engineer of every session it records.

The secrets are 192 random bits, shown once and kept only as their sha256 (like API
tokens: a secret that cannot be guessed needs no slow hash) under ``shell_secrets`` in
the window's ``ziti_objects`` JSON, which holds what activation made for the window: no
schema change, and the hashes die with the window's row state. A secret may be used for
any number of logins while its window is active and names the host; it is refused once
the window is over on either clock, revoked, expired or sealed.

Nothing here imports asyncssh: the admin service mints secrets at activation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance.breakglass.clock import BootClock, is_over
from appliance.breakglass.errors import ShellLoginError
from appliance.breakglass.windows import deadline_of
from appliance.db.models import BreakglassWindow, WindowState, utcnow

__all__ = [
    "SECRETS_KEY",
    "SHELL_SERVICE_PREFIX",
    "MintedSecrets",
    "ShellGrant",
    "WindowLogins",
    "check_login",
    "hash_secret",
    "mint_shell_secrets",
    "open_window_ends",
    "shell_hosts",
    "shell_service",
]

#: The overlay service of a host's vendor shell is this prefix and the host's name.
SHELL_SERVICE_PREFIX = "vendor-shell-"
#: Where a window's secret hashes lie in its ``ziti_objects``.
SECRETS_KEY = "shell_secrets"


def shell_service(host: str) -> str:
    """The overlay service that forwards to ``host``'s vendor shell."""
    return f"{SHELL_SERVICE_PREFIX}{host}"


def shell_hosts(scope: Iterable[str]) -> list[str]:
    """The hosts whose vendor shell a window's ``scope`` names."""
    return [
        s.removeprefix(SHELL_SERVICE_PREFIX) for s in scope if s.startswith(SHELL_SERVICE_PREFIX)
    ]


def hash_secret(secret: str) -> str:
    """How a shell secret is stored: ``sha256:HEX`` of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MintedSecrets:
    """Shell secrets for a window's engineers: ``shown`` once to the approving admin,
    ``stored`` (hashes only) with the window."""

    shown: dict[str, str]
    stored: dict[str, str]

    def __repr__(self) -> str:  # never the secrets in a log line
        return f"MintedSecrets(engineers={sorted(self.shown)})"


def mint_shell_secrets(engineers: Iterable[str]) -> MintedSecrets:
    """A fresh random secret per engineer, and the hashes to store."""
    shown = {engineer: secrets.token_urlsafe(24) for engineer in engineers}
    return MintedSecrets(shown, {e: hash_secret(s) for e, s in shown.items()})


@dataclass(frozen=True)
class ShellGrant:
    """A login the proxy let in: whose, to which host, and until when (the window's end
    by the earlier of its two clocks, when the login was checked)."""

    window_id: int
    engineer: str
    host: str
    ends: datetime


def _end_of(window: BreakglassWindow, clock: BootClock, now: datetime) -> datetime | None:
    """The window's end by the earlier of its clocks, or None when it is over."""
    deadline = deadline_of(window)
    if window.ends_at is None or deadline is None:
        return None
    if is_over(window.ends_at, deadline, now, clock):
        return None
    return min(window.ends_at, now + timedelta(seconds=deadline.remaining(clock)))


def _active(db: Session) -> list[BreakglassWindow]:
    return list(
        db.scalars(
            select(BreakglassWindow)
            .where(
                BreakglassWindow.state == WindowState.active,
                BreakglassWindow.extends_id.is_(None),
            )
            .order_by(BreakglassWindow.id)
        )
    )


def check_login(
    db: Session,
    engineer: str,
    secret: str,
    host: str,
    *,
    clock: BootClock,
    now: datetime | None = None,
) -> ShellGrant:
    """The active window whose secret for ``engineer`` is ``secret`` and whose scope names
    ``host``'s vendor shell; ShellLoginError saying why not (for the proxy's log: the
    vendor is told only that the login failed)."""
    now = now or utcnow()
    presented = hash_secret(secret)
    for window in _active(db):
        stored = (window.ziti_objects or {}).get(SECRETS_KEY, {}).get(engineer)
        if engineer not in window.engineers or not isinstance(stored, str):
            continue
        if not hmac.compare_digest(stored, presented):
            continue
        if host not in shell_hosts(window.scope):
            raise ShellLoginError(
                f"window {window.id} does not name {shell_service(host)} in its scope "
                f"({', '.join(window.scope)}): {engineer} may not open a shell on {host}"
            )
        ends = _end_of(window, clock, now)
        if ends is None:
            raise ShellLoginError(f"window {window.id} is over: {engineer} may not log in")
        return ShellGrant(window.id, engineer, host, ends)
    raise ShellLoginError(
        f"no active window holds this secret for engineer {engineer!r} (host {host})"
    )


def open_window_ends(
    db: Session, *, clock: BootClock, now: datetime | None = None
) -> dict[int, datetime]:
    """Every active window that is not over, with its end by the earlier clock."""
    now = now or utcnow()
    ends = {}
    for window in _active(db):
        end = _end_of(window, clock, now)
        if end is not None:
            ends[window.id] = end
    return ends


class WindowLogins:
    """The admin database as the proxy reads it: logins and which windows are still open.

    Blocking (SQLAlchemy); the proxy calls it from a worker thread.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], BootClock]) -> None:
        self._sessions = sessions
        self._clock = clock

    def admit(self, engineer: str, secret: str, host: str) -> ShellGrant:
        """See :func:`check_login`."""
        with self._sessions() as db:
            return check_login(db, engineer, secret, host, clock=self._clock())

    def open_windows(self) -> dict[int, datetime]:
        """See :func:`open_window_ends`."""
        with self._sessions() as db:
            return open_window_ends(db, clock=self._clock())
