"""A vendor engineer's SSH client, run inside the lab's vendor namespace by the lab tests.

    python vendor_shell_client.py run|hold PORT ENGINEER SECRET

It logs in to the local `ziti tunnel proxy` of a vendor-shell-HOST service (retrying while
the proxy and the overlay come up) with the engineer's name and shell secret, the only
credential the vendor holds. ``run`` types commands into a terminal and runs one exec
request, then prints one JSON line of what it saw. ``hold`` keeps a shell open, prints
``held``, and prints ``dead <unix time>`` when the far end ends it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import asyncssh


async def _connect(port: int, user: str, secret: str) -> asyncssh.SSHClientConnection:
    deadline = time.monotonic() + 120
    while True:
        try:
            # The proxy's host key is checked by the engineer against the fingerprint the
            # site gives them; the test checks the session's far end instead.
            return await asyncssh.connect(
                "127.0.0.1",
                port,
                username=user,
                password=secret,
                known_hosts=None,
                client_keys=None,
                agent_path=None,
                connect_timeout=10,
            )
        except (OSError, asyncssh.Error) as exc:
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
                sys.exit(1)
            await asyncio.sleep(1)


async def _until(stream: asyncssh.SSHReader[str], marker: str, seen: list[str]) -> None:
    while marker not in "".join(seen):
        chunk = await asyncio.wait_for(stream.read(4096), 30)
        if not chunk:
            raise EOFError(f"the shell ended before {marker!r}: {''.join(seen)!r}")
        seen.append(chunk)


async def run(port: int, user: str, secret: str) -> None:
    async with await _connect(port, user, secret) as conn:
        shell = await conn.create_process(term_type="xterm", term_size=(100, 30))
        seen: list[str] = []
        shell.stdin.write("hostname; id -un; echo typed-$((6*7))\n")
        await _until(shell.stdout, "typed-42", seen)
        shell.stdin.write("exit\n")
        await shell.wait_closed()
        done = await conn.run("echo exec-$((6*7)); hostname", check=False)
        print(
            json.dumps(
                {"shell": "".join(seen), "exec": done.stdout, "exit_status": done.exit_status}
            ),
            flush=True,
        )


async def hold(port: int, user: str, secret: str) -> None:
    async with await _connect(port, user, secret) as conn:
        shell = await conn.create_process(term_type="xterm")
        seen: list[str] = []
        shell.stdin.write("echo held-$((6*7))\n")
        await _until(shell.stdout, "held-42", seen)
        print("held", flush=True)
        try:
            while await shell.stdout.read(4096):
                pass
        except (OSError, asyncssh.Error):
            pass  # the connection lost is an end too
        print(f"dead {time.time():.3f}", flush=True)


if __name__ == "__main__":
    mode, port_text, engineer, secret_text = sys.argv[1:5]
    asyncio.run({"run": run, "hold": hold}[mode](int(port_text), engineer, secret_text))
