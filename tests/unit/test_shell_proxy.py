"""The vendor shell proxy (ADR 0021, issue 26): asyncssh on loopback at both ends, a fake
recording, windows in a real SQLite admin database."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy.orm import Session, sessionmaker

from appliance.breakglass.shell.ca import SessionCredential, SiteSshCa
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import BreakglassWindow, WindowState
from tests.unit.shell_fixtures import add_window, close_all, make_bench, run


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)


def rec(timeline: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [e[1:] for e in timeline if e[0] == "rec"]


async def read_until(reader: asyncssh.SSHReader[bytes], wanted: bytes) -> bytes:
    got = b""
    while wanted not in got:
        chunk = await reader.read(1024)
        if not chunk:
            break
        got += chunk
    return got


def test_a_shell_is_relayed_and_every_event_recorded_before_it_is_forwarded(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    window = add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                shell = await vendor.create_process(
                    term_type="xterm", term_size=(80, 24), encoding=None
                )
                shell.stdin.write(b"ls\n")
                assert b"echo:ls\n" in await read_until(shell.stdout, b"echo:ls\n")
                bench.timeline.append(("vendor", "got", b"echo:ls\n"))
                shell.change_terminal_size(100, 40)
                await asyncio.sleep(0.2)
                shell.stdin.write_eof()
                done = await shell.wait()
                assert done.exit_status == 0
        finally:
            await close_all(things)
        timeline = bench.timeline
        assert ("target", "start", None, "xterm", (80, 24)) in timeline
        # Record before forward, in both directions.
        assert timeline.index(("rec", "input", 1, b"ls\n")) < timeline.index(
            ("target", "got", b"ls\n")
        )
        assert timeline.index(("rec", "output", 1, b"echo:ls\n")) < timeline.index(
            ("vendor", "got", b"echo:ls\n")
        )
        assert timeline.index(("rec", "resize", 1, 100, 40)) < timeline.index(
            ("target", "resize", 100, 40)
        )
        events = rec(timeline)
        assert events[0] == ("open", 1, "shell", "xterm", 80, 24)
        assert events[-3:-1] == [("exit", 1, 0), ("close", 1)]
        assert events[-1][0] == "end"  # the vendor left, or the proxy stopped first
        (recording,) = bench.recordings
        assert (recording.info.window_id, recording.info.engineer, recording.info.host) == (
            window,
            "eve",
            "gw1",
        )
        assert bench.target_logins == ["appliance-vendor"]

    run(main())


def test_a_command_runs_with_its_exit_status_recorded(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                result = await vendor.run("uptime", encoding=None)
        finally:
            await close_all(things)
        assert (result.exit_status, result.stdout) == (3, b"ran uptime\n")
        assert rec(bench.timeline)[:4] == [
            ("open", 1, "exec", "", 0, 0),
            ("exec", 1, "uptime"),
            ("output", 1, b"ran uptime\n"),
            ("exit", 1, 3),
        ]
        assert ("target", "start", "uptime", None, (0, 0)) in bench.timeline

    run(main())


def test_port_forwarding_is_refused_and_recorded_as_refused(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await vendor.open_connection("10.1.2.3", 5432)
                with pytest.raises(asyncssh.ChannelListenError):
                    await vendor.forward_remote_port("127.0.0.1", 8022, "127.0.0.1", 22)
        finally:
            await close_all(things)
        events = rec(bench.timeline)
        assert ("forward", "direct-tcpip", "10.1.2.3", 5432, False) in events
        assert ("forward", "tcpip-forward", "127.0.0.1", 8022, False) in events
        assert not [e for e in bench.timeline if e[0] == "target"]

    run(main())


@pytest.mark.parametrize(
    ("secret", "state", "scope"),
    [
        ("not-the-secret", WindowState.active, ("vendor-shell-gw1",)),
        (None, WindowState.expired, ("vendor-shell-gw1",)),
        (None, WindowState.revoked, ("vendor-shell-gw1",)),
        (None, WindowState.active, ("vendor-shell-db1", "ssh-gw1")),
    ],
    ids=["wrong-secret", "expired-window", "revoked-window", "host-not-in-scope"],
)
def test_a_login_without_an_open_window_for_this_host_is_refused(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    secret: str | None,
    state: WindowState,
    scope: tuple[str, ...],
) -> None:
    add_window(sessions, state=state, scope=scope)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            with pytest.raises(asyncssh.PermissionDenied):
                await (await bench.vendor(**({"secret": secret} if secret else {}))).run("id")
        finally:
            await close_all(things)
        assert bench.recordings == [] and bench.target_logins == []

    run(main())


def test_a_failed_recording_ends_the_session_at_once_and_nothing_more_reaches_the_target(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)

    def disk_full(event: tuple[Any, ...]) -> bool:
        return event[0] == "input" and b"boom" in event[2]

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, fail_on=disk_full)
        try:
            vendor = await bench.vendor()
            shell = await vendor.create_process(term_type="xterm", encoding=None)
            shell.stdin.write(b"one\n")
            await read_until(shell.stdout, b"echo:one\n")
            started = asyncio.get_running_loop().time()
            shell.stdin.write(b"boom\n")
            await asyncio.wait_for(vendor.wait_closed(), 1.0)
            assert asyncio.get_running_loop().time() - started < 1.0
            await asyncio.sleep(0.2)
        finally:
            await close_all(things)
        got = [e for e in bench.timeline if e[:2] == ("target", "got")]
        assert got == [("target", "got", b"one\n")]
        (recording,) = bench.recordings
        assert recording.ended is not None and recording.ended.startswith("recording failed")
        assert bench.proxy.sessions == set()

    run(main())


def test_a_window_that_ends_ends_its_sessions(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    window = add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, poll_seconds=0.2)
        try:
            vendor = await bench.vendor()
            shell = await vendor.create_process(term_type="xterm", encoding=None)
            shell.stdin.write(b"hi\n")
            await read_until(shell.stdout, b"echo:hi\n")
            with sessions() as db:
                row = db.get(BreakglassWindow, window)
                assert row is not None
                row.state = WindowState.revoked
                db.commit()
            await asyncio.wait_for(vendor.wait_closed(), 2.0)
        finally:
            await close_all(things)
        assert bench.recordings[0].ended == f"window {window} ended"

    run(main())


def test_end_window_ends_only_that_windows_sessions(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, poll_seconds=60)
        try:
            vendor = await bench.vendor()
            await vendor.run("true")
            assert bench.proxy.end_window(999, "not this one") == 0
            window = bench.recordings[0].info.window_id
            assert bench.proxy.end_window(window, "revoked by bob") == 1
            await asyncio.wait_for(vendor.wait_closed(), 1.0)
        finally:
            await close_all(things)

    run(main())


def test_a_session_ends_when_its_certificate_expires(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions, seconds=2.5)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, poll_seconds=60)
        try:
            vendor = await bench.vendor()
            await vendor.run("true")
            await asyncio.wait_for(vendor.wait_closed(), 4.0)
        finally:
            await close_all(things)
        assert bench.recordings[0].ended == "the session's certificate expired"

    run(main())


def test_the_vendor_never_receives_the_session_key_or_certificate(
    tmp_path: Path, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every packet the vendor's client receives (asyncssh's packet log, in the clear),
    searched for the certificate and the private key the proxy used for the session."""
    add_window(sessions)
    issued: list[SessionCredential] = []
    issue = SiteSshCa.issue

    def keep(self: SiteSshCa, **kwargs: Any) -> SessionCredential:
        issued.append(issue(self, **kwargs))
        return issued[-1]

    monkeypatch.setattr(SiteSshCa, "issue", keep)
    packets: list[tuple[str, bytes]] = []

    class Packets(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            data = getattr(record, "packet", None)
            if data:
                packets.append((record.getMessage().split("]", 1)[0], bytes(data)))

    handler = Packets(logging.DEBUG)
    logger = logging.getLogger("asyncssh")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(3)

    async def main() -> str:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                await vendor.run("cat ~/.ssh/*", encoding=None)
                return "[" + vendor.logger._context  # this connection's log lines
        finally:
            await close_all(things)

    try:
        context = run(main())
    finally:
        asyncssh.set_debug_level(1)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (credential,) = issued
    secrets = {
        "certificate": credential.certificate.public_data,
        "private key": credential.key.export_private_key("openssh"),
        "private scalar": credential.key.export_private_key("pkcs8-der"),
        "public key": credential.key.public_data,
    }
    vendor_packets = [p for ctx, p in packets if ctx == context or ctx.startswith(context + ",")]
    other_packets = [p for ctx, p in packets if p not in vendor_packets]
    assert vendor_packets, "no packet of the vendor's connection was seen"
    # The proxy's own connection to the target does carry the certificate: the search works.
    assert any(credential.certificate.public_data[20:60] in p for p in other_packets)
    for name, blob in secrets.items():
        inner = blob[len(blob) // 2 : len(blob) // 2 + 24]
        assert not any(inner in p for p in vendor_packets), f"the vendor received the {name}"
