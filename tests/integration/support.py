"""Helpers for tests that run real servers: ports, readiness, containers."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str,
    *,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    verify: bool = True,
) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``alive`` says the server died.

    ``verify=False`` is for servers that make their own test PKI at start (OpenZiti's
    quickstart); nothing else is read from such a connection.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5, verify=verify)
            if response.is_success:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        if alive is not None and not alive():
            raise AssertionError(f"the server behind {url} exited before answering")
        time.sleep(2)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s (last: {last!r})")


@contextlib.contextmanager
def container(name: str, args: list[str]) -> Iterator[Callable[[], bool]]:
    """``podman run -d`` a container; yield a liveness check; always remove it after."""
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(
        ["podman", "run", "-d", "--name", name, *args], check=True, capture_output=True, text=True
    )

    def alive() -> bool:
        out = subprocess.run(
            ["podman", "inspect", "-f", "{{.State.Running}}", name],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() == "true"

    try:
        yield alive
    except BaseException:
        logs = subprocess.run(
            ["podman", "logs", "--tail", "40", name], capture_output=True, text=True, check=False
        )
        print(f"--- last logs of {name} ---\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def installed_in_image(tag: str, python: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """What an image holds, as its own tools list it: (Python distributions as
    ``wheel_key`` pairs from ``python -m pip list``, installed Debian packages from
    ``dpkg-query``), to compare with the image's SBOM."""
    from appliance.sbom import wheel_key

    def inside(entrypoint: str, *args: str) -> str:
        return subprocess.run(
            ["podman", "run", "--rm", "--network", "none", "--entrypoint", entrypoint, tag, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    pip = json.loads(inside(python, "-m", "pip", "list", "--format", "json"))
    dpkg = inside("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\n")
    debian = {
        (line.split()[1], line.split()[2])
        for line in dpkg.splitlines()
        if line.startswith("installed ")
    }
    return {wheel_key(p["name"], p["version"]) for p in pip}, debian
