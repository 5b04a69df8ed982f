"""A real OpenZiti overlay on loopback, from the supplied `ziti` program, for integration tests.

The controller and its edge router come from `ziti edge quickstart` (configured once,
every listener moved to 127.0.0.1, then run); users are real `ziti` clients: `ziti edge
enroll`, `ziti tunnel host` for a service's server, `ziti tunnel proxy` for a client's
local listener. Nothing here is faked. Without supplied programs the tests that use this
are skipped with one line saying what to supply and where.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.components.supplied import supplied_executable
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from appliance.settings import SUPPLIED_ENV, supplied_dir
from tests.integration.support import free_port

ADMIN = "admin"
ADMIN_PASSWORD = "overlay-test-only-password"
MGMT = "/edge/management/v1"


def supplied_program(name: str, scratch: Path) -> Path:
    """The supplied program ``name`` (extracted from its archive if need be), or skip."""
    folder = supplied_dir()
    found = supplied_executable(folder, name, scratch)
    if found is None:
        pytest.skip(
            f"no supplied OpenZiti program `{name}` in {folder} (set ${SUPPLIED_ENV} or put "
            "it there; docs/components.md says how to supply OpenZiti)"
        )
    return found


@dataclass
class Controller:
    """A running quickstart controller with its router, on loopback."""

    ziti: Path
    home: Path
    port: int
    router_port: int
    log: Path
    #: Where the controller and router listen and advertise: loopback, or the site side of
    #: a vendor namespace's link when a test dials from outside this host's loopback.
    address: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    _token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The controller's address for the admin service."""
        return f"https://{self.address}:{self.port}"

    @property
    def events(self) -> Path:
        """The controller's JSON event log."""
        return self.home / "events.jsonl"

    @property
    def ca(self) -> Path:
        """The root CA that signed the controller's server certificate."""
        return self.home / "pki" / "root-ca" / "certs" / "root-ca.cert"

    def start(self, timeout: float = 120) -> None:
        """Run the quickstart on its home and wait for the API and the router."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                _quickstart_argv(self),
                env=_env(self.home, self.address),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Stop the controller and router (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None
        self._token = None

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the controller (and its router) for the block: a controller that takes
        requests but answers none, as an overloaded one does; SIGCONT after."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)
        self.wait_ready(120)

    def wait_ready(self, timeout: float) -> None:
        """Until the management API answers and every edge router is online."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the quickstart exited: {self.tail()}")
            try:
                routers = self.api("GET", "/edge-routers")["data"]
                if routers and all(r["isOnline"] for r in routers):
                    return
                last = routers
            except (httpx.HTTPError, AssertionError, KeyError) as exc:
                last = exc
                self._token = None
            time.sleep(1)
        raise AssertionError(f"the controller was not ready in {timeout:.0f} s: {last!r}")

    def api(self, method: str, path: str, body: object = None) -> Any:
        """One management API call as the admin (for test setup and for checking)."""
        if self._token is None:
            auth = httpx.post(
                f"{self.url}{MGMT}/authenticate?method=password",
                json={"username": ADMIN, "password": ADMIN_PASSWORD},
                verify=ssl.create_default_context(cafile=self.ca),
                timeout=10,
            )
            assert auth.status_code == 200, auth.text
            self._token = auth.json()["data"]["token"]
        response = httpx.request(
            method,
            f"{self.url}{MGMT}{path}",
            json=body,
            headers={"zt-session": self._token},
            verify=ssl.create_default_context(cafile=self.ca),
            timeout=10,
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def find(self, collection: str, name: str) -> dict[str, Any] | None:
        """The entity of ``collection`` called ``name``, or None."""
        items = self.api("GET", f'/{collection}?filter=name="{name}"')["data"]
        return items[0] if items else None

    def tail(self, lines: int = 30) -> str:
        """The end of the quickstart's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _env(home: Path, address: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "ZITI_HOME": str(home),
        # Dark: every controller listener on loopback (LAB.md: it binds 0.0.0.0 otherwise).
        "ZITI_CTRL_BIND_ADDRESS": address,
        "ZITI_CTRL_EDGE_BIND_ADDRESS": address,
        # The address in the controller's and router's certificates (IP SANs).
        "ZITI_CTRL_EDGE_IP_OVERRIDE": address,
        "ZITI_ROUTER_IP_OVERRIDE": address,
        "GODEBUG": "fips140=on",
    }


def _quickstart_argv(ctrl: Controller, *extra: str) -> list[str]:
    return [
        str(ctrl.ziti),
        "edge",
        "quickstart",
        "--home",
        str(ctrl.home),
        "--ctrl-address",
        ctrl.address,
        "--ctrl-port",
        str(ctrl.port),
        "--router-address",
        ctrl.address,
        "--router-port",
        str(ctrl.router_port),
        "-u",
        ADMIN,
        "-p",
        ADMIN_PASSWORD,
        *extra,
    ]


@contextlib.contextmanager
def quickstart(ziti: Path, home: Path, address: str = "127.0.0.1") -> Iterator[Controller]:
    """Configure a controller and router once, keep every listener on ``address``, run them."""
    home.mkdir(parents=True, exist_ok=True)
    ctrl = Controller(ziti, home, free_port(), free_port(), home / "quickstart.log", address)
    with ctrl.log.open("ab") as log:
        subprocess.run(
            _quickstart_argv(ctrl, "--configure-and-exit"),
            env=_env(home, address),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
    # The router's generated config listens on every interface; this test stays on loopback.
    for config in home.rglob("*.yaml"):
        text = config.read_text()
        if "0.0.0.0" in text:
            config.write_text(text.replace("0.0.0.0", address))
    # The controller's event stream as JSON lines, as the ziti_controller role configures it.
    [ctrl_config] = home.rglob("ctrl.yaml")
    with ctrl_config.open("a") as config:
        config.write(
            "\nevents:\n  jsonLogger:\n    subscriptions:\n"
            "      - type: circuit\n      - type: session\n      - type: apiSession\n"
            f"    handler:\n      type: file\n      format: json\n      path: {ctrl.events}\n"
        )
    try:
        ctrl.start()
        yield ctrl
    finally:
        ctrl.stop()


def ziti_run(ziti: Path, *args: str, timeout: float = 60) -> str:
    """Run a `ziti` subcommand to completion; its output (fails the test on error)."""
    proc = subprocess.run(
        [str(ziti), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/")},
    )
    assert proc.returncode == 0, f"ziti {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def enroll(ziti: Path, jwt: str, dest: Path, namespace: str | None = None) -> Path:
    """Enroll a one-time token the way a user's device does: `ziti edge enroll` (from
    inside ``namespace`` when given)."""
    token = dest.with_suffix(".jwt")
    token.write_text(jwt)
    argv = [str(ziti), "edge", "enroll", "--jwt", str(token), "--out", str(dest)]
    done = subprocess.run(
        in_namespace(namespace, argv) if namespace else argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"ziti edge enroll: {done.stdout}{done.stderr}"
    return dest


@contextlib.contextmanager
def tunneler(
    ziti: Path, log: Path, *args: str, namespace: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A `ziti tunnel …` process (inside ``namespace`` when given) for the block."""
    argv = [str(ziti), "tunnel", *args]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            in_namespace(namespace, argv) if namespace else argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"model": "tiny", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def model_server() -> Iterator[int]:
    """A loopback HTTP server standing for a model (the overlay carries its bytes)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A loopback TCP echo server: a held connection shows when the overlay cuts it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.close()


def host_service(ctrl: Controller, name: str, port: int, host_identity: str) -> str:
    """Create service ``name`` reaching 127.0.0.1:``port``, bound by ``host_identity``."""
    config = ctrl.api(
        "POST",
        "/configs",
        {
            "name": f"{name}-host",
            "configTypeId": _config_type(ctrl, "host.v1"),
            "data": {"protocol": "tcp", "address": "127.0.0.1", "port": port},
        },
    )["data"]["id"]
    service = ctrl.api(
        "POST", "/services", {"name": name, "configs": [config], "encryptionRequired": True}
    )["data"]["id"]
    ctrl.api(
        "POST",
        "/service-policies",
        {
            "name": f"{name}-bind",
            "type": "Bind",
            "semantic": "AnyOf",
            "identityRoles": [f"@{host_identity}"],
            "serviceRoles": [f"@{service}"],
        },
    )
    return str(service)


def _config_type(ctrl: Controller, name: str) -> str:
    found = ctrl.find("config-types", name)
    assert found is not None, f"the controller has no config type {name}"
    return str(found["id"])


def wait_terminator(ctrl: Controller, service_id: str, timeout: float = 60) -> None:
    """Until the hosting tunneler has registered a terminator for the service."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctrl.api("GET", f"/services/{service_id}/terminators")["data"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"no terminator for service {service_id} after {timeout:.0f} s")


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until a local proxy listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the tunneler exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


