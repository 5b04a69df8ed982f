"""A 100 MB ``cat`` through the recorded vendor shell, next to the same over plain SSH.

    python benchmarks/vendor_shell.py [--megabytes 100] [--dir DIR]

Both ends are asyncssh on loopback, in this one process and event loop: the target is an
asyncssh server whose command ``cat`` writes --megabytes of text in 32 KiB writes, and
"plain SSH" is an asyncssh client connected straight to it. OpenSSH is not used (it is
not on every build machine): this compares the proxy against asyncssh talking to asyncssh,
not against OpenSSH's ssh and sshd, which are faster than asyncssh; and the proxy, the
target and both clients share one core here, where at a site the proxy has the admin
host's cores and the target its own. The recorded path is the real proxy
(appliance.breakglass.shell.proxy) with the real recorder writing to DIR (default: a
temporary folder; put it on the disk that will hold recordings). Prints MB/s of each and
the ratio; the goal of issue 26 is a ratio of at least 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)

import asyncssh  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from appliance.breakglass.recording.interface import SessionInfo, SessionRecording  # noqa: E402
from appliance.breakglass.recording.recorder import start_recording  # noqa: E402
from appliance.breakglass.shell.algorithms import ALGORITHMS  # noqa: E402
from appliance.breakglass.shell.ca import TARGET_PRINCIPAL, SiteSshCa, create_key  # noqa: E402
from appliance.breakglass.shell.logins import ShellGrant  # noqa: E402
from appliance.breakglass.shell.proxy import ShellProxy, ShellTarget  # noqa: E402

BLOCK = 32768


class _Target(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "plain"


async def _cat(process: asyncssh.SSHServerProcess[bytes], total: int) -> None:
    line = b"".join(
        f"{n:08d} the quick brown fox jumps over the lazy dog; drwxr-xr-x root\n".encode()
        for n in range(BLOCK // 64)
    )
    sent = 0
    while sent < total:
        process.stdout.write(line)
        sent += len(line)
        await process.stdout.drain()
    process.exit(0)


class _Admission:
    def admit(self, engineer: str, secret: str, host: str) -> ShellGrant:
        return ShellGrant(1, engineer, host, datetime.now(UTC) + timedelta(hours=1))

    def open_windows(self) -> dict[int, datetime]:
        return {1: datetime.now(UTC) + timedelta(hours=1)}


async def _read_all(conn: asyncssh.SSHClientConnection) -> tuple[int, float]:
    started = time.perf_counter()
    process = await conn.create_process("cat", encoding=None)
    got = 0
    while chunk := await process.stdout.read(1 << 20):
        got += len(chunk)
    await process.wait()
    return got, time.perf_counter() - started


async def main(megabytes: int, folder: Path) -> None:
    """Print the MB/s of each path and their ratio."""
    total = megabytes * 1_000_000
    ca = SiteSshCa(create_key(folder / "keys" / "ca"))
    target_key = asyncssh.generate_private_key("ecdsa-sha2-nistp384")
    trusted = asyncssh.import_authorized_keys(
        f'cert-authority,principals="{TARGET_PRINCIPAL}" {ca.public_line()}\n'
    )
    target = await asyncssh.create_server(
        _Target,
        "127.0.0.1",
        0,
        server_host_keys=[target_key],
        authorized_client_keys=trusted,
        process_factory=lambda p: _cat(p, total),
        encoding=None,
        line_editor=False,
        gss_host=None,
        config=None,
    )
    port = target.sockets[0].getsockname()[1]
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + target_key.export_public_key().decode())
    audit_key = ec.generate_private_key(ec.SECP384R1())
    (folder / "rec").mkdir(mode=0o700)

    def recording(info: SessionInfo) -> SessionRecording:
        return start_recording(folder / "rec", info, audit_key)

    proxy = ShellProxy(
        ca=ca,
        host_key=asyncssh.generate_private_key("ecdsa-sha2-nistp384"),
        known_hosts=known,
        admission=_Admission(),  # type: ignore[arg-type]
        recordings=recording,
        targets=[ShellTarget("gw1", 0, "127.0.0.1", port)],
        poll_seconds=1.0,
    )
    proxy_port = (await proxy.start())["gw1"]
    # Plain SSH with the site's FIPS algorithms too, as a direct login at the site would
    # negotiate them (the proxy uses them on both of its connections).
    common = {
        "known_hosts": None,
        "client_keys": None,
        "agent_path": None,
        "config": None,
        **ALGORITHMS,
    }
    try:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username="plain",
            password="x",  # noqa: S106 (no secret: the bench admits anyone)
            **common,
        ) as conn:
            plain_bytes, plain_s = await _read_all(conn)
        async with asyncssh.connect(
            "127.0.0.1",
            proxy_port,
            username="eve",
            password="x",  # noqa: S106 (no secret: the bench admits anyone)
            **common,
        ) as conn:
            rec_bytes, rec_s = await _read_all(conn)
    finally:
        await proxy.close()
        target.close()
    assert plain_bytes == rec_bytes >= total
    plain, recorded = plain_bytes / 1e6 / plain_s, rec_bytes / 1e6 / rec_s
    print(f"cat of {plain_bytes / 1e6:.0f} MB, asyncssh on loopback at both ends (no OpenSSH)")
    print(f"  plain SSH (asyncssh client -> asyncssh server)   {plain:7.1f} MB/s")
    print(f"  through the recording proxy, recorded          {recorded:7.1f} MB/s")
    print(f"  ratio {recorded / plain:.2f}x   goal: >= 0.80x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="vendor-shell-bench-", dir=args.dir))
    try:
        asyncio.run(main(args.megabytes, where))
    finally:
        shutil.rmtree(where, ignore_errors=True)
