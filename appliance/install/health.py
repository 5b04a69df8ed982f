"""Judging the site's health from the reports of installer/health.yml. Pure, unit-tested.

Besides "is it up", every host is checked for darkness: a socket listening on anything
but loopback must be SSH or one of the overlay's edge listeners.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from appliance.install.placement import ON_DEMAND_UNITS, edge_ports_for

__all__ = [
    "OVERLAY_MISSING",
    "Check",
    "HealthReport",
    "judge_health",
    "listening",
    "low_on_space",
    "non_loopback_listeners",
    "outbound_refused",
    "restarted_units",
    "started_since_up",
]

#: SSH listens beyond loopback on every host; the firewall lets only the installer reach it.
SSH_PORT = 22
#: A file system is short of space below this share of its size or this many bytes,
#: whichever is smaller.
_LOW_SPACE_SHARE = 0.05
_LOW_SPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    """One health check: where, what, whether it passed, and what was seen."""

    host: str
    name: str
    ok: bool
    detail: str


@dataclass
class HealthReport:
    """Every check of a site, and what each host says it runs."""

    checks: list[Check] = field(default_factory=list)
    installed: dict[str, dict[str, Any]] = field(default_factory=dict)
    fips: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: One line when the site has no overlay, saying why (None: it has one, or unknown).
    overlay_missing: str | None = None

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.ok]


def listening(lines: list[Any]) -> list[tuple[str, int, str]]:
    """``ss -Htln[p]`` lines → (local address, port, owning process or "") per socket."""
    sockets = []
    for line in lines:
        fields = str(line).split()
        if len(fields) < 4 or not fields[3].rsplit(":", 1)[-1].isdigit():
            continue
        local = fields[3]
        sockets.append((local, int(local.rsplit(":", 1)[-1]), fields[5] if len(fields) > 5 else ""))
    return sockets


def non_loopback_listeners(lines: list[Any]) -> list[str]:
    """``ss -Htln`` lines → local addresses listening on anything but loopback."""
    found = []
    for local, _, _ in listening(lines):
        address = local.rsplit(":", 1)[0].strip("[]").split("%")[0]
        try:
            if ipaddress.ip_address(address).is_loopback:
                continue
        except ValueError:
            pass  # "*" or a name: treat as listening everywhere
        found.append(local)
    return found


def outbound_refused(listed: object) -> tuple[int, int] | None:
    """``nft -j list counter inet appliance outbound_refused`` (its text, or as parsed)
    → (packets, bytes); None when it holds no such counter (the table is not loaded).
    """
    document = listed
    if isinstance(listed, str | bytes):
        try:
            document = json.loads(listed)
        except ValueError:
            return None
    entries = document.get("nftables", []) if isinstance(document, dict) else []
    for entry in entries:
        counter = entry.get("counter") if isinstance(entry, dict) else None
        if isinstance(counter, dict) and counter.get("name") == "outbound_refused":
            return int(counter.get("packets", 0)), int(counter.get("bytes", 0))
    return None


def _show_blocks(lines: list[Any]) -> list[dict[str, str]]:
    """``systemctl show`` output for several units → one dict per unit (blank-line split)."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    for line in [*map(str, lines), ""]:
        key, _, value = line.strip().partition("=")
        if key:
            block[key] = value
        elif block:
            blocks.append(block)
            block = {}
    return blocks


def restarted_units(lines: list[Any]) -> dict[str, int]:
    """``systemctl show --property=Id --property=NRestarts`` lines → unit → restarts, for
    the units systemd restarted at least once since boot (blocks split by blank lines)."""
    found: dict[str, int] = {}
    for block in _show_blocks(lines):
        count = block.get("NRestarts", "0")
        if block.get("Id") and count.isdigit() and int(count) > 0:
            found[block["Id"]] = int(count)
    return found


def _seconds(value: str | None, scale: float = 1.0) -> float | None:
    try:
        return float(value) / scale if value not in (None, "") else None
    except ValueError:
        return None


