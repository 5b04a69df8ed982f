"""The lab's network: namespaces, veth pairs, two bridges and a firewall table of its own.

For lab number k (``Slot``; k = 0 shown, names ``apl-…``):

Root namespace (the workstation)
    apl-site0  bridge, 10.231.0.1/24: the site LAN; each machine's eth0 plugs in here
    apl-ext0   bridge, no address: the outside; gateway hosts' and the vendor access
               host's eth1 and the vendor
Each machine NAME: namespace apl-NAME, eth0 (and eth1 for gateways and the vendor access
host), loopback, no default route, no IP forwarding, no IPv6. The vendor: namespace
apl-vendor, 10.231.1.10, with one route: to the access host's site address through its eth1.

"No route out" is enforced twice. No lab namespace has a default route, so a packet to
anything off its own /24 has nowhere to go. And should a host add one, the root
namespace's ``inet appliance_lab`` table drops whatever the lab's bridges would have it
forward (to another lab's bridges too), and whatever a host sends to the workstation's
addresses other than its installer address. Each table is one lab's alone: made and
deleted whole, never the host's ruleset nor another lab's table.

The site bridge's interface alias records which lab made the network (its name and
state directory): network names are global to the host, so that is where "whose lab is
this" has to live. Removal takes what is there and treats whatever vanished meanwhile as
removed: the kernel deletes a namespace's veth pairs a moment after the namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from appliance.errors import LabError
from appliance.lab.host import Completed, Runner, host_runner, remove, wait_until
from appliance.lab.plan import (
    DEFAULT_LAB,
    PREFIX_LENGTH,
    LabPlan,
    Slot,
    index_of_link,
    index_of_table,
)

__all__ = [
    "NETNS_DIR",
    "HostNetwork",
    "LabOwner",
    "NetworkState",
    "add_site_host",
    "create_network",
    "firewall_rules",
    "owner_tag",
    "parse_owner",
    "remove_network",
    "scan_network",
]

NETNS_DIR = Path("/run/netns")
_OWNER_TAG = "appliance-lab:"
# Linux keeps up to 255 bytes of an interface alias.
_MAX_ALIAS = 255
#: How long removal waits for the kernel to finish deleting namespaces' links.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class LabOwner:
    """The lab a network belongs to, as its site bridge's alias records it."""

    name: str
    state: Path

    def describe(self) -> str:
        """``lab NAME (state STATE)``, for messages."""
        return f"lab {self.name} (state {self.state})"


@dataclass(frozen=True)
class NetworkState:
    """What of one lab's network exists on the host right now."""

    namespaces: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    #: The lab's ``inet`` table name when it is there, else None.
    firewall: str | None = None

    @property
    def empty(self) -> bool:
        """True when nothing of the lab's network is left on the host."""
        return not self.namespaces and not self.links and self.firewall is None

    @property
    def pieces(self) -> tuple[str, ...]:
        """Everything present, in words, for messages."""
        table = (f"nft table inet {self.firewall}",) if self.firewall else ()
        return (*self.namespaces, *self.links, *table)


@dataclass(frozen=True)
class HostNetwork:
    """Every lab's namespaces, links and firewall tables on the host, by lab number."""

    labs: dict[int, NetworkState] = field(default_factory=dict)
    #: Lab number → who its site bridge says made it; None for a bridge without our tag.
    owners: dict[int, LabOwner | None] = field(default_factory=dict)

    def of(self, slot: Slot) -> NetworkState:
        """What of lab ``slot``'s network is there (empty when nothing is)."""
        return self.labs.get(slot.index, NetworkState())

    def owner(self, slot: Slot) -> LabOwner | None:
        """Who made lab ``slot``'s network; None when there is no tagged site bridge."""
        return self.owners.get(slot.index)


def owner_tag(owner: LabOwner) -> str:
    """The alias written on a lab's site bridge."""
    return f"{_OWNER_TAG}{owner.name}:{owner.state}"


def parse_owner(alias: str) -> LabOwner | None:
    """The lab an alias names; None when it is not one of our tags."""
    if not alias.startswith(_OWNER_TAG):
        return None
    rest = alias.removeprefix(_OWNER_TAG)
    if rest.startswith("/"):  # written before labs had names: the default lab
        return LabOwner(DEFAULT_LAB, Path(rest))
    name, _, state = rest.partition(":")
    return LabOwner(name, Path(state)) if name and state.startswith("/") else None


