"""One channel of a vendor session relayed to the target: a shell or a command.

Why this order: every event is given to the recording before the bytes it describes are
forwarded, in both directions, and the recording's calls return only once the event is
written. A :class:`RecordingError` is not handled here: it leaves :func:`relay_channel`
and the session ends at once (appliance.breakglass.shell.proxy), so no byte that is not
recorded reaches either end.

Signals and breaks from the vendor are not forwarded: the recording has no event for
them (Ctrl-C on a terminal is a byte, and is). Environment requests are not forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncssh

from appliance.breakglass.recording.interface import ChannelKind, SessionRecording

__all__ = ["CHUNK", "relay_channel"]

log = logging.getLogger("appliance.breakglass.shell")

#: Bytes read at a time from either end.
CHUNK = 262144


async def relay_channel(
    channel: int,
    vendor: asyncssh.SSHServerProcess[bytes],
    target: asyncssh.SSHClientConnection,
    recording: SessionRecording,
) -> None:
    """Relay the vendor's shell or command on ``vendor`` to ``target``, recording first."""
    command = vendor.command
    term = vendor.get_terminal_type()
    width, height, pixwidth, pixheight = vendor.get_terminal_size()
    kind: ChannelKind = "exec" if command is not None else "shell"
    recording.channel_opened(channel, kind, term=term or "", width=width, height=height)
    if command is not None:
        recording.exec_request(channel, command)
    remote = await target.create_process(
        command,
        term_type=term,
        term_size=(width, height, pixwidth, pixheight) if term else None,
        term_modes=vendor.channel.get_terminal_modes() if term else {},
        encoding=None,
        window=8 * 1024 * 1024,
        max_pktsize=CHUNK,
    )
    upstream: asyncio.Future[None] = asyncio.ensure_future(
        _vendor_to_target(channel, vendor, remote, recording)
    )
    downstream: asyncio.Future[tuple[None, None]] = asyncio.ensure_future(
        asyncio.gather(
            _target_to_vendor(channel, remote.stdout, vendor.stdout, recording),
            _target_to_vendor(channel, remote.stderr, vendor.stderr, recording),
        )
    )
    try:
        # Whichever side fails first (a recording that cannot be written) ends the channel
        # now; the vendor's side ending (EOF) does not: the target's output still comes.
        pending: set[asyncio.Future[Any]] = {upstream, downstream}
        while downstream in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what the task raised
        await remote.wait_closed()
        if remote.exit_signal is not None:
            name, core, message, _ = remote.exit_signal
            recording.exit_status(channel, -1)
            vendor.exit_with_signal(name, core, message)
        elif remote.exit_status is not None and remote.exit_status >= 0:
            recording.exit_status(channel, remote.exit_status)
            vendor.exit(remote.exit_status)
        else:
            vendor.close()
    finally:
        for task in (upstream, downstream):
            task.cancel()
            # Retrieved here so a relay cut off by the channel's close is not logged at
            # garbage collection as an exception nobody retrieved.
            task.add_done_callback(_retrieve)
        remote.close()
    recording.channel_closed(channel)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _vendor_to_target(
    channel: int,
    vendor: asyncssh.SSHServerProcess[bytes],
    remote: asyncssh.SSHClientProcess[bytes],
    recording: SessionRecording,
) -> None:
    while True:
        try:
            data = await vendor.stdin.read(CHUNK)
        except asyncssh.TerminalSizeChanged as change:
            recording.resize(channel, change.width, change.height)
            remote.change_terminal_size(
                change.width, change.height, change.pixwidth, change.pixheight
            )
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue
        if not data:
            remote.stdin.write_eof()
            return
        recording.input(channel, data)
        remote.stdin.write(data)
        await remote.stdin.drain()


async def _target_to_vendor(
    channel: int,
    source: asyncssh.SSHReader[bytes],
    sink: asyncssh.SSHWriter[bytes],
    recording: SessionRecording,
) -> None:
    while True:
        data = await source.read(CHUNK)
        if not data:
            return
        recording.output(channel, data)
        sink.write(data)
        await sink.drain()