def started_since_up(units: list[Any], clock: list[Any]) -> tuple[dict[str, float], float | None]:
    """When a host's units last started, against when it booted and was last installed.

    ``units``: ``systemctl show`` lines with Id, ActiveState and
    ActiveEnterTimestampMonotonic;
    ``clock``: the manager's UserspaceTimestampMonotonic and FinishTimestampMonotonic
    (microseconds on the boot clock), ``Now=`` (/proc/uptime) and ``InstalledAgo=`` (age
    of installed.json, which the installer rewrites only when what runs changes).

    Returns the running units started after the host had booted and been installed (unit
    → minutes ago: a stop and start by hand, a crash, a restart, an llm-gateway slot
    taking its turn after a routing change), and the minutes since the
    host booted when it booted after its last install (a reboot): news after a fault
    that left nothing failed.
    """
    values: dict[str, str] = {}
    for line in clock:
        key, _, value = str(line).strip().partition("=")
        values[key] = value
    now = _seconds(values.get("Now"))
    ago = _seconds(values.get("InstalledAgo"))
    userspace = _seconds(values.get("UserspaceTimestampMonotonic"), 1e6)
    finished = _seconds(values.get("FinishTimestampMonotonic"), 1e6)
    if now is None or ago is None or not userspace or not finished:
        return {}, None  # not installed yet, or still booting: nothing to compare with
    installed = now - ago
    booted = (now - userspace) / 60 if installed < userspace else None
    up = max(finished, installed)
    started: dict[str, float] = {}
    for block in _show_blocks(units):
        entered = _seconds(block.get("ActiveEnterTimestampMonotonic"), 1e6)
        running = block.get("ActiveState", "active") == "active"  # not a one-shot's past run
        # A second's slack: the install's last unit start and its installed.json are
        # written within the same run, in that order.
        if block.get("Id") and running and entered and entered > up + 1:
            started[block["Id"]] = (now - entered) / 60
    return started, booted


def low_on_space(lines: list[Any]) -> list[str]:
    """``df -B1 --output=target,size,avail`` lines → the file systems short of space,
    said as "TARGET: N MiB free (P %)". Short: less free than 5 % of the file system or
    1 GiB, whichever is smaller (a small disk is not short just for being small)."""
    short: dict[str, str] = {}
    for line in lines:
        parts = str(line).split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        target, size, free = parts[0], int(parts[1]), int(parts[2])
        if size and free < min(_LOW_SPACE_SHARE * size, _LOW_SPACE_BYTES):
            short[target] = f"{target}: {free >> 20} MiB free ({100 * free / size:.0f} %)"
    return list(short.values())


def judge_health(reports: dict[str, dict[str, Any]], unreachable: list[str]) -> HealthReport:
    """Turn the playbook's per-host reports into checks."""
    health = HealthReport()
    for host in sorted(unreachable):
        health.checks.append(Check(host, "reachable", False, "Ansible could not reach it"))
    for host, by_name in sorted(reports.items()):
        facts = (by_name.get("host") or {}).get("msg")
        if isinstance(facts, dict):
            _host_checks(health, host, facts)
        model = (by_name.get("model") or {}).get("msg")
        if isinstance(model, dict) and _true(model.get("expected")):
            served = "tiny" in model.get("models", []) and str(model.get("chat_status")) == "200"
            detail = (
                f"models {model.get('models')}, chat completion in {model.get('chat_s')} s"
                if served
                else str(model.get("error") or "no answer from vLLM on loopback")
            )
            health.checks.append(Check(host, "model served", served, detail))
        admin = (by_name.get("admin") or {}).get("msg")
        if isinstance(admin, dict) and _true(admin.get("expected")):
            up = str(admin.get("status")) == "200"
            detail = (
                f"https://127.0.0.1:{admin.get('port')}/ answers"
                if up
                else str(admin.get("error") or "no answer")
            )
            health.checks.append(Check(host, "admin service up", up, detail))
        access = (by_name.get("access") or {}).get("msg")
        if isinstance(access, dict) and _true(access.get("expected")):
            health.checks.append(_access_check(host, access))
        shell = (by_name.get("vendor shell") or {}).get("msg")
        if isinstance(shell, dict) and shell.get("hosts"):
            health.checks.append(_vendor_shell_check(host, shell))
        overlay = (by_name.get("overlay") or {}).get("msg")
        if isinstance(overlay, dict):
            _overlay_checks(health, host, overlay)
    return health