def firewall_rules(slot: Slot) -> str:
    """The lab's ``inet`` table, as an nft script that replaces any older copy of it."""
    site, ext, table = slot.site_bridge, slot.ext_bridge, slot.nft_table
    bridges = f'{{ "{site}", "{ext}" }}'
    # With br_netfilter loaded, frames bridged between two machines pass the forward hook
    # with the bridge as both in and out interface: that is the LAN itself, keep it.
    return f"""\
add table inet {table}
delete table inet {table}
table inet {table} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{site}" oifname "{site}" accept
        iifname "{ext}" oifname "{ext}" accept
        iifname {bridges} drop
        oifname {bridges} drop
    }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{ext}" drop
        iifname "{site}" ip daddr != {slot.installer_address} drop
        iifname "{site}" meta nfproto ipv6 drop
    }}
}}
"""


def create_network(plan: LabPlan, owner: LabOwner, run: Runner = host_runner) -> None:
    """Make bridges, firewall table, namespaces and links for ``plan``, tagged ``owner``.

    Bridges first: from the moment anything of the lab exists, its site bridge says whose
    it is. CommandError when a command fails.
    """
    slot = plan.slot
    tag = owner_tag(owner)
    if len(tag.encode("utf-8")) > _MAX_ALIAS:
        raise LabError(
            f"the state directory path {owner.state} is too long to record on the lab bridge "
            f"(expected at most {_MAX_ALIAS} bytes with the lab's name, found "
            f"{len(tag.encode('utf-8'))})",
            hint="use a shorter --state path",
        )
    _bridge(run, slot.site_bridge, f"{slot.installer_address}/{PREFIX_LENGTH}", tag)
    _bridge(run, slot.ext_bridge, None, tag)
    run(["nft", "-f", "-"], input_text=firewall_rules(slot)).check()
    for machine in plan.machines:
        add_site_host(
            machine.namespace, machine.site_veth, slot.site_bridge, machine.site_address, run
        )
        if machine.outside_address:
            _plug(run, machine.namespace, machine.outside_veth, "eth1", slot.ext_bridge)
            _address(run, machine.namespace, "eth1", machine.outside_address)
    vendor = plan.vendor
    _namespace(run, vendor.namespace)
    _plug(run, vendor.namespace, vendor.veth, "eth0", slot.ext_bridge)
    _address(run, vendor.namespace, "eth0", vendor.address)
    access = plan.vendor_access
    if access is not None and access.outside_address:
        # The vendor's own routing (its VPN, at a real site): the controller's client API
        # is reached at its site address through the access host's outside leg, where the
        # break-glass gate decides. The access host forwards nothing.
        run(
            ["ip", "-n", vendor.namespace, "route", "add", f"{access.site_address}/32",
             "via", access.outside_address]
        ).check()  # fmt: skip


def scan_network(run: Runner = host_runner) -> HostNetwork:
    """Every lab namespace, link and firewall table on the host, and each network's owner."""
    namespaces: dict[int, list[str]] = {}
    links: dict[int, list[str]] = {}
    tables: dict[int, str] = {}
    owners: dict[int, LabOwner | None] = {}
    for name in _namespaces(run):
        index = index_of_link(name)
        if index is not None:
            namespaces.setdefault(index, []).append(name)
    for link in _links(run):
        name = str(link.get("ifname", ""))
        index = index_of_link(name)
        if index is None:
            continue
        links.setdefault(index, []).append(name)
        if name == Slot(index).site_bridge:
            owners[index] = parse_owner(str(link.get("ifalias", "")))
    for table in _tables(run):
        index = index_of_table(table)
        if index is not None:
            tables[index] = table
    labs = {
        index: NetworkState(
            tuple(sorted(namespaces.get(index, ()))),
            tuple(sorted(links.get(index, ()))),
            tables.get(index),
        )
        for index in sorted({*namespaces, *links, *tables})
    }
    return HostNetwork(labs, owners)


def remove_network(
    slot: Slot, run: Runner = host_runner, *, settle: float = SETTLE_SECONDS
) -> NetworkState:
    """Delete lab ``slot``'s namespaces, links and firewall table; return what was there.

    Deleting a namespace destroys the veth ends inside it and, a moment later, their
    peers on the bridges; what is left (bridges, stray peers) is deleted by name. A piece
    that is gone by the time its turn comes counts as removed; LabError, naming the
    piece, only for one still there after its removal failed, or for anything of the
    network still there ``settle`` seconds later.
    """
    found = scan_network(run).of(slot)
    for name in found.namespaces:
        remove(
            run,
            ["ip", "netns", "delete", name],
            f"network namespace {name}",
            partial(_namespace_present, run, name),
        )
    # Veths before bridges, so no bridge goes while its ports are being deleted.
    bridges = (slot.site_bridge, slot.ext_bridge)
    for name in sorted(scan_network(run).of(slot).links, key=lambda n: n in bridges):
        remove(
            run, ["ip", "link", "delete", name], f"link {name}", partial(_link_present, run, name)
        )
    if found.firewall is not None:
        remove(
            run,
            ["nft", "delete", "table", "inet", found.firewall],
            f"nft table inet {found.firewall}",
            partial(_table_present, run, found.firewall),
        )
    if not wait_until(lambda: scan_network(run).of(slot).empty, timeout=settle, interval=0.2):
        after = scan_network(run).of(slot)
        raise LabError(
            f"the network of lab number {slot.index} is still partly there {settle:.0f} s "
            f"after removing it: {', '.join(after.pieces)}",
            hint="delete what is listed by hand (`ip netns delete`, `ip link delete`, "
            "`nft delete table inet …`), then run `appliance lab down` again",
        )
    return found


