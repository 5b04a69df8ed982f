"""The vendor shell proxy as a process: built from its configuration, run until stopped.

Each session is recorded by appliance.breakglass.recording under the configured folder and
sealed with the admin service's audit key; each sealed recording is then a record of its
window in the audit log. A recording that cannot be opened refuses the login (the proxy
fails closed): no shell without its recording.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session, sessionmaker

from appliance.audit.recordings.errors import RecordingIntegrityError
from appliance.audit.signing_key import load_key as load_audit_key
from appliance.breakglass.clock import read_boot_clock
from appliance.breakglass.recording.evidence import record_recording
from appliance.breakglass.recording.interface import (
    RecordingError,
    SealedRecording,
    SessionInfo,
    SessionRecording,
)
from appliance.breakglass.recording.recorder import start_recording
from appliance.breakglass.recording.recover import seal_cut_short, unsealed_folders
from appliance.breakglass.shell.ca import SiteSshCa, load_key
from appliance.breakglass.shell.config import ShellProxyConfig
from appliance.breakglass.shell.logins import WindowLogins
from appliance.breakglass.shell.proxy import RecordingFactory, SealedHook, ShellProxy, ShellTarget
from appliance.db.engine import make_engine

__all__ = ["audit_sealed", "build_proxy", "recordings_for", "run", "seal_cut_short_recordings"]

log = logging.getLogger(__name__)


def recordings_for(root: Path, key: ec.EllipticCurvePrivateKey) -> RecordingFactory:
    """Opens each session's recording under ``root`` (root-only), sealed with ``key``."""

    def open_recording(info: SessionInfo) -> SessionRecording:
        return start_recording(root, info, key)

    return open_recording


def audit_sealed(sessions: sessionmaker[Session]) -> SealedHook:
    """Appends each sealed recording's record to the audit log, in a thread of its own.

    The recording is already sealed and signed on disk when this runs: a failure here
    leaves it out of the log's list of the window's sessions, which the log check of the
    window's evidence then shows; it is logged as an error, not retried blindly.
    """

    def write(info: SessionInfo, sealed: SealedRecording) -> None:
        try:
            with sessions() as db:
                record_recording(db, info, sealed)
                db.commit()
        except Exception:  # the proxy must go on serving other sessions
            log.exception("the audit record of recording %s could not be written", sealed.path)

    def hook(info: SessionInfo, sealed: SealedRecording) -> None:
        asyncio.get_running_loop().run_in_executor(None, write, info, sealed)

    return hook


def seal_cut_short_recordings(
    root: Path, key: ec.EllipticCurvePrivateKey, sessions: sessionmaker[Session]
) -> int:
    """Seal every recording under ``root`` that a recorder left unsealed (killed, host
    down) and append its record to the audit log; how many. Run before serving, when no
    recording of this proxy is open. One that does not verify is left as it is, for a
    person to look at, and logged as an error: it is evidence, not something to repair."""
    done = 0
    for folder in unsealed_folders(root):
        try:
            recovered = seal_cut_short(folder, key)
        except (RecordingIntegrityError, RecordingError, OSError) as exc:
            log.error(  # noqa: TRY400 - the reason is the message; no traceback wanted
                "recording %s was cut short and does not verify; left unsealed: %s", folder, exc
            )
            continue
        with sessions() as db:
            record_recording(db, recovered.info, recovered.sealed)
            db.commit()
        done += 1
    return done


def build_proxy(config: ShellProxyConfig) -> ShellProxy:
    """The proxy that ``config`` describes (keys loaded and checked now)."""
    sessions = sessionmaker(make_engine(config.database_url, read_only=True), class_=Session)
    writer = sessionmaker(make_engine(config.database_url), class_=Session)
    return ShellProxy(
        ca=SiteSshCa.load(config.ca_key),
        host_key=load_key(config.host_key),
        known_hosts=config.known_hosts,
        admission=WindowLogins(sessions, read_boot_clock),
        recordings=recordings_for(config.recordings, load_audit_key(config.audit_key_dir)),
        sealed=audit_sealed(writer),
        targets=[ShellTarget(h.name, h.listen_port, h.address, h.port) for h in config.hosts],
        listen_host=config.listen_host,
        poll_seconds=config.poll_seconds,
        login_timeout=config.login_timeout_seconds,
        connect_timeout=config.connect_timeout_seconds,
        max_sessions=config.max_sessions,
    )


async def run(config: ShellProxyConfig) -> None:
    """Serve until SIGTERM or SIGINT, then end every session."""
    writer = sessionmaker(make_engine(config.database_url), class_=Session)
    seal_cut_short_recordings(config.recordings, load_audit_key(config.audit_key_dir), writer)
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