def _access_check(host: str, access: dict[str, Any]) -> Check:
    """The gateway host's access proxy: it must hold a policy from the admin service."""
    found = access.get("health")
    state: dict[str, Any] = found if isinstance(found, dict) else {}
    if str(access.get("status")) != "200":
        return Check(
            host, "access policy", False, str(access.get("error") or "the access proxy is silent")
        )
    if not _true(state.get("policy_received")):
        return Check(
            host,
            "access policy",
            False,
            f"no policy from the admin service yet ({state.get('admin_service')}): only the "
            "installer's own key works",
        )
    if state.get("gateway") == "none ready":
        return Check(
            host,
            "access policy",
            False,
            f"no llm-gateway slot is ready ({state.get('routing_change')}): requests get 503",
        )
    lost = state.get("model_paths_lost")
    ago = state.get("model_path_lost_seconds_ago")
    # Not a failure (the path is whole again, or the model check would fail) but news: a
    # partition or a GPU host that went away mid-answer leaves no other trace.
    broke = (
        f"; the path to the model broke {lost} time(s) since the proxy started, last "
        f"{float(ago) / 60:.0f} min ago (requests ended with an error, not a hang)"
        if isinstance(lost, int) and lost > 0 and isinstance(ago, int | float)
        else ""
    )
    return Check(
        host,
        "access policy",
        True,
        f"policy {str(state.get('policy_version'))[:12]}, admin service "
        f"{state.get('admin_service')}, llm-gateway slot {state.get('gateway', '?')}" + broke,
    )


def _vendor_shell_check(host: str, shell: dict[str, Any]) -> Check:
    """The vendor shell proxy serves every opted-in host's port (ADR 0021)."""
    hosts = [str(h) for h in shell.get("hosts", [])]
    serving = {str(h) for h in shell.get("serving", [])}
    missing = [h for h in hosts if h not in serving]
    if missing:
        return Check(
            host,
            "vendor shell proxy",
            False,
            f"not serving {', '.join(missing)}: see journalctl -u appliance-vendor-shell",
        )
    return Check(host, "vendor shell proxy", True, f"serves {', '.join(hosts)} on loopback")


#: What `appliance status` says of a site installed without OpenZiti.
OVERLAY_MISSING = (
    "overlay: not installed: the bundle holds no OpenZiti programs (build it with them "
    "supplied, docs/components.md), so no client can reach a model"
)


def _overlay_checks(health: HealthReport, host: str, overlay: dict[str, Any]) -> None:
    """Controller API, every controller and router online, every service hosted, a chat."""
    if not _true(overlay.get("expected")):
        health.overlay_missing = OVERLAY_MISSING
        return
    error = str(overlay.get("error") or "")
    health.checks.append(
        Check(host, "controller API", not error, error or "management API answers on loopback")
    )
    if error:
        return
    # Each controller the inventory names is a member of the cluster, connected to it.
    listed = {str(c.get("name")): _true(c.get("online")) for c in overlay.get("controllers", [])}
    for name in overlay.get("controllers_expected", []):
        online = listed.get(str(name))
        detail = "a member, online" if online else "offline" if online is False else "not a member"
        health.checks.append(Check(host, f"controller {name}", bool(online), detail))
    for router in overlay.get("routers", []):
        online = _true(router.get("online"))
        health.checks.append(
            Check(host, f"router {router.get('name')}", online, "online" if online else "offline")
        )
    for service in overlay.get("services", []):
        health.checks.append(_service_check(host, service))
    if _true(overlay.get("gateway_expected")):
        gateway = overlay.get("gateway") or {}
        served = str(gateway.get("status")) == "200"
        detail = (
            f"chat completion through the overlay in {gateway.get('seconds')} s"
            if served
            else f"HTTP {gateway.get('status')}: {gateway.get('error')}"
            if gateway.get("status")
            else str(gateway.get("error") or "no answer")
        )
        health.checks.append(Check(host, "gateway through the overlay", served, detail))


