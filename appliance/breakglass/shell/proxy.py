"""The vendor shell proxy: an SSH server towards the vendor, a client towards the target.

One listener per opted-in host, on loopback only (the admin host's tunneler forwards the
overlay service ``vendor-shell-<host>`` to it). A vendor engineer logs in with their
engineer name and shell secret (appliance.breakglass.shell.logins); the proxy then opens
the recording, makes a key pair and a certificate from the site CA for this session only
(appliance.breakglass.shell.ca), and logs in to the target's sshd as
``appliance-vendor`` with it. The vendor never sees the key or the certificate.

What is relayed: shells with a PTY and commands (appliance.breakglass.shell.relay), and
file transfers, SFTP and scp in both its protocols, each file recorded by name, size and
sha256 (appliance.breakglass.shell.sftp). Refused: port forwarding both ways and Unix
socket forwarding (each recorded as a refused forward request), agent and X11 forwarding,
other subsystems.

How sessions end: when the recording cannot be written (at once, both sides cut off);
when the certificate's validity ends; when the window ends. The proxy reads the open
windows from the admin database every ``poll_seconds`` (default 1 s) rather than being
told by the reaper or the admin service: it is a process of its own, the database is
where every end is committed first, and a poll needs no new channel between processes
that could be lost. A database that cannot be read ends every session (fail closed, as
the reaper closes the gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncssh

from appliance.breakglass.errors import ShellError, ShellLoginError
from appliance.breakglass.recording.interface import (
    RecordingError,
    SealedRecording,
    SessionInfo,
    SessionRecording,
)
from appliance.breakglass.shell.algorithms import ALGORITHMS
from appliance.breakglass.shell.ca import TARGET_PRINCIPAL, SessionCredential, SiteSshCa
from appliance.breakglass.shell.logins import ShellGrant
from appliance.breakglass.shell.relay import relay_channel
from appliance.breakglass.shell.sftp import RecordedSftp, is_disguised_scp

__all__ = ["Admission", "RecordingFactory", "ShellProxy", "ShellTarget", "VendorSession"]

log = logging.getLogger("appliance.breakglass.shell")

#: Told of each recording once sealed (the process writes its audit record).
SealedHook = Callable[[SessionInfo, SealedRecording], None]
#: Opens the recording of one session; raises RecordingError when it cannot.
RecordingFactory = Callable[[SessionInfo], SessionRecording]


class Admission(Protocol):
    """Who may log in, and which windows are still open (the admin database, read in a
    worker thread: appliance.breakglass.shell.logins.WindowLogins)."""

    def admit(self, engineer: str, secret: str, host: str) -> ShellGrant: ...
    def open_windows(self) -> dict[int, datetime]: ...


@dataclass(frozen=True)
class ShellTarget:
    """An opted-in host: its name, the proxy's loopback port for it, its sshd."""

    host: str
    listen_port: int
    address: str
    port: int = 22


