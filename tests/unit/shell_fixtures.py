"""The vendor shell's test bench: a fake recording, a stand-in target sshd that trusts
the site CA for appliance-vendor only, windows in a real SQLite admin database, and a
proxy between them, all on loopback (ADR 0021)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncssh
from sqlalchemy.orm import Session, sessionmaker

from appliance.breakglass.clock import BootClock
from appliance.breakglass.recording.interface import (
    ChannelKind,
    RecordingError,
    SealedRecording,
    SessionInfo,
)
from appliance.breakglass.shell.ca import TARGET_PRINCIPAL, SiteSshCa, create_key
from appliance.breakglass.shell.logins import SECRETS_KEY, WindowLogins, hash_secret
from appliance.breakglass.shell.proxy import RecordingFactory, SealedHook, ShellProxy, ShellTarget
from appliance.db.models import BreakglassWindow, WindowState, utcnow

BOOT = BootClock("boot-a", 1000.0)
SECRET = "s3cret-for-eve-only-xxxxxxxxxxxx"

#: One timeline for the recording's events and what the target receives.
Timeline = list[tuple[Any, ...]]


class FakeRecording:
    """Appends each event to the timeline; raises RecordingError for ``fail_on`` events."""

    def __init__(
        self, info: SessionInfo, timeline: Timeline, fail_on: Callable[[tuple[Any, ...]], bool]
    ) -> None:
        self.info, self.timeline, self.fail_on = info, timeline, fail_on
        self.ended: str | None = None

    def _add(self, *event: Any) -> None:
        if self.fail_on(event):
            raise RecordingError(f"disk full writing {event[0]}")
        self.timeline.append(("rec", *event))

    def channel_opened(
        self, channel: int, kind: ChannelKind, *, term: str = "", width: int = 0, height: int = 0
    ) -> None:
        self._add("open", channel, kind, term, width, height)

    def output(self, channel: int, data: bytes) -> None:
        self._add("output", channel, data)

    def input(self, channel: int, data: bytes) -> None:
        self._add("input", channel, data)

    def resize(self, channel: int, width: int, height: int) -> None:
        self._add("resize", channel, width, height)

    def exec_request(self, channel: int, command: str) -> None:
        self._add("exec", channel, command)

    def exit_status(self, channel: int, status: int) -> None:
        self._add("exit", channel, status)

    def transfer(self, channel: int, op: str, details: Mapping[str, Any]) -> None:
        self._add("transfer", channel, op, dict(details))

    def forward_request(self, kind: str, host: str, port: int, *, allowed: bool) -> None:
        self._add("forward", kind, host, port, allowed)

    def channel_closed(self, channel: int) -> None:
        self._add("close", channel)

    def tick(self) -> None:
        self._add("tick")

    def end(self, reason: str) -> SealedRecording:
        self.ended = reason
        self.timeline.append(("rec", "end", reason))
        return SealedRecording(Path("/nonexistent"), "0" * 64, 0, reason)


async def target_shell(process: asyncssh.SSHServerProcess[bytes], timeline: Timeline) -> None:
    """The stand-in target: a command prints what it ran and exits 3; a shell echoes."""
    timeline.append(
        (
            "target",
            "start",
            process.command,
            process.get_terminal_type(),
            process.get_terminal_size()[:2],
        )
    )
    if process.command is not None:
        process.stdout.write(f"ran {process.command}\n".encode())
        process.exit(3)
        return
    while True:
        try:
            data = await process.stdin.read(1024)
        except asyncssh.TerminalSizeChanged as change:
            timeline.append(("target", "resize", change.width, change.height))
            continue
        if not data:
            break
        timeline.append(("target", "got", data))
        process.stdout.write(b"echo:" + data)
    process.exit(0)


class TargetSftp(asyncssh.SFTPServer):
    """The stand-in target's SFTP: files under its folder; each write on the timeline."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path, timeline: Timeline):
        super().__init__(chan, chroot=str(root).encode())
        self.timeline = timeline

    def write(self, file_obj: object, offset: int, data: bytes) -> Any:
        self.timeline.append(("target", "write", offset, len(data)))
        return super().write(file_obj, offset, data)