#: A proxy only learns of services granted after it started when it polls (off by default).
POLL = ("--svcPollRate", "2")
#: The admin service's accounts in an overlay site (two admins: break-glass needs both).
ADMINS = ("alice", "bob")
AUDITOR = "audrey"
ACCOUNT_PASSWORD = "a-long-test-password"


@dataclass
class Site:
    """The overlay, the admin service in front of it, and where the tests keep files."""

    ctrl: Controller
    api: TestClient
    csrf: str
    db_url: str
    ziti: Path
    work: Path
    settings: AdminSettings
    services: dict[str, str] = field(default_factory=dict)

    def login(self, user: str) -> None:
        """Act as ``user`` from now on."""
        self.api.cookies.clear()
        answer = self.api.post(
            "/api/v1/auth/login", json={"username": user, "password": ACCOUNT_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        self.csrf = answer.json()["csrf_token"]

    def post(self, path: str, body: object = None) -> httpx.Response:
        """POST to the admin API as the current user."""
        return self.api.post(f"/api/v1{path}", json=body, headers={"X-CSRF-Token": self.csrf})

    def delete(self, path: str) -> httpx.Response:
        """DELETE on the admin API as the current user."""
        return self.api.delete(f"/api/v1{path}", headers={"X-CSRF-Token": self.csrf})

    def create(self, name: str, kind: str = "device") -> tuple[int, str]:
        """An identity made through the admin API: its row id and one-time JWT."""
        made = self.post("/identities", {"name": name, "kind": kind})
        assert made.status_code == 201, made.text
        body = made.json()
        return int(body["identity"]["id"]), str(body["jwt"])

    def enrolled(self, name: str, kind: str = "device") -> tuple[int, Path]:
        """An identity made through the admin API and enrolled by `ziti edge enroll`."""
        row, jwt = self.create(name, kind)
        return row, enroll(self.ziti, jwt, self.work / f"{name}.json")

    def ziti_id(self, name: str) -> str:
        """The controller's id of identity ``name``."""
        found = self.ctrl.find("identities", name)
        assert found is not None, f"{name} is not on the controller"
        return str(found["id"])


@contextlib.contextmanager
def overlay_site(work: Path, address: str = "127.0.0.1", **settings: object) -> Iterator[Site]:
    """A live overlay with two hosted services ("tiny", an HTTP model stand-in, and "echo"),
    and the admin service in process in front of it (``settings`` added to its own),
    logged in as alice."""
    ziti = supplied_program("ziti", work)
    with (
        quickstart(ziti, work / "ctrl", address) as ctrl,
        model_server() as model,
        echo_server() as echo,
    ):
        db_url = f"sqlite:///{work / 'admin.db'}"
        upgrade(make_engine(db_url))
        with Session(make_engine(db_url)) as session:
            for user in ADMINS:
                create_user(session, user, Role.admin, password=ACCOUNT_PASSWORD, actor="test")
            create_user(session, AUDITOR, Role.auditor, password=ACCOUNT_PASSWORD, actor="test")
            session.commit()
        secret = work / "controller.password"
        secret.write_text(ADMIN_PASSWORD)
        admin = AdminSettings(
            profile="test",
            db_url=db_url,
            data_dir=work,
            controller_url=ctrl.url,
            controller_password_file=secret,
            controller_ca=ctrl.ca,
            controller_timeout=5.0,
            audit_watch=False,
            **settings,  # type: ignore[arg-type]
        )
        with TestClient(create_app(admin)) as api:
            site = Site(ctrl, api, "", db_url, ziti, work, admin)
            site.login(ADMINS[0])
            # The services' host: an identity the admin service enrolls, `ziti tunnel host`.
            _, host = site.enrolled("service-host", "service")
            host_id = site.ziti_id("service-host")
            site.services = {
                "tiny": host_service(ctrl, "tiny", model, host_id),
                "echo": host_service(ctrl, "echo", echo, host_id),
            }
            with tunneler(ziti, work / "host.log", "host", "-i", str(host)):
                for service_id in site.services.values():
                    wait_terminator(ctrl, service_id)
                yield site


def echo_connection(port: int, timeout: float = 90) -> socket.socket:
    """A TCP connection through a local proxy to the echo service, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                conn.sendall(b"ping")
                if conn.recv(16) == b"ping":
                    return conn
            except OSError:
                pass
            conn.close()
        time.sleep(0.5)
    raise AssertionError(f"the echo service did not answer through 127.0.0.1:{port}")


def seconds_until_dead(conn: socket.socket, *, timeout: float) -> float | None:
    """Ping every 20 ms until the connection fails; seconds that took, None if it never did."""
    start = time.monotonic()
    conn.settimeout(2)
    while time.monotonic() - start < timeout:
        try:
            conn.sendall(b"x")
            if conn.recv(16) == b"":
                return time.monotonic() - start
        except OSError:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


#: The vendor's side of the break-glass tests: a network namespace of its own, linked to
#: this host by one veth pair (never the lab's ranges, 10.231.0-19).
VENDOR_NS = "aplt-vendor"
VENDOR_SITE_ADDRESS = "10.231.250.1"
VENDOR_ADDRESS = "10.231.250.2"


@contextlib.contextmanager
def vendor_namespace() -> Iterator[str]:
    """A ``vendor`` network namespace reaching this host only at VENDOR_SITE_ADDRESS."""
    _ip("netns", "del", VENDOR_NS, check=False)
    _ip("link", "del", "aplt-v0", check=False)
    _ip("netns", "add", VENDOR_NS)
    try:
        _ip("link", "add", "aplt-v0", "type", "veth", "peer", "name", "aplt-v1")
        _ip("link", "set", "aplt-v1", "netns", VENDOR_NS)
        _ip("addr", "add", f"{VENDOR_SITE_ADDRESS}/30", "dev", "aplt-v0")
        _ip("link", "set", "aplt-v0", "up")
        _ip("-n", VENDOR_NS, "addr", "add", f"{VENDOR_ADDRESS}/30", "dev", "aplt-v1")
        _ip("-n", VENDOR_NS, "link", "set", "aplt-v1", "up")
        _ip("-n", VENDOR_NS, "link", "set", "lo", "up")
        yield VENDOR_NS
    finally:
        _ip("netns", "del", VENDOR_NS, check=False)
        _ip("link", "del", "aplt-v0", check=False)


def _ip(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")


#: Runs inside the vendor namespace: holds one TCP connection to a local proxy, says
#: "ready" once it echoes, then "dead SECONDS" (since "cut" arrived on stdin) when it fails.
_HOLDER = """
import socket, sys, time, select
port = int(sys.argv[1])
deadline = time.monotonic() + 90
while True:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"ping")
        if conn.recv(16) == b"ping":
            break
        conn.close()
    except OSError:
        pass
    if time.monotonic() > deadline:
        print("never", flush=True); sys.exit(1)
    time.sleep(0.5)
print("ready", flush=True)
conn.settimeout(2)
start = None
while True:
    if start is None and select.select([sys.stdin], [], [], 0)[0]:
        sys.stdin.readline(); start = time.monotonic()
    try:
        conn.sendall(b"x")
        if conn.recv(16) == b"":
            break
    except OSError:
        break
    time.sleep(0.02)
print(f"dead {time.monotonic() - (start or time.monotonic()):.3f}", flush=True)
"""


@dataclass
class VendorConnection:
    """A connection held from inside the vendor namespace."""

    process: subprocess.Popen[str]

    def mark(self) -> None:
        """The decision is being made now: time the cut from here."""
        assert self.process.stdin is not None
        self.process.stdin.write("cut\n")
        self.process.stdin.flush()

    def dead_within(self, timeout: float) -> float | None:
        """Seconds from :meth:`mark` until the connection died; None if it outlived
        ``timeout``."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline().split()
        return float(line[1]) if line and line[0] == "dead" else None


@contextlib.contextmanager
def vendor_connection(namespace: str, port: int) -> Iterator[VendorConnection]:
    """Hold a connection from ``namespace`` to its local proxy on ``port``."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _HOLDER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == "ready", f"the vendor's connection never answered ({first!r})"
        yield VendorConnection(proc)
    finally:
        proc.kill()
        proc.wait(10)


def in_namespace(namespace: str, argv: list[str]) -> list[str]:
    """``argv`` run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]