@dataclass(eq=False)
class VendorSession:
    """One vendor SSH connection: its window, its recording, its target connection.

    It ends at ``ends`` (its certificate's end, or sooner when its window's end moves).
    """

    proxy: ShellProxy
    grant: ShellGrant
    info: SessionInfo
    recording: SessionRecording
    vendor: asyncssh.SSHServerConnection
    target: asyncssh.SSHClientConnection
    ends: datetime
    ended: str | None = field(default=None, init=False)
    _channels: Iterator[int] = field(default_factory=lambda: itertools.count(1), init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.end_by(self.ends, "the session's certificate expired")

    def end_by(self, moment: datetime, reason: str) -> None:
        """End the session at ``moment`` (sooner than planned only)."""
        if self._timer is not None and moment >= self.ends:
            return
        if self._timer is not None:
            self._timer.cancel()
        self.ends = moment
        delay = max(0.0, (moment - datetime.now(UTC)).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay, self.end, reason)

    def run_channel(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Relay one shell or command of this session (its own task)."""
        task = asyncio.ensure_future(self._channel(next(self._channels), process))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sftp_server(self, chan: asyncssh.SSHServerChannel[bytes]) -> RecordedSftp:
        """The SFTP subsystem, or legacy scp's server side, of one channel: recorded and
        relayed to an SFTP session on the target (appliance.breakglass.shell.sftp)."""
        channel = next(self._channels)
        command = chan.get_command()
        client = None
        recording: SessionRecording | None = self.recording
        try:
            self.recording.channel_opened(channel, "scp" if command else "sftp")
            if command:
                self.recording.exec_request(channel, command)
            client = await self.target.start_sftp_client(path_encoding=None)
        except RecordingError as exc:
            recording = None
            self.end(f"recording failed: {exc}", failed=True)
        except (asyncssh.Error, OSError) as exc:
            log.warning("%s: channel %d: the target refused SFTP: %s", self, channel, exc)
            chan.exit(255)
        return RecordedSftp(
            chan,
            channel=channel,
            recording=recording,
            client=client,
            fail=lambda exc: self.end(f"recording failed: {exc}", failed=True),
        )

    async def _channel(self, channel: int, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem is not None:
            log.info("%s: subsystem %s refused (not relayed)", self, process.subsystem)
            process.exit(1)
            return
        if process.command is not None and is_disguised_scp(process.command):
            log.info("%s: %r refused: scp is relayed only as 'scp ...'", self, process.command)
            process.stderr.write(b"scp: run as 'scp', so that its files are recorded\n")
            process.exit(1)
            return
        try:
            await relay_channel(channel, process, self.target, self.recording)
        except RecordingError as exc:
            self.end(f"recording failed: {exc}", failed=True)
        except (asyncssh.Error, OSError) as exc:
            log.warning("%s: channel %d ended: %s", self, channel, exc)
            with contextlib.suppress(Exception):
                process.exit(255)

    def refuse_forward(self, kind: str, host: str, port: int) -> None:
        """Record a forwarding request as refused (the caller refuses it)."""
        try:
            self.recording.forward_request(kind, host, port, allowed=False)
        except RecordingError as exc:
            self.end(f"recording failed: {exc}", failed=True)

    def end(self, reason: str, *, failed: bool = False) -> None:
        """End the session now: both connections cut off, the recording ended."""
        if self.ended is not None:
            return
        self.ended = reason
        if self._timer is not None:
            self._timer.cancel()
        self.target.abort()
        self.vendor.abort()
        for task in list(self._tasks):
            task.cancel()
        self.proxy._forget(self)
        log_at = logging.ERROR if failed else logging.INFO
        log.log(log_at, "%s ended: %s", self, reason)
        try:
            sealed = self.recording.end(reason)
        except RecordingError:
            log.exception("%s: its recording could not be sealed", self)
            return
        if self.proxy.sealed is not None:
            self.proxy.sealed(self.info, sealed)

    def __str__(self) -> str:
        i = self.info
        return f"session {i.session_id} (window {i.window_id}, {i.engineer} on {i.host})"


class _VendorServer(asyncssh.SSHServer):
    """The proxy's side of one vendor connection (asyncssh makes one per connection)."""

    def __init__(self, proxy: ShellProxy, target: ShellTarget) -> None:
        self.proxy = proxy
        self.target = target
        self.conn: asyncssh.SSHServerConnection | None = None
        self.session: VendorSession | None = None
        self.lost = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.session is not None:
            self.session.end("the vendor disconnected")

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self.conn is None or self.session is not None:
            return False
        session = await self.proxy._login(self.conn, self.target, username, password)
        if session is not None and self.lost:
            session.end("the vendor disconnected during login")
            return False
        self.session = session
        return session is not None

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        self._refuse("direct-tcpip", dest_host, dest_port)
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._refuse("tcpip-forward", listen_host, listen_port)
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self._refuse("direct-streamlocal", dest_path, 0)
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse("streamlocal-forward", listen_path, 0)
        return False

    def _refuse(self, kind: str, host: str, port: int) -> None:
        if self.session is not None:
            self.session.refuse_forward(kind, host, port)


@dataclass(eq=False, kw_only=True)
class ShellProxy:
    """The listeners, the sessions, and the watch on open windows."""

    ca: SiteSshCa
    host_key: asyncssh.SSHKey
    known_hosts: Path
    admission: Admission
    recordings: RecordingFactory
    targets: Sequence[ShellTarget]
    listen_host: str = "127.0.0.1"
    poll_seconds: float = 1.0
    login_timeout: float = 30.0
    connect_timeout: float = 15.0
    max_sessions: int = 64
    sealed: SealedHook | None = None
    sessions: set[VendorSession] = field(default_factory=set, init=False)
    _by_conn: dict[asyncssh.SSHServerConnection, VendorSession] = field(
        default_factory=dict, init=False
    )
    _servers: list[asyncssh.SSHAcceptor] = field(default_factory=list, init=False)
    _poller: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> dict[str, int]:
        """Listen for every host; the port of each (a configured 0 is chosen by the OS)."""
        ports = {}
        for target in self.targets:
            server = await asyncssh.create_server(
                lambda target=target: _VendorServer(self, target),
                self.listen_host,
                target.listen_port,
                server_host_keys=[self.host_key],
                process_factory=self._process,
                encoding=None,
                line_editor=False,
                allow_pty=True,
                agent_forwarding=False,
                x11_forwarding=False,
                sftp_factory=self._sftp,
                sftp_version=3,
                allow_scp=True,
                password_auth=True,
                public_key_auth=False,
                kbdint_auth=False,
                host_based_auth=False,
                gss_host=None,
                login_timeout=self.login_timeout,
                **ALGORITHMS,
                config=None,
            )
            self._servers.append(server)
            ports[target.host] = server.sockets[0].getsockname()[1]
        self._poller = asyncio.ensure_future(self._poll())
        return ports

    async def close(self, reason: str = "the proxy stopped") -> None:
        """Stop listening and end every session."""
        if self._poller is not None:
            self._poller.cancel()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for session in list(self.sessions):
            session.end(reason)

    def end_window(self, window_id: int, reason: str) -> int:
        """End every session of window ``window_id`` now; how many there were."""
        ending = [s for s in self.sessions if s.grant.window_id == window_id]
        for session in ending:
            session.end(reason)
        return len(ending)

    async def poll_once(self) -> None:
        """Read the open windows once: end the sessions of any window no longer open,
        and move a session's end earlier when its window's end moved earlier."""
        try:
            open_windows = await asyncio.to_thread(self.admission.open_windows)
        except Exception:  # whatever it is, no session outlives a window it cannot see
            log.exception("cannot read the open windows: every session ends")
            for session in list(self.sessions):
                session.end("the windows could not be read")
            return
        for session in list(self.sessions):
            try:
                session.recording.tick()
            except RecordingError as exc:
                session.end(f"recording failed: {exc}", failed=True)
                continue
            ends = open_windows.get(session.grant.window_id)
            if ends is None:
                session.end(f"window {session.grant.window_id} ended")
            else:
                session.end_by(ends, f"window {session.grant.window_id} ended")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            if self.sessions:
                await self.poll_once()

    def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        session = self._by_conn.get(process.get_extra_info("connection"))
        if session is None or session.ended is not None:
            process.exit(255)
            return
        session.run_channel(process)

    async def _sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> RecordedSftp:
        conn = chan.get_connection()
        session = (
            self._by_conn.get(conn) if isinstance(conn, asyncssh.SSHServerConnection) else None
        )
        if session is None or session.ended is not None:
            chan.exit(255)
            return RecordedSftp(chan, channel=0, recording=None, client=None, fail=lambda exc: None)
        return await session.sftp_server(chan)

    def _forget(self, session: VendorSession) -> None:
        self.sessions.discard(session)
        self._by_conn.pop(session.vendor, None)

    async def _login(
        self,
        vendor: asyncssh.SSHServerConnection,
        target: ShellTarget,
        engineer: str,
        secret: str,
    ) -> VendorSession | None:
        """Check the login, open the recording, connect to the target with a fresh
        certificate; the session, or None (said in the log, not to the vendor)."""
        if len(self.sessions) >= self.max_sessions:
            log.warning(
                "login of %s to %s refused: %d sessions open",
                engineer,
                target.host,
                len(self.sessions),
            )
            return None
        try:
            grant = await asyncio.to_thread(self.admission.admit, engineer, secret, target.host)
        except ShellLoginError as exc:
            log.warning("login refused: %s", exc)
            return None
        except Exception:  # an unreadable database lets no one in
            log.exception(
                "login of %s to %s refused: the windows could not be read", engineer, target.host
            )
            return None
        info = SessionInfo(grant.window_id, uuid.uuid4().hex, grant.engineer, target.host)
        try:
            credential = self.ca.issue(
                window_id=grant.window_id,
                engineer=grant.engineer,
                host=target.host,
                session_id=info.session_id,
                window_ends=grant.ends,
            )
            recording = self.recordings(info)
        except (ShellError, RecordingError) as exc:
            log.warning("login of %s to %s refused: %s", engineer, target.host, exc)
            return None
        try:
            connection = await self._connect(target, credential)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            log.warning("%s cannot reach %s:%d: %s", engineer, target.address, target.port, exc)
            with contextlib.suppress(RecordingError):
                recording.end(f"the target could not be reached: {exc}")
            return None
        session = VendorSession(
            self, grant, info, recording, vendor, connection, credential.valid_before
        )
        self.sessions.add(session)
        self._by_conn[vendor] = session
        log.info("%s began, certificate %s", session, credential)
        return session

    async def _connect(
        self, target: ShellTarget, credential: SessionCredential
    ) -> asyncssh.SSHClientConnection:
        """Log in to the target's sshd with this session's key and certificate only."""
        return await asyncssh.connect(
            target.address,
            target.port,
            username=TARGET_PRINCIPAL,
            client_keys=[(credential.key, credential.certificate)],
            known_hosts=str(self.known_hosts),
            agent_path=None,
            agent_forwarding=False,
            x11_forwarding=False,
            password=None,
            preferred_auth="publickey",
            gss_host=None,
            config=None,
            connect_timeout=self.connect_timeout,
            **ALGORITHMS,
        )
