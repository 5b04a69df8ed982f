"""The vendor shell proxy as a process: built from its configuration, run until stopped.

The session recorder is the one piece this module does not own: :func:`recordings_for`
is where the recorder of appliance.breakglass.recording is plugged in. Until it is, it
refuses every recording, and the proxy (which fails closed) therefore refuses every
login: no shell without its recording.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from appliance.breakglass.clock import read_boot_clock
from appliance.breakglass.recording.interface import RecordingError, SessionInfo, SessionRecording
from appliance.breakglass.shell.ca import SiteSshCa, load_key
from appliance.breakglass.shell.config import ShellProxyConfig
from appliance.breakglass.shell.logins import WindowLogins
from appliance.breakglass.shell.proxy import RecordingFactory, ShellProxy, ShellTarget
from appliance.db.engine import make_engine

__all__ = ["build_proxy", "recordings_for", "run"]


def recordings_for(root: Path) -> RecordingFactory:
    """Opens each session's recording under ``root`` (root-only)."""

    def open_recording(info: SessionInfo) -> SessionRecording:
        raise RecordingError(
            f"no session recorder in this build (recordings under {root}): "
            f"session {info.session_id} of window {info.window_id} is refused"
        )

    return open_recording


def build_proxy(config: ShellProxyConfig) -> ShellProxy:
    """The proxy that ``config`` describes (keys loaded and checked now)."""
    sessions = sessionmaker(make_engine(config.database_url, read_only=True), class_=Session)
    return ShellProxy(
        ca=SiteSshCa.load(config.ca_key),
        host_key=load_key(config.host_key),
        known_hosts=config.known_hosts,
        admission=WindowLogins(sessions, read_boot_clock),
        recordings=recordings_for(config.recordings),
        targets=[ShellTarget(h.name, h.listen_port, h.address, h.port) for h in config.hosts],
        listen_host=config.listen_host,
        poll_seconds=config.poll_seconds,
        login_timeout=config.login_timeout_seconds,
        connect_timeout=config.connect_timeout_seconds,
        max_sessions=config.max_sessions,
    )


async def run(config: ShellProxyConfig) -> None:
    """Serve until SIGTERM or SIGINT, then end every session."""
    proxy = build_proxy(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await proxy.start()
    try:
        await stop.wait()
    finally:
        await proxy.close()
