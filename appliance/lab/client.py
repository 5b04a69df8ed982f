"""``appliance lab client NAME``: a client of the lab's overlay, made the way a site makes one.

The lab's admin service (on the controller host's loopback, reached over SSH as an admin
at the site reaches it) creates the identity, grants it the model and makes its API key
(shown once, kept beside the identity, 0600); the identity is enrolled here, on the
workstation, with the supplied ``ziti`` program (or, when none is supplied any more, the
one in the site's own router image built here). No installer run: the gateway host's
access proxy learns the new key from the admin service within seconds (ADR 0016), and
:func:`chat` gives it that long when the first answer is 401.

The lab's own admin account for this (``lab-client``, not the site's first admin, whose
one-time password stays the newcomer's) is made once with a password kept in the client
folder (0600). Lab only: a site's admins make their accounts in the admin service.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_bytes
from appliance.components import podman
from appliance.components.supplied import supplied_executable
from appliance.errors import LabError
from appliance.lab.admin_api import admin_calls
from appliance.lab.locate import locate, read_own_record
from appliance.lab.ssh import SshAccess
from appliance.settings import SUPPLIED_ENV, supplied_dir

__all__ = ["LabClient", "NoOverlayError", "chat", "make_client", "tunnel", "ziti_program"]

#: The overlay service a client dials and where its local proxy listens (its proxy.v1
#: config in installer/group_vars/all/overlay.yml decides: 127.0.0.1 and this port).
GATEWAY_SERVICE = "llm-gateway"
GATEWAY_PORT = 8080
MODEL = "tiny"
#: Where the OpenZiti images keep the program (bundles/*.yaml: their entrypoint).
ZITI_IN_IMAGE = "/usr/local/bin/ziti"
ADMIN_USER = "lab-client"
#: How long :func:`chat` takes 401 for "the access proxy does not know this key yet": it
#: learns a new key at its next policy poll, within seconds (ADR 0016).
KEY_ARRIVAL_S = 15.0

Say = Callable[[str], None]


class NoOverlayError(LabError):
    """The lab's site was installed without the overlay."""


@dataclass(frozen=True)
class LabClient:
    """An enrolled client identity of the lab's overlay, its key and the program to use it."""

    name: str
    identity: Path
    key_file: Path
    ziti: Path

    def tunnel_command(self) -> str:
        """The one command that opens a local tunnel to the gateway (127.0.0.1:8080)."""
        service = f"{GATEWAY_SERVICE}:{GATEWAY_PORT}"
        return shlex.join([str(self.ziti), "tunnel", "proxy", service, "-i", str(self.identity)])

    def chat_command(self) -> str:
        """A chat completion request through that tunnel, with the identity's key."""
        body = json.dumps(
            {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]}
        )
        return (
            f"curl -s http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions "
            f'-H "Authorization: Bearer $(cat {shlex.quote(str(self.key_file))})" '
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )


def make_client(name: str, out: Path, *, lab_name: str | None = None, say: Say) -> LabClient:
    """The client ``name`` of lab ``lab_name`` in folder ``out``: made, granted the model,
    given a key and enrolled on the first call; reused as it is after that."""
    lab = locate(lab_name, None)
    record = read_own_record(lab)
    if record is None:
        raise LabError(f"there is no lab {lab.name}", hint="run `appliance lab up` (or make demo)")
    admin = next((m for m in record.plan.machines if m.group == "controller"), None)
    if admin is None:
        raise LabError(f"the lab {lab.name} has no controller host")
    host = _AdminHost(lab.layout.ssh, admin.site_address)
    installed = host.installed_components()
    if "ziti-controller" not in installed:
        raise NoOverlayError(
            f"the site on lab {lab.name} has no overlay: it was installed without OpenZiti",
            hint=f"supply the OpenZiti programs (${SUPPLIED_ENV}, docs/components.md) and "
            "run make demo again",
        )
    ziti = ziti_program(installed, out / "bin", say)
    if ziti is None:
        raise LabError(
            f"no supplied `ziti` program in {supplied_dir()} to enroll and use the client",
            hint=f"put it there or set ${SUPPLIED_ENV} (docs/components.md)",
        )
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    client = LabClient(name, out / f"{name}.json", out / f"{name}.key", ziti)
    site = host.controller_ca_digest()
    made_for = out / f"{name}.site"
    if client.identity.exists() and client.key_file.exists():
        if made_for.exists() and made_for.read_text().strip() == site:
            return client
        say(f"{name} in {out} belongs to an earlier site (another controller CA): made again")
    for stale in (client.identity, client.key_file, made_for):
        stale.unlink(missing_ok=True)
    password = _admin_password(host, out / "lab-client.password", say)
    existing = host.calls(password, [("GET", "/identities", None)])[0]
    for row in existing[1] if existing[0] == 200 else []:
        if row["name"] == name:  # left by a client folder since removed: made again
            say(f"the admin service deletes the earlier identity {name}")
            host.calls(password, [("DELETE", f"/identities/{row['id']}", None)])
    say(f"the admin service creates identity {name}, grants it the model {MODEL} and makes its key")
    made = host.calls(
        password,
        [
            ("POST", "/identities", {"name": name, "kind": "user"}),
            ("POST", "/grants", {"subject": f"@{name}", "model_service": MODEL}),
        ],
    )
    _expect_created(made, 2, name, out)
    identity = made[0][1]
    # Keys belong to the identity (not to a grant); shown once, in this answer only.
    keyed = host.calls(password, [("POST", f"/identities/{identity['identity']['id']}/keys", {})])
    _expect_created(keyed, 1, name, out)
    atomic_write_bytes(client.key_file, str(keyed[0][1]["api_key"]).encode(), mode=0o600)
    jwt = out / f"{name}.jwt"
    atomic_write_bytes(jwt, str(identity["jwt"]).encode(), mode=0o600)
    say(f"enrolling {name} here (its key is made on this workstation)")
    enrolled = subprocess.run(
        [str(ziti), "edge", "enroll", str(jwt), "-o", str(client.identity)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    jwt.unlink(missing_ok=True)
    if enrolled.returncode != 0:
        raise LabError(f"`ziti edge enroll` failed: {enrolled.stdout}{enrolled.stderr}")
    made_for.write_text(site + "\n")
    return client


def _expect_created(answers: list[list[Any]], count: int, name: str, out: Path) -> None:
    """Each of ``count`` calls answered 201, or a LabError naming what was refused."""
    if [answer[0] for answer in answers] != [201] * count:
        said = "; ".join(f"HTTP {status}: {str(body)[:200]}" for status, body in answers)
        raise LabError(
            f"the admin service refused to make client {name}: {said}",
            hint=f"remove it in the admin service (or `appliance lab down`) and rerun; "
            f"{out} keeps what was made",
        )


def ziti_program(installed: dict[str, str], scratch: Path, say: Say) -> Path | None:
    """The supplied ``ziti``; failing that, the one in the router image of the version the
    site runs, if it was built on this workstation (the media were made here from it, so
    the programs are the same); None when neither is here."""
    supplied = supplied_executable(supplied_dir(), "ziti", scratch)
    if supplied is not None or "ziti-router" not in installed:
        return supplied
    ref = f"localhost/appliance/ziti-router:{installed['ziti-router']}"
    if not podman.image_exists(ref):
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    program = scratch / "ziti"
    container = podman.create_container(ref)
    try:
        podman.copy_from_container(container, ZITI_IN_IMAGE, program)
    finally:
        podman.remove_container(container)
    say(f"no supplied ziti: using the one in {ref}, the image the site's routers run")
    return program


@contextlib.contextmanager
def tunnel(client: LabClient, log: Path, timeout: float = 90) -> Iterator[int]:
    """The client's local tunnel to the gateway for the block; yields its port."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            shlex.split(client.tunnel_command()), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise LabError(f"the client's tunnel exited; see {log}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", GATEWAY_PORT), 1).close()
                break
            if time.monotonic() > deadline:
                raise LabError(f"the client's tunnel did not listen in {timeout:.0f} s; see {log}")
            time.sleep(0.5)
        yield GATEWAY_PORT
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chat(
    client: LabClient,
    port: int,
    *,
    attempts: int = 30,
    key_arrival_s: float = KEY_ARRIVAL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """One chat completion through the tunnel; the answer's text.

    Connection errors are retried ``attempts`` times (the tunnel listens before its circuit
    to the gateway is up); HTTP 401 for ``key_arrival_s`` seconds from the first (a new key
    reaches the gateway host's access proxy at its next policy poll). Any other HTTP error,
    or 401 past that, is a LabError that says so.
    """
    body = json.dumps(
        {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]}
    ).encode()
    key = client.key_file.read_text().strip()
    last = ""
    refused_since: float | None = None
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 (loopback)
                return str(answer.read().decode())
        except urllib.error.HTTPError as error:
            said = error.read().decode(errors="replace")[:300]
            if error.code != 401:
                raise LabError(f"the gateway answered HTTP {error.code}: {said}") from error
            refused_since = clock() if refused_since is None else refused_since
            if clock() - refused_since >= key_arrival_s:
                raise LabError(
                    f"the gateway refused the client's key (HTTP 401) for "
                    f"{key_arrival_s:.0f} s: {said}",
                    hint="a new key reaches the gateway host's access proxy within seconds; "
                    "see `systemctl status appliance-access` and `journalctl -u "
                    "appliance-access` on the gateway host (gw1)",
                ) from error
        except OSError as error:
            last = str(error)
            attempts -= 1
            if attempts <= 0:
                raise LabError(f"no answer through the tunnel: {last}") from error
        sleep(1)


@dataclass(frozen=True)
class _AdminHost:
    ssh: SshAccess
    address: str

    def run(self, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh.argv(self.address, command),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def installed_components(self) -> dict[str, str]:
        done = self.run("cat /etc/appliance/installed.json")
        if done.returncode != 0:
            raise LabError(
                f"the lab's site is not installed ({self.address}: {done.stderr.strip()})",
                hint="run make demo",
            )
        components: dict[str, str] = json.loads(done.stdout).get("components", {})
        return components

    def controller_ca_digest(self) -> str:
        """sha256 of the site's root CA: a new site (a new lab) has another."""
        done = self.run("sha256sum /var/lib/ziti-controller/pki/root-ca/certs/root-ca.cert")
        if done.returncode != 0:
            raise LabError(f"cannot read the site's root CA: {done.stderr.strip()}")
        return done.stdout.split()[0]

    def calls(self, password: str, calls: list[tuple[str, str, object]]) -> list[list[Any]]:
        return admin_calls(self.run, ADMIN_USER, password, calls)


def _admin_password(host: _AdminHost, saved: Path, say: Say) -> str:
    """The lab-client admin account's password. Written before the account is made, so a
    run killed in between finds the same password on the next."""
    if not saved.exists():
        atomic_write_bytes(saved, secrets.token_urlsafe(24).encode(), mode=0o600)
    password = saved.read_text().strip()
    version = host.installed_components()["appliance-admin"]
    done = host.run(
        "podman run --rm --interactive --pull=never --network=host "
        "--volume=/var/lib/appliance-admin:/var/lib/appliance-admin "
        "--volume=/etc/appliance-admin:/etc/appliance-admin:ro "
        f"localhost/appliance/appliance-admin:{shlex.quote(version)} admin create-user "
        f"{ADMIN_USER} --role admin --password-stdin --config /etc/appliance-admin/config.yaml",
        stdin=password + "\n",
    )
    if done.returncode == 0:
        say(f"made the lab's own admin account {ADMIN_USER} (its password: {saved}, 0600)")
    elif "already exists" not in done.stdout + done.stderr:
        raise LabError(
            f"cannot make the admin account {ADMIN_USER}: {done.stdout}{done.stderr}".strip()
        )
    return password
