"""The site's SSH certificate authority for vendor shells (ADR 0021).

Why a CA and not keys: the vendor must never hold a credential for a target. For each
session the proxy makes a key pair in memory and has this CA sign a user certificate for
the one account targets open to it (``appliance-vendor``), valid until the window's end
at the latest. Targets trust the CA for that account only (``TrustedUserCAKeys``,
``AuthorizedPrincipalsFile``), so nothing is copied to a target per window and nothing
outlives the window on a target.

The CA key is ECDSA P-384 like the site's other keys. It is created once, exclusively
(an existing key is never overwritten: the targets trust it), mode 0600 in a folder no
one but its owner can enter, and refused on load when anyone else could read it.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh

from appliance._fsutil import fsync_dir
from appliance.breakglass.errors import ShellCaError

__all__ = [
    "CA_ALGORITHM",
    "CERT_SKEW",
    "TARGET_PRINCIPAL",
    "SessionCredential",
    "SiteSshCa",
    "create_key",
    "load_key",
]

#: The site's key algorithm (as the audit and TLS keys): ECDSA on P-384.
CA_ALGORITHM = "ecdsa-sha2-nistp384"
#: The one account on a target that a vendor certificate opens.
TARGET_PRINCIPAL = "appliance-vendor"
#: How far back a certificate's validity starts: a target whose clock is a little behind
#: the admin host's would otherwise refuse a certificate made this second.
CERT_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionCredential:
    """One session's key pair and certificate; lives only in the proxy's memory."""

    key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate
    key_id: str
    serial: int
    valid_after: datetime
    valid_before: datetime

    def __repr__(self) -> str:  # never the key in a log line
        return f"SessionCredential({self.key_id!r}, until {self.valid_before.isoformat()})"


def create_key(path: Path) -> asyncssh.SSHKey:
    """Make a new P-384 key at ``path``: exclusively (an existing file is an error, never
    replaced), mode 0600, in a folder only its owner may enter (made 0700 if absent)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private_folder(path.parent)
    key = asyncssh.generate_private_key(CA_ALGORITHM, comment=path.name)
    data = key.export_private_key("openssh")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ShellCaError(
            f"{path} already exists: a key that targets trust is never replaced",
            hint="load it instead, or move it away by hand if it is truly to be retired",
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return key


def load_key(path: Path) -> asyncssh.SSHKey:
    """The P-384 key at ``path``; refused when its file or folder lets others in."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ShellCaError(
            f"cannot read the key {path}: {exc.strerror}",
            hint="create it once with `appliance breakglass shell-ca --init`",
        ) from exc
    if info.st_mode & 0o077:
        raise ShellCaError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: expected 0600 (root only)"
        )
    _check_private_folder(path.parent)
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ShellCaError(f"{path} is not a readable OpenSSH private key: {exc}") from exc
    if key.get_algorithm() != CA_ALGORITHM:
        raise ShellCaError(f"{path} holds a {key.get_algorithm()} key: expected {CA_ALGORITHM}")
    return key


def _check_private_folder(folder: Path) -> None:
    info = folder.stat()
    if info.st_mode & 0o077 or info.st_uid != os.geteuid():
        raise ShellCaError(
            f"{folder} has mode {stat.S_IMODE(info.st_mode):04o} and owner {info.st_uid}: "
            f"expected 0700, owned by uid {os.geteuid()} (the key's folder is for it alone)"
        )


class SiteSshCa:
    """Signs one certificate per vendor session with the site's CA key."""

    def __init__(self, key: asyncssh.SSHKey) -> None:
        if key.get_algorithm() != CA_ALGORITHM:
            raise ShellCaError(f"the CA key is {key.get_algorithm()}: expected {CA_ALGORITHM}")
        self._key = key

    @classmethod
    def load(cls, path: Path) -> SiteSshCa:
        """The CA whose key lies at ``path`` (see :func:`load_key`)."""
        return cls(load_key(path))

    def public_line(self) -> str:
        """The CA's public key as one OpenSSH line, for targets' ``TrustedUserCAKeys``."""
        line = self._key.export_public_key("openssh").decode("ascii").strip()
        algorithm, blob = line.split()[:2]
        return f"{algorithm} {blob} appliance-vendor-shell-ca"

    def issue(
        self,
        *,
        window_id: int,
        engineer: str,
        host: str,
        session_id: str,
        window_ends: datetime,
        now: datetime | None = None,
    ) -> SessionCredential:
        """A fresh key pair and its certificate for principal ``appliance-vendor``, valid
        from a minute ago until ``window_ends`` (never later); only a pty is permitted:
        no port, agent or X11 forwarding, no user rc. The key id names the window, the
        engineer, the host and the session, so a target's sshd log says whose it was."""
        now = now or datetime.now(UTC)
        # Whole seconds, rounded down: a certificate never outlives the window by a fraction.
        before = window_ends.replace(microsecond=0)
        if before <= now:
            raise ShellCaError(
                f"window {window_id} ends at {window_ends.isoformat()}, not after now "
                f"({now.isoformat()}): no certificate is issued for it"
            )
        after = (now - CERT_SKEW).replace(microsecond=0)
        key = asyncssh.generate_private_key(CA_ALGORITHM)
        key_id = f"window={window_id} engineer={engineer} host={host} session={session_id}"
        serial = secrets.randbits(63)
        certificate = self._key.generate_user_certificate(
            key,
            key_id,
            serial=serial,
            principals=[TARGET_PRINCIPAL],
            valid_after=int(after.timestamp()),
            valid_before=int(before.timestamp()),
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=False,
            permit_pty=True,
            permit_user_rc=False,
            comment=key_id,
        )
        return SessionCredential(key, certificate, key_id, serial, after, before)
