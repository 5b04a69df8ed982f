"""The lab's network: namespaces, veth pairs, two bridges and a firewall table of our own.

Root namespace (the workstation)
    apl-site0  bridge, 10.231.0.1/24: the site LAN; each machine's eth0 plugs in here
    apl-ext0   bridge, no address: the outside; gateway hosts' eth1 and the vendor
Each machine NAME: namespace apl-NAME, eth0 (and eth1 for gateways), loopback, no
default route, no IP forwarding, no IPv6. The vendor: namespace apl-vendor, 10.231.1.10.

"No route out" is enforced twice. No lab namespace has a default route, so a packet to
anything off its own /24 has nowhere to go. And should a host add one, the root
namespace's ``inet appliance_lab`` table drops whatever the lab bridges would have it
forward, and whatever a host sends to the workstation's addresses other than
10.231.0.1. The table is ours alone: made and deleted whole, never the host's ruleset.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance._process import run
from appliance.errors import LabError
from appliance.lab.plan import (
    EXT_BRIDGE,
    INSTALLER_ADDRESS,
    LINK_PREFIX,
    PREFIX_LENGTH,
    SITE_BRIDGE,
    LabPlan,
)

__all__ = [
    "NFT_TABLE",
    "NetworkState",
    "create_network",
    "firewall_rules",
    "network_owner",
    "network_state",
    "remove_network",
]

NFT_TABLE = "appliance_lab"
NETNS_DIR = Path("/run/netns")
# The bridge's interface alias names the state directory that made the lab: network
# names are global to the host, so this is where "whose lab is this" has to live.
_OWNER_TAG = "appliance-lab:"


@dataclass(frozen=True)
class NetworkState:
    """What of the lab's network exists on the host right now."""

    namespaces: tuple[str, ...]
    links: tuple[str, ...]
    firewall: bool

    @property
    def empty(self) -> bool:
        """True when nothing of any lab is left on the host."""
        return not self.namespaces and not self.links and not self.firewall


def firewall_rules() -> str:
    """The ``inet appliance_lab`` table, as an nft script that replaces any older copy."""
    bridges = f'{{ "{SITE_BRIDGE}", "{EXT_BRIDGE}" }}'
    # With br_netfilter loaded, frames bridged between two machines pass the forward hook
    # with the bridge as both in and out interface: that is the LAN itself, keep it.
    return f"""\
add table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{SITE_BRIDGE}" oifname "{SITE_BRIDGE}" accept
        iifname "{EXT_BRIDGE}" oifname "{EXT_BRIDGE}" accept
        iifname {bridges} drop
        oifname {bridges} drop
    }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{EXT_BRIDGE}" drop
        iifname "{SITE_BRIDGE}" ip daddr != {INSTALLER_ADDRESS} drop
        iifname "{SITE_BRIDGE}" meta nfproto ipv6 drop
    }}
}}
"""


def create_network(plan: LabPlan, owner: Path) -> None:
    """Make bridges, firewall table, namespaces and links for ``plan``; owned by ``owner``."""
    tag = f"{_OWNER_TAG}{owner}"
    if len(tag) > 250:
        raise LabError(
            f"the state directory path {owner} is too long to record on the lab bridge",
            hint="use a shorter --state path",
        )
    _bridge(SITE_BRIDGE, address=f"{INSTALLER_ADDRESS}/{PREFIX_LENGTH}", alias=tag)
    _bridge(EXT_BRIDGE, address=None, alias=tag)
    run(["nft", "-f", "-"], input_text=firewall_rules())
    for machine in plan.machines:
        _namespace(machine.namespace)
        _plug(machine.namespace, machine.site_veth, "eth0", SITE_BRIDGE, machine.site_address)
        if machine.outside_address:
            _plug(
                machine.namespace,
                machine.outside_veth,
                "eth1",
                EXT_BRIDGE,
                machine.outside_address,
            )
    vendor = plan.vendor
    _namespace(vendor.namespace)
    _plug(vendor.namespace, vendor.veth, "eth0", EXT_BRIDGE, vendor.address)


def network_owner() -> str | None:
    """The state directory recorded on the site bridge, or None if there is no bridge."""
    found = _links_json(SITE_BRIDGE)
    if not found:
        return None
    alias = str(found[0].get("ifalias", ""))
    return alias.removeprefix(_OWNER_TAG) if alias.startswith(_OWNER_TAG) else ""


def network_state() -> NetworkState:
    """List every lab namespace, link and the firewall table present on the host."""
    namespaces = tuple(sorted(p.name for p in _netns_entries() if p.name.startswith(LINK_PREFIX)))
    links = tuple(
        sorted(
            str(link["ifname"])
            for link in _links_json(None)
            if str(link.get("ifname", "")).startswith(LINK_PREFIX)
        )
    )
    return NetworkState(namespaces, links, _firewall_present())


def remove_network() -> NetworkState:
    """Delete every lab namespace, link and the firewall table; return what was there.

    Deleting a namespace destroys the veth ends inside it and with them their peers on the
    bridges; what is left (bridges, stray peers) is deleted by name.
    """
    before = network_state()
    for name in before.namespaces:
        run(["ip", "netns", "delete", name])
    for name in network_state().links:
        # Bridge ports first vanish with their bridge's peers; tolerate links gone meanwhile.
        if _links_json(name):
            run(["ip", "link", "delete", name])
    if before.firewall:
        run(["nft", "delete", "table", "inet", NFT_TABLE])
    after = network_state()
    if not after.empty:
        raise LabError(
            f"the lab network is still partly there after removing it: {after}",
            hint="delete what is listed by hand (`ip netns delete`, `ip link delete`, "
            f"`nft delete table inet {NFT_TABLE}`)",
        )
    return before


def _bridge(name: str, *, address: str | None, alias: str) -> None:
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "link", "set", name, "alias", alias])
    # IPv6 would give the workstation a link-local address on the outside bridge.
    _disable_ipv6(name)
    if address:
        run(["ip", "address", "add", address, "dev", name])
    run(["ip", "link", "set", name, "up"])


def _namespace(name: str) -> None:
    run(["ip", "netns", "add", name])
    # A new namespace inherits the host's forwarding; a lab host routes nothing unless a
    # role turns it on. IPv4 only: the site plan has no IPv6.
    run(
        [
            "ip", "netns", "exec", name, "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=0",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]
    )  # fmt: skip
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def _plug(namespace: str, veth: str, inside: str, bridge: str, address: str) -> None:
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", inside, "netns", namespace])
    _disable_ipv6(veth)
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", namespace, "address", "add", f"{address}/{PREFIX_LENGTH}", "dev", inside])
    run(["ip", "-n", namespace, "link", "set", inside, "up"])


def _disable_ipv6(link: str) -> None:
    knob = Path("/proc/sys/net/ipv6/conf") / link / "disable_ipv6"
    if knob.exists():
        knob.write_text("1\n", encoding="utf-8")


def _netns_entries() -> list[Path]:
    return sorted(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def _links_json(name: str | None) -> list[dict[str, object]]:
    argv = ["ip", "-json", "link", "show"] + ([name] if name else [])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if name is not None:  # "Device does not exist"
            return []
        raise LabError(
            f"`ip link show` failed: {done.stderr.strip()}", hint="is iproute2 installed?"
        )
    parsed = json.loads(done.stdout or "[]")
    return [link for link in parsed if isinstance(link, dict)]


def _firewall_present() -> bool:
    done = subprocess.run(
        ["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True, check=False
    )
    return done.returncode == 0
