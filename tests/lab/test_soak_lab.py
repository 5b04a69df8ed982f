"""The site under faults while people use it (issue 29): a soak with a fault table.

Load, the whole run: CLIENTS enrolled clients, each on a workstation of its own on the
site LAN, stream chat completions through the overlay one after another; an admin
creates, grants, disables and deletes identities through the admin API; a break-glass
window is open and the vendor's engineer polls vLLM through it from the vendor side.

Faults, one at a time while the load runs. After each: the site's own `install.sh
status`, the dark scan of the LAN and every host's count of packets refused on their way
out of the site. The table of what each fault cost is printed, and written to
$APPLIANCE_SOAK_TABLE when set; docs/faults.md keeps a run's, with what it shows.

APPLIANCE_SOAK_FAULTS picks the faults: "short" (the default, as `make test` runs it),
"all" (`make soak`), or names separated by commas. The load stops by itself
(LOAD_LIMIT_S) even if the test is killed; only lab addresses are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.components.build import BuildReport
from appliance.install.health import outbound_refused
from appliance.lab import reboot
from appliance.lab.admin_api import AdminCallError
from appliance.lab.workstations import Workstation, workstations
from tests.integration.overlay import tunneler
from tests.lab.admin_host_faults import (
    clock_adjustable,
    fill_disk,
    free_disk,
    small_disk,
    step_clock,
)
from tests.lab.conftest import TEST_LAB
from tests.lab.overlay_site import (
    ADMIN_PASSWORD,
    COMPONENTS,
    Site,
    admin_calls,
    admin_journal,
    enroll_client,
    install_healthy,
    lab_site,
)
from tests.lab.soak import (
    AdminOp,
    FaultRow,
    FaultSpan,
    Request,
    measure,
    read_requests,
    table,
)
from tests.lab.support import ssh, tcp_scan
from tests.lab.vendor_window import open_window

HOSTS = ("ctrl1", "gw1", "gpu1")
CLIENTS = 4
#: What answers on the site LAN (as tests/lab/test_overlay_lab.py).
LAN = {"ctrl1": [22, 1280], "gw1": [22, 3022], "gpu1": [22]}
GATEWAY_PORT = 8080
#: The load gives up by itself after this long, whatever happens to the test.
LOAD_LIMIT_S = 5400
#: How long after the broken piece is back a fault is watched at most.
SETTLE_S = 60
WINDOW_MINUTES = 4
SECOND_ADMIN, SECOND_PASSWORD = "soak-approver", "the-soak-approver-1"
SOAK_LOAD = Path(__file__).with_name("soak_load.py")
DISK_FULL_S = 60
CLOCK_STEP_S = 600
#: How long the clock stays stepped (back: past the window's end by this much).
CLOCK_HOLD_S = 20


@dataclass
class Soak:
    """The running load: where each client writes, the admin's calls, the window."""

    site: Site
    outputs: dict[str, Path]
    ops: list[AdminOp] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)
    vendor_log: Path | None = None
    #: The fault's thread makes admin calls too.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self) -> list[Request]:
        return [r for name, path in self.outputs.items() for r in read_requests(name, path)]


# --- the admin's side -------------------------------------------------------------------


def _call(soak: Soak, action: str, method: str, path: str, body: object, target: str) -> AdminOp:
    """One admin API call (recording ``action`` when done), timed and judged: was it
    done, or did its error say why?"""
    began = time.time()
    try:
        [[status, answer]] = admin_calls(soak.site, [(method, path, body)])
    except AdminCallError as exc:
        # A refused login (a full disk refuses it too) is judged by its answer.
        clear = exc.status is not None and _readable(exc.body)
        op = AdminOp(action, target, began, time.time(), exc.status, clear, str(exc)[:200])
    except subprocess.TimeoutExpired as exc:
        op = AdminOp(action, target, began, time.time(), None, False, str(exc)[:200])
    else:
        op = AdminOp(action, target, began, time.time(), int(status), _readable(answer), answer)
    with soak.lock:
        soak.ops.append(op)
    return op


def _readable(answer: object) -> bool:
    """A failed call's body says what went wrong: the API's error shape
    ({"error": {"message": ...}}), not HTML or a bare status line."""
    parsed = answer
    if isinstance(answer, str):
        try:
            parsed = json.loads(answer)
        except ValueError:
            return False
    if not isinstance(parsed, dict):
        return False
    error = parsed.get("error")
    return isinstance(error, dict) and bool(error.get("message"))