def _bridge(run: Runner, name: str, address: str | None, alias: str) -> None:
    run(["ip", "link", "add", name, "type", "bridge"]).check()
    run(["ip", "link", "set", name, "alias", alias]).check()
    # IPv6 would give the workstation a link-local address on the outside bridge.
    _disable_ipv6(name)
    if address:
        run(["ip", "address", "add", address, "dev", name]).check()
    run(["ip", "link", "set", name, "up"]).check()


def add_site_host(
    namespace: str, veth: str, bridge: str, address: str, run: Runner = host_runner
) -> None:
    """A namespace with its eth0 plugged into ``bridge`` at ``address``: a lab machine's
    site leg, or one more workstation (``appliance.lab.workstations``).
    CommandError when a command fails."""
    _namespace(run, namespace)
    _plug(run, namespace, veth, "eth0", bridge)
    _address(run, namespace, "eth0", address)


def _namespace(run: Runner, name: str) -> None:
    run(["ip", "netns", "add", name]).check()
    # A new namespace inherits the host's forwarding; a lab host routes nothing unless a
    # role turns it on. IPv4 only: the site plan has no IPv6.
    run(
        [
            "ip", "netns", "exec", name, "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=0",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]
    ).check()  # fmt: skip
    run(["ip", "-n", name, "link", "set", "lo", "up"]).check()


def _plug(run: Runner, namespace: str, veth: str, inside: str, bridge: str) -> None:
    add = ["ip", "link", "add", veth, "type", "veth", "peer", "name", inside, "netns", namespace]
    run(add).check()
    _disable_ipv6(veth)
    run(["ip", "link", "set", veth, "master", bridge, "up"]).check()


def _address(run: Runner, namespace: str, inside: str, address: str) -> None:
    run(
        ["ip", "-n", namespace, "address", "add", f"{address}/{PREFIX_LENGTH}", "dev", inside]
    ).check()
    run(["ip", "-n", namespace, "link", "set", inside, "up"]).check()


def _disable_ipv6(link: str) -> None:
    knob = Path("/proc/sys/net/ipv6/conf") / link / "disable_ipv6"
    if knob.exists():
        knob.write_text("1\n", encoding="utf-8")


def _namespaces(run: Runner) -> list[str]:
    listed = _json(run(["ip", "-json", "netns", "list"]), "network namespaces")
    return [str(entry["name"]) for entry in listed if isinstance(entry, dict) and "name" in entry]


def _namespace_present(run: Runner, name: str) -> bool:
    return name in _namespaces(run)


def _links(run: Runner) -> list[dict[str, object]]:
    listed = _json(run(["ip", "-json", "link", "show"]), "links")
    return [link for link in listed if isinstance(link, dict)]


def _link_present(run: Runner, name: str) -> bool:
    return any(link.get("ifname") == name for link in _links(run))


def _tables(run: Runner) -> list[str]:
    listed = _json(run(["nft", "-j", "list", "tables"]), "nftables tables")
    found = []
    for entry in listed:
        table = entry.get("table") if isinstance(entry, dict) else None
        if isinstance(table, dict) and table.get("family") == "inet":
            found.append(str(table.get("name", "")))
    return found


def _table_present(run: Runner, name: str) -> bool:
    return name in _tables(run)


def _json(done: Completed, what: str) -> list[object]:
    """The list a listing command printed as JSON (nft wraps it in {"nftables": [...]})."""
    if not done.ok:
        raise LabError(
            f"cannot list the host's {what}: `{' '.join(done.argv)}` exited with status "
            f"{done.returncode}: {done.output.strip()}",
            hint="the lab needs root, iproute2 and nftables (`make setup`)",
        )
    try:
        parsed = json.loads(done.output or "[]")
    except ValueError as exc:
        raise LabError(
            f"expected JSON from `{' '.join(done.argv)}`, found: {done.output.strip()[:200]}"
        ) from exc
    if isinstance(parsed, dict):
        parsed = parsed.get("nftables", [])
    return list(parsed) if isinstance(parsed, list) else []