def _service_check(host: str, service: dict[str, Any]) -> Check:
    """A service is well when every host that serves it passes its health check: one that
    fails is out of the way of new requests (ADR 0022), but the site is short of it."""
    count = int(service.get("terminators") or 0)
    name = f"service {service.get('name')}"
    if not count:
        return Check(host, name, False, "no terminator: nothing hosts it")
    hosts = service.get("hosts") or []
    failed = sorted(str(h.get("router")) for h in hosts if _true(h.get("failed")))
    serving = sorted(str(h.get("router")) for h in hosts if not _true(h.get("failed")))
    if not failed:
        where = f" on {', '.join(serving)}" if serving else ""
        return Check(host, name, True, f"{count} terminator(s){where}")
    if not serving:
        return Check(host, name, False, f"every host failed its health check ({', '.join(failed)})")
    return Check(
        host,
        name,
        False,
        f"{', '.join(failed)} failed its health check: requests go to {', '.join(serving)}",
    )


def _host_checks(health: HealthReport, host: str, facts: dict[str, Any]) -> None:
    allowed = {SSH_PORT, *edge_ports_for([str(g) for g in facts.get("groups", [])])}
    exposed = [
        local
        for local in non_loopback_listeners(facts.get("listening", []))
        if int(local.rsplit(":", 1)[-1]) not in allowed
    ]
    health.checks.append(
        Check(
            host,
            "dark",
            not exposed,
            "only SSH and edge listeners beyond loopback"
            if not exposed
            else "listening beyond loopback: " + ", ".join(exposed),
        )
    )
    if "sealed" in facts:
        health.checks.append(_sealed_check(host, facts["sealed"]))
    if "disk" in facts:
        health.checks.append(_disk_check(host, facts["disk"]))
    units = [str(u).split() for u in facts.get("units", [])]
    failed = [u[0] for u in units if len(u) >= 2 and u[1] == "failed"]
    inactive = [
        u[0]
        for u in units
        if len(u) >= 2 and u[1] != "active" and u[0] not in failed and u[0] not in ON_DEMAND_UNITS
    ]
    restarted = restarted_units(facts.get("restarts", []))
    started, booted = started_since_up(facts.get("restarts", []), facts.get("clock", []))
    # Neither is a failure (the units serve again) but both are named: after a crash, a
    # stop or a reboot, the site answers as before and only this says what happened.
    since = ""
    if restarted:
        since += "; restarted by systemd since boot: " + ", ".join(
            f"{unit} ({count}x)" for unit, count in sorted(restarted.items())
        )
    since_up = {unit: ago for unit, ago in started.items() if unit not in restarted}
    if since_up:
        since += "; started since the site came up: " + ", ".join(
            f"{unit} ({ago:.0f} min ago)" for unit, ago in sorted(since_up.items())
        )
    if booted is not None:
        since += f"; booted {booted:.0f} min ago, after its last install"
    health.checks.append(
        Check(
            host,
            "units",
            not failed and not inactive,
            (
                f"{len(units)} appliance units active"
                if not failed and not inactive
                else "not running: " + ", ".join(failed + inactive)
            )
            + since,
        )
    )
    if isinstance(facts.get("installed"), dict):
        health.installed[host] = facts["installed"]
    if isinstance(facts.get("fips"), dict):
        health.fips[host] = facts["fips"]


def _disk_check(host: str, lines: list[Any]) -> Check:
    if not lines:  # df said nothing: unknown is not "enough"
        return Check(host, "disk", False, "free space could not be read (df gave no line)")
    short = low_on_space(lines)
    if short:
        return Check(
            host,
            "disk",
            False,
            "short of space: " + "; ".join(short) + " (what cannot be written is refused, "
            "not lost: free space there)",
        )
    return Check(host, "disk", True, "free space on every file system the appliance writes to")


def _sealed_check(host: str, listed: object) -> Check:
    """Nothing on the host tried to leave the site: the firewall's count of packets it
    refused on their way to an address outside the site's networks is 0."""
    counted = outbound_refused(listed)
    if counted is None:
        return Check(
            host,
            "sealed",
            False,
            "the firewall's table inet appliance is not loaded: "
            "systemctl status appliance-firewall",
        )
    packets, _ = counted
    if packets:
        return Check(
            host,
            "sealed",
            False,
            f"{packets} packet(s) bound outside the site were refused since the firewall "
            "loaded: journalctl -k -g appliance-sealed names their senders",
        )
    return Check(host, "sealed", True, "0 packets bound outside the site")


def _true(value: object) -> bool:
    return value is True or str(value).lower() == "true"