def _user(name: str) -> dict[str, str]:
    return {"name": name, "kind": "user"}


def _admin_loop(soak: Soak, stop: threading.Event) -> None:
    """Create, grant, disable and delete identities, one after another, until told."""
    number = 0
    deadline = time.monotonic() + LOAD_LIMIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        number += 1
        name = f"soak-{number}"
        made = _call(soak, "identity.create", "POST", "/identities", _user(name), name)
        if made.ok and isinstance(made.answer, dict):
            row = made.answer["identity"]["id"]
            grant = {"subject": f"@{name}", "model_service": "tiny"}
            _call(soak, "grant.create", "POST", "/grants", grant, name)
            _call(soak, "identity.disable", "POST", f"/identities/{row}/disable", None, name)
            _call(soak, "identity.delete", "DELETE", f"/identities/{row}", None, name)
        stop.wait(1.0)


# --- the load ---------------------------------------------------------------------------


def _listening_in(station: Workstation, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the client's tunneler exited"
        found = subprocess.run(
            station.argv("ss", "-Htln", f"sport = :{port}"), capture_output=True, text=True
        )
        if found.stdout.strip():
            return
        time.sleep(0.3)
    raise AssertionError(f"{station.namespace}: nothing listens on 127.0.0.1:{port}")


def _client(site: Site, number: int) -> tuple[Path, str]:
    """An identity made, granted and keyed through the admin API, enrolled here."""
    name = f"user{number}"
    made = admin_calls(
        site,
        [
            ("POST", "/identities", {"name": name, "kind": "user"}),
            ("POST", "/grants", {"subject": f"@{name}", "model_service": "tiny"}),
        ],
    )
    assert [s for s, _ in made] == [201, 201], f"{made}{admin_journal(site)}"
    keyed = admin_calls(site, [("POST", f"/identities/{made[0][1]['identity']['id']}/keys", {})])
    assert keyed[0][0] == 201, keyed
    return enroll_client(site, str(made[0][1]["jwt"]), name), str(keyed[0][1]["api_key"])


@contextlib.contextmanager
def _load(site: Site, stations: list[Workstation]) -> Iterator[Soak]:
    """The clients' streams and the admin's calls, running for the block."""
    stop_file = site.work / "soak.stop"
    stop_file.unlink(missing_ok=True)
    soak = Soak(site, {})
    with contextlib.ExitStack() as stack:
        for number, station in enumerate(stations):
            identity, key = _client(site, number)
            log = site.work / f"user{number}-tunnel.log"
            proc = stack.enter_context(
                tunneler(
                    site.ziti,
                    log,
                    "proxy",
                    f"llm-gateway:{GATEWAY_PORT}",
                    "-i",
                    str(identity),
                    namespace=station.namespace,
                )
            )
            _listening_in(station, GATEWAY_PORT, proc)
            out = site.work / f"user{number}.jsonl"
            soak.outputs[f"user{number}"] = out
            argv = [str(GATEWAY_PORT), key, str(out), str(stop_file), str(LOAD_LIMIT_S)]
            load = subprocess.Popen(station.argv(sys.executable, str(SOAK_LOAD), *argv))
            stack.callback(load.wait, 60)
            stack.callback(stop_file.touch)
        stop = threading.Event()
        admin = threading.Thread(target=_admin_loop, args=(soak, stop), daemon=True)
        admin.start()
        stack.callback(admin.join, 120)
        stack.callback(stop.set)
        yield soak


# --- the vendor's window ----------------------------------------------------------------

#: Runs in the vendor namespace: asks vLLM for its models through the vendor's proxy
#: every 0.5 s until told to stop, printing "EPOCH ok" or "EPOCH fail" for each try.
_VENDOR_POLL = r"""
import http.client, sys, time
port, stop, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
import os
end = time.monotonic() + limit
while time.monotonic() < end and not os.path.exists(stop):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        ok = conn.getresponse().status == 200
        conn.close()
    except (OSError, http.client.HTTPException):
        ok = False
    print(f"{time.time():.3f} {'ok' if ok else 'fail'}", flush=True)
    time.sleep(0.5)
"""


@contextlib.contextmanager
def _window(soak: Soak) -> Iterator[None]:
    """A break-glass window asked for, approved by a second admin and used by the vendor."""
    site = soak.site
    ask = {
        "reason": "soak: the vendor watches vLLM under faults",
        "ticket": "SOAK-1",
        "scope": ["vllm"],
        "engineers": ["sam"],
        "duration_minutes": WINDOW_MINUTES,
    }
    opened = open_window(site, ask, (SECOND_ADMIN, SECOND_PASSWORD))
    soak.window = {"id": opened.id, **opened.window}
    identity, vendor = opened.identity, site.plan.vendor.namespace
    soak.vendor_log = site.work / "vendor-sam.poll"
    stop = site.work / "vendor.stop"
    with (
        tunneler(
            site.ziti,
            site.work / "vendor-sam.log",
            "proxy",
            "vllm:18000",
            "-i",
            str(identity),
            namespace=vendor,
        ),
        soak.vendor_log.open("w") as out,
    ):
        poll = subprocess.Popen(
            ["ip", "netns", "exec", vendor, sys.executable, "-c", _VENDOR_POLL, "18000",
             str(stop), str(LOAD_LIMIT_S)],
            stdout=out,
        )  # fmt: skip
        try:
            yield
        finally:
            stop.touch()
            poll.wait(30)


# --- faults -----------------------------------------------------------------------------


def _on(site: Site, host: str, command: str, timeout: float = 120) -> str:
    done = ssh(site.lab, site.address[host], command, timeout=timeout)
    assert done.returncode == 0, f"{host}: {command}: {done.stdout}{done.stderr}"
    return done.stdout


def _until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` until it holds; the moment it did."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)
    return time.time()


def _active(site: Site, host: str, unit: str) -> bool:
    done = ssh(site.lab, site.address[host], f"systemctl is-active {unit}", timeout=30)
    return done.stdout.strip() == "active"


def _answers(site: Site, host: str, url: str) -> bool:
    probe = (
        "python3 -c 'import ssl, sys, urllib.request as u; "
        "c = ssl._create_unverified_context(); "
        f'sys.exit(0 if u.urlopen("{url}", timeout=5, context=c).status == 200 else 1)\''
    )
    return ssh(site.lab, site.address[host], probe, timeout=30).returncode == 0


def _restarts(site: Site, host: str, unit: str) -> int:
    return int(_on(site, host, f"systemctl show --property=NRestarts --value {unit}").strip())


def _killed(host: str, unit: str) -> Callable[[Soak], tuple[float, float, str]]:
    """kill -9 of the unit's program (its container's first process); systemd starts it
    again. Back when systemd has restarted the unit."""

    def fault(soak: Soak) -> tuple[float, float, str]:
        site = soak.site
        before = _restarts(site, host, unit)
        start = time.time()
        _on(site, host, f"podman kill --signal KILL {unit}")
        back = _until(
            f"{unit} on {host} restarted by systemd",
            lambda: _restarts(site, host, unit) > before and _active(site, host, unit),
            180,
        )
        return start, back, f"{unit} killed -9 on {host}; systemd restarted it"

    return fault


def _restarted(host: str, unit: str) -> Callable[[Soak], tuple[float, float, str]]:
    def fault(soak: Soak) -> tuple[float, float, str]:
        start = time.time()
        _on(soak.site, host, f"systemctl restart {unit}")
        return start, time.time(), f"{unit} restarted on {host}"

    return fault


def _vllm_killed(soak: Soak) -> tuple[float, float, str]:
    start, _, said = _killed("gpu1", "appliance-vllm")(soak)
    back = _until(
        "vLLM answers again",
        lambda: _answers(soak.site, "gpu1", "http://127.0.0.1:8000/health"),
        600,
    )
    return start, back, said


def _admin_killed_during_create(soak: Soak) -> tuple[float, float, str]:
    """kill -9 of the admin service while it creates an identity on the controller."""
    site = soak.site
    name = "soak-killed-create"
    done: list[AdminOp] = []
    creating = threading.Thread(
        target=lambda: done.append(
            _call(soak, "identity.create", "POST", "/identities", _user(name), name)
        )
    )
    creating.start()
    time.sleep(1.0)  # SSH, login, and the create under way on the controller
    start = time.time()
    _on(site, "ctrl1", "podman kill --signal KILL appliance-admin")
    creating.join(180)
    back = _until(
        "the admin service answers again",
        lambda: _answers(site, "ctrl1", "https://127.0.0.1:8443/login"),
        180,
    )
    # Whatever the killed create left, the same create now ends clearly: made (nothing of
    # it was kept) or refused as existing (it was kept, whole, with its audit record).
    again = _call(soak, "identity.create", "POST", "/identities", _user(name), name)
    assert again.status in (201, 409) and again.clear, again
    first = done[0] if done else None
    return (
        start,
        back,
        f"create killed ({first.status if first else 'no answer'}), again: {again.status}",
    )


def _controller_stopped(soak: Soak) -> tuple[float, float, str]:
    """The single controller stopped 60 s. Where recovery goes: the controller's start
    until it listens, then each router's own reconnect (upstream's backoff)."""
    site = soak.site
    start = time.time()
    _on(site, "ctrl1", "systemctl stop appliance-ziti-controller")
    time.sleep(60)
    _on(site, "ctrl1", "systemctl start appliance-ziti-controller")
    back = time.time()
    listening = _until(
        "the controller listens",
        lambda: ":1280 " in _on(site, "ctrl1", "ss -Htln"),
        120,
    )
    reconnected = {
        host: _until(
            f"{host}'s router reconnects to the controller",
            lambda host=host: _router_reconnected(site, host, back) is not None,
            300,
        )
        for host in ("gw1", "gpu1")
    }
    at = {host: _router_reconnected(site, host, back) or 0.0 for host in reconnected}
    routers = ", ".join(f"{host} +{at[host] - back:.1f} s" for host in sorted(at))
    return (
        start,
        back,
        f"controller stopped 60 s, then started; listening +{listening - back:.1f} s, "
        f"routers reconnected {routers}",
    )


def _router_reconnected(site: Site, host: str, since: float) -> float | None:
    """When ``host``'s router logged its reconnection to the controller after ``since``."""
    said = _on(
        site,
        host,
        f"journalctl -u appliance-ziti-router --since @{int(since)} -o short-unix "
        # journalctl -g exits 1 when nothing matches yet: that is an answer, not a failure.
        "--no-pager -g 'successfully connected to controller' || true",
    )
    times = [float(line.split()[0]) for line in said.splitlines() if line[:1].isdigit()]
    times = [t for t in times if t >= since]
    return min(times) if times else None


def _rebooted(host: str, serving: str) -> Callable[[Soak], tuple[float, float, str]]:
    """The host powered off cleanly and booted again; back when it answers SSH."""

    def fault(soak: Soak) -> tuple[float, float, str]:
        start = time.time()
        took = reboot(host, soak.site.lab, name=TEST_LAB)
        back = time.time()
        _until(f"{host} serves again", lambda: _answers(soak.site, host, serving), 300)
        return start, back, f"{host} rebooted, SSH again after {took:.0f} s"

    return fault


def _partitioned(soak: Soak) -> tuple[float, float, str]:
    """gw1 and gpu1 cannot reach each other for 30 s (a table of the test's own on gpu1)."""
    gw1 = soak.site.address["gw1"]
    rules = (
        "table inet soak_partition {\n"
        f"  chain i {{ type filter hook input priority -10; ip saddr {gw1} drop; }}\n"
        f"  chain o {{ type filter hook output priority -10; ip daddr {gw1} drop; }}\n"
        "}"
    )
    start = time.time()
    _on(soak.site, "gpu1", f"nft -f - <<'EOF'\n{rules}\nEOF")
    try:
        time.sleep(30)
    finally:
        _on(soak.site, "gpu1", "nft delete table inet soak_partition")
    return start, time.time(), "gw1 and gpu1 partitioned 30 s"


def _admin_disk_full(soak: Soak) -> tuple[float, float, str]:
    """The admin's data disk full for DISK_FULL_S, then freed; `status` asked meanwhile."""
    site = soak.site
    start = time.time()
    said = fill_disk(site)
    try:
        during = _status_line(site)
        time.sleep(max(0.0, start + DISK_FULL_S - time.time()))
    finally:
        free_disk(site)
    back = time.time()
    # Afterwards the audit log names it: the admin service's next pass that can write
    # records what the full disk refused (every 5 s).
    recorded: list[dict[str, Any]] = []

    def refusals_recorded() -> bool:
        [[status, page]] = admin_calls(
            site, [("GET", "/audit/records?action=storage.refused&limit=10", None)]
        )
        recorded[:] = [r for r in page if r.get("details", {}).get("fault") == "DiskFull"]
        return status == 200 and bool(recorded)

    _until("the full disk's refusals in the audit log", refusals_recorded, 60)
    details = recorded[0]["details"]
    return (
        start,
        back,
        f"admin data disk full (size, free: {said}); meanwhile {during}; afterwards audit "
        f"record storage.refused: {details['refused']} refused, {details['first']} to "
        f"{details['last']}",
    )


def _admin_clock_stepped(soak: Soak) -> tuple[float, float, str]:
    """The admin host's wall clock 10 minutes back across the window's real end, then 10
    minutes forward; the end is the kernel gate's and the boot clock's, not the wall's."""
    site = soak.site
    start = time.time()
    ends_at = datetime.fromisoformat(soak.window["ends_at"]).timestamp()
    step_clock(site, -CLOCK_STEP_S)
    try:
        time.sleep(max(CLOCK_HOLD_S, ends_at + CLOCK_HOLD_S - time.time()))
        step_clock(site, +CLOCK_STEP_S)
        time.sleep(CLOCK_HOLD_S)
    finally:
        step_clock(site, 0)
    across = "across the window's end" if start < ends_at else "after the window's end"
    return start, time.time(), f"admin clock 10 min back ({across}), then 10 min forward"


FAULTS: dict[str, Callable[[Soak], tuple[float, float, str]]] = {
    # First, while the soak's window is still open: its end falls in the step back.
    "admin clock stepped 10 min back and forward": _admin_clock_stepped,
    "router killed -9 (gw1)": _killed("gw1", "appliance-ziti-router"),
    "llm-gateway restarted (gw1)": _restarted("gw1", "appliance-llm-gateway-a"),
    "admin service killed -9 during a create": _admin_killed_during_create,
    "vLLM killed -9 (gpu1)": _vllm_killed,
    "controller stopped 60 s": _controller_stopped,
    "gw1 and gpu1 partitioned 30 s": _partitioned,
    "gateway host rebooted (gw1)": _rebooted("gw1", "http://127.0.0.1:8080/health"),
    "admin data disk full": _admin_disk_full,
}
#: What each fault needs of the admin host before the load begins (it restarts units).
PREPARE: dict[str, Callable[[Site], object]] = {
    "admin clock stepped 10 min back and forward": clock_adjustable,
    "admin data disk full": small_disk,
}
SHORT = (
    "router killed -9 (gw1)",
    "llm-gateway restarted (gw1)",
    "admin service killed -9 during a create",
)


def _chosen() -> list[str]:
    asked = os.environ.get("APPLIANCE_SOAK_FAULTS", "short")
    if asked == "short":
        return list(SHORT)
    if asked == "all":
        return list(FAULTS)
    names = [n.strip() for n in asked.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    assert not unknown, f"APPLIANCE_SOAK_FAULTS names no such fault: {unknown}; {list(FAULTS)}"
    return names


def _refused_outbound(site: Site) -> int:
    """Packets every host's firewall refused on their way out of the site, so far."""
    total = 0
    for host in HOSTS:
        listed = _on(site, host, "nft -j list counter inet appliance outbound_refused")
        counted = outbound_refused(listed)
        assert counted is not None, f"{host}: no outbound_refused counter"
        total += counted[0]
    return total


def _lan_listeners(site: Site) -> list[str]:
    found = tcp_scan(list(site.address.values()))
    wanted = {site.address[h]: ports for h, ports in LAN.items()}
    return [f"{a}:{p}" for a, ports in found.items() for p in ports if p not in wanted[a]]


#: What `status` says of a fault it has seen pass (health.py): the parts of a passing
#: check's detail that name it.
NEWS = (
    "restarted by systemd since boot: ",
    "started since the site came up: ",
    ", after its last install",
    "the path to the model broke ",
)


def _status_line(site: Site) -> str:
    """`install.sh status`: its failed checks and what it names of a past fault (each with
    its host), or that every check passes."""
    said = site.run("status").stdout
    lines = [" ".join(line.strip(" │").split()) for line in said.splitlines()]
    failed = [line for line in lines if "FAIL" in line]
    news = [
        f"{line.split()[0]} {part.split(' (requests')[0]}"
        for line in lines
        if "FAIL" not in line
        for part in line.split("; ")
        if any(mark in part for mark in NEWS)
    ]
    return "status: " + "; ".join((failed or ["every check passes"]) + news)


def _fault(soak: Soak, name: str) -> FaultRow:
    """Make fault ``name`` under the load; watch it; its row."""
    site = soak.site
    refused_before = _refused_outbound(site)
    start, back, said = FAULTS[name](soak)
    # Watched until new requests succeed again and 5 s more, SETTLE_S at most.
    deadline = back + SETTLE_S
    while time.time() < deadline and not any(
        r.t0 >= back and r.outcome == "ok" for r in soak.requests()
    ):
        time.sleep(1)
    time.sleep(5)
    span = FaultSpan(name, start, back, time.time())
    with soak.lock:
        ops = list(soak.ops)
    row = measure(span, soak.requests(), ops)
    row.seen_as = f"{said}; {_status_line(site)}"
    row.new_listeners = _lan_listeners(site)
    row.outbound = _refused_outbound(site) - refused_before
    print(f"\n{name}: {row}", flush=True)
    return row


# --- the test ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(
    build_lab: Callable[..., BuildReport], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    build_lab(*COMPONENTS)  # skips, saying so, without supplied OpenZiti programs
    with lab_site(tmp_path_factory.mktemp("soak-lab"), HOSTS) as made:
        install_healthy(made, ("gateway through the overlay", "sealed"))
        otp = (made.site_dir / "credentials/ctrl1.credential").read_text().strip()
        admin_calls(made, [], password=otp, new_password=ADMIN_PASSWORD)
        yield made


@pytest.mark.timeout(5400)
def test_the_site_under_faults_loses_no_record_and_stays_dark_and_sealed(site: Site) -> None:
    chosen = _chosen()
    prepared = [PREPARE[name](site) for name in chosen if name in PREPARE]
    if prepared:  # the admin service was started again
        _until(
            "the admin service answers again",
            lambda: _answers(site, "ctrl1", "https://127.0.0.1:8443/login"),
            180,
        )
    outbound_before = _refused_outbound(site)
    with (
        workstations(site.plan, CLIENTS) as stations,
        _load(site, stations) as soak,
        _window(soak),
    ):
        time.sleep(20)  # the load settles: every client streaming
        rows = [_fault(soak, name) for name in chosen]
        # The window's end, whatever the faults did: the vendor is out on time.
        ends_at = datetime.fromisoformat(soak.window["ends_at"]).timestamp()
        if time.time() < ends_at + 15:
            time.sleep(ends_at + 15 - time.time())
    printed = table(rows)
    print("\n" + printed, flush=True)
    if target := os.environ.get("APPLIANCE_SOAK_TABLE"):
        Path(target).write_text(printed + "\n", encoding="utf-8")

    requests = soak.requests()
    assert requests, "the clients recorded no request"
    # Between faults the site serves: most requests of the run succeeded.
    assert sum(r.outcome == "ok" for r in requests) > len(requests) // 2, table(rows)

    # 0 acknowledged audit records lost: every admin call that was done has its record.
    recorded = _audit_records(site)
    acknowledged = {(o.action, o.target) for o in soak.ops if o.ok}
    lost = sorted(acknowledged - recorded)
    assert not lost, f"acknowledged admin calls without an audit record: {lost}"

    # 0 windows past their end: the vendor's last answer came before the window's end.
    assert soak.vendor_log is not None
    polled = [line.split() for line in soak.vendor_log.read_text().splitlines()]
    answered = [float(t) for t, outcome in polled if outcome == "ok"]
    assert answered, "the vendor never reached vLLM through the window"
    assert max(answered) <= ends_at + 1.5, (max(answered) - ends_at, soak.window)

    # 0 new LAN listeners and 0 packets bound outside the site, over the whole run.
    assert not [r for r in rows if r.new_listeners], table(rows)
    assert _refused_outbound(site) - outbound_before == 0, "packets left for outside the site"
    # No request hangs past the client's timeout; every fault is named by status or audit.
    assert not [r for r in rows if r.hangs], table(rows)


def _audit_records(site: Site) -> set[tuple[str, str]]:
    """(action, target) of every record the admin's calls left, read through the API."""
    found: set[tuple[str, str]] = set()
    offset = 0
    while True:
        [[status, page]] = admin_calls(
            site, [("GET", f"/audit/records?actor=admin&limit=1000&offset={offset}", None)]
        )
        assert status == 200, page
        for record in page:
            target = str(record["target"]).removeprefix("@")
            found.add((str(record["action"]), target))
        if len(page) < 1000:
            return found
        offset += 1000