class TargetServer(asyncssh.SSHServer):
    """Lets in only appliance-vendor, with a certificate of the CA (checked by asyncssh:
    signature, principal, validity) and nothing else."""

    def __init__(self, logins: list[str]) -> None:
        self.logins = logins

    def begin_auth(self, username: str) -> bool:
        self.logins.append(username)
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # a bare key is never enough


@dataclass
class Bench:
    """What a test drives: the proxy's port, the CA, the database, the timeline."""

    port: int
    files: Path  # the target's SFTP root
    ca: SiteSshCa
    sessions: sessionmaker[Session]
    proxy: ShellProxy
    timeline: Timeline
    recordings: list[FakeRecording] = field(default_factory=list)
    target_logins: list[str] = field(default_factory=list)

    async def vendor(self, secret: str = SECRET, user: str = "eve") -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=user,
            password=secret,
            known_hosts=None,
            client_keys=None,
            agent_path=None,
            config=None,
            preferred_auth="password",
        )


def add_window(
    sessions: sessionmaker[Session],
    *,
    seconds: float = 600,
    scope: tuple[str, ...] = ("vendor-shell-gw1",),
    state: WindowState = WindowState.active,
    secret: str = SECRET,
) -> int:
    """An active window for engineer eve with her shell secret, ending in ``seconds``."""
    now = utcnow()
    with sessions() as db:
        window = BreakglassWindow(
            state=state,
            requester="alice",
            reason="test",
            ticket="T-1",
            scope=list(scope),
            engineers=["eve"],
            duration_minutes=10,
            created_at=now,
            decided_by="bob",
            decided_at=now,
            activated_at=now,
            ends_at=now + timedelta(seconds=seconds),
            boot_id=BOOT.boot_id,
            deadline_boottime=BOOT.deadline(seconds).boottime,
            end_reason="",
            ziti_objects={SECRETS_KEY: {"eve": hash_secret(secret)}},
        )
        db.add(window)
        db.commit()
        return window.id


async def make_bench(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    *,
    fail_on: Callable[[tuple[Any, ...]], bool] = lambda event: False,
    poll_seconds: float = 0.2,
    recordings: RecordingFactory | None = None,
    sealed: SealedHook | None = None,
) -> tuple[Bench, list[Any]]:
    """A target sshd and the proxy in front of it (host gw1); close what is returned."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    ca = SiteSshCa(create_key(keys / "ca"))
    timeline: Timeline = []
    logins: list[str] = []
    target_key = asyncssh.generate_private_key("ecdsa-sha2-nistp384")
    files = tmp_path / "target-files"
    files.mkdir()
    trusted = asyncssh.import_authorized_keys(
        f'cert-authority,principals="{TARGET_PRINCIPAL}" {ca.public_line()}\n'
    )
    target = await asyncssh.create_server(
        lambda: TargetServer(logins),
        "127.0.0.1",
        0,
        server_host_keys=[target_key],
        authorized_client_keys=trusted,
        process_factory=lambda p: target_shell(p, timeline),
        sftp_factory=lambda chan: TargetSftp(chan, files, timeline),
        encoding=None,
        line_editor=False,
        password_auth=False,
        kbdint_auth=False,
        gss_host=None,
        config=None,
    )
    target_port = target.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{target_port} " + target_key.export_public_key().decode("ascii")
    )
    fakes: list[FakeRecording] = []

    def open_recording(info: SessionInfo) -> FakeRecording:
        recording = FakeRecording(info, timeline, fail_on)
        fakes.append(recording)
        return recording

    proxy = ShellProxy(
        ca=ca,
        host_key=asyncssh.generate_private_key("ecdsa-sha2-nistp384"),
        known_hosts=known_hosts,
        admission=WindowLogins(sessions, lambda: BOOT),
        recordings=recordings or open_recording,
        targets=[ShellTarget("gw1", 0, "127.0.0.1", target_port)],
        poll_seconds=poll_seconds,
        sealed=sealed,
    )
    ports = await proxy.start()
    bench = Bench(ports["gw1"], files, ca, sessions, proxy, timeline, fakes, logins)
    os.environ.pop("SSH_AUTH_SOCK", None)  # no agent offers keys to anyone here
    return bench, [proxy, target]


async def close_all(things: list[Any]) -> None:
    proxy, target = things
    await proxy.close()
    target.close()
    await target.wait_closed()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))
