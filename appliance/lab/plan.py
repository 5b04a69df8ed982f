"""The lab's address plan: which machines, which namespaces, links and addresses.

Pure data, no I/O: everything else in ``appliance.lab`` (network, machines, inventory)
derives its names and addresses from one ``LabPlan``, so they can never disagree.

Site network (the customer's LAN)      10.231.0.0/24 on bridge ``apl-site0``
    the workstation (installer)        10.231.0.1   (address of the bridge itself)
    machine number i (0-based)         10.231.0.(10+i), interface eth0
Outside network (the vendor's side)    10.231.1.0/24 on bridge ``apl-ext0`` (no address)
    gateway host number j (0-based)    10.231.1.(2+j), interface eth1
    the vendor                         10.231.1.10, namespace ``apl-vendor``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.errors import LabError

__all__ = [
    "DEFAULT_HOSTS",
    "EXT_BRIDGE",
    "INSTALLER_ADDRESS",
    "LINK_PREFIX",
    "OUTSIDE_NETWORK",
    "SITE_BRIDGE",
    "SITE_NETWORK",
    "VENDOR_ADDRESS",
    "LabPlan",
    "Machine",
    "Vendor",
    "group_of",
    "plan_lab",
]

DEFAULT_HOSTS = ("ctrl1", "gw1", "gpu1")

#: Every network namespace and every link the lab makes starts with this, and nothing else
#: on the host may: it is how `lab down` finds what a killed `lab up` left behind.
LINK_PREFIX = "apl-"
SITE_BRIDGE = "apl-site0"
EXT_BRIDGE = "apl-ext0"
SITE_NETWORK = "10.231.0.0/24"
OUTSIDE_NETWORK = "10.231.1.0/24"
INSTALLER_ADDRESS = "10.231.0.1"
VENDOR_ADDRESS = "10.231.1.10"
PREFIX_LENGTH = 24

_SITE_BASE = "10.231.0."
_OUTSIDE_BASE = "10.231.1."
_FIRST_SITE_HOST = 10
_FIRST_OUTSIDE_HOST = 2
# Outside addresses .2 up to .9: .10 is the vendor's.
_MAX_GATEWAYS = 8
_MAX_MACHINES = 200
# "apl-s-" + name must fit Linux's 15-character interface names.
_NAME = re.compile(r"^[a-z][a-z0-9]{0,8}$")
_RESERVED = {"vendor", "site0", "ext0"}

#: Inventory group of each name prefix; a name matching none goes to "other".
_GROUP_PREFIXES = (("ctrl", "controller"), ("gw", "gateway"), ("gpu", "gpu"))


@dataclass(frozen=True)
class Machine:
    """One lab host: an nspawn machine in its own network namespace."""

    name: str
    group: str
    site_address: str
    #: The second leg on the outside bridge, for hosts of the gateway group only.
    outside_address: str | None

    @property
    def namespace(self) -> str:
        """Name of the machine's network namespace (``ip netns``)."""
        return f"{LINK_PREFIX}{self.name}"

    @property
    def site_veth(self) -> str:
        """Root-namespace end of the veth pair whose other end is the machine's eth0."""
        return f"{LINK_PREFIX}s-{self.name}"

    @property
    def outside_veth(self) -> str:
        """Root-namespace end of the veth pair whose other end is the machine's eth1."""
        return f"{LINK_PREFIX}x-{self.name}"


@dataclass(frozen=True)
class Vendor:
    """The vendor's engineers: a bare namespace outside the site, on the outside bridge."""

    namespace: str = f"{LINK_PREFIX}vendor"
    address: str = VENDOR_ADDRESS
    veth: str = f"{LINK_PREFIX}x-vendor"


@dataclass(frozen=True)
class LabPlan:
    """All machines and the vendor, with every name and address the lab uses."""

    machines: tuple[Machine, ...]
    vendor: Vendor = Vendor()

    def machine(self, name: str) -> Machine:
        """The machine called ``name``; LabError if the lab has none."""
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise LabError(
            f"the lab has no machine {name!r} (it has {', '.join(self.names)})",
            hint="use one of the machine names `appliance lab status` lists",
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Machine names in plan order."""
        return tuple(m.name for m in self.machines)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every network namespace of the lab, the vendor's last."""
        return (*(m.namespace for m in self.machines), self.vendor.namespace)


def group_of(name: str) -> str:
    """The inventory group a host name belongs to, by its prefix (``other`` if none)."""
    for prefix, group in _GROUP_PREFIXES:
        if name.startswith(prefix):
            return group
    return "other"


def plan_lab(hosts: list[str] | tuple[str, ...]) -> LabPlan:
    """Give each named host its namespace and addresses; LabError for a bad list of names."""
    if not hosts:
        raise LabError("the lab needs at least one host", hint="e.g. --hosts ctrl1,gw1,gpu1")
    seen: set[str] = set()
    for name in hosts:
        if not _NAME.match(name) or name in _RESERVED:
            raise LabError(
                f"{name!r} cannot name a lab host: expected a lowercase letter then up to 8 "
                f"lowercase letters or digits, and not one of {sorted(_RESERVED)}",
                hint="name hosts like ctrl1, gw1, gpu1",
            )
        if name in seen:
            raise LabError(f"host {name!r} is named twice", hint="name each host once")
        seen.add(name)
    if len(hosts) > _MAX_MACHINES:
        raise LabError(f"{len(hosts)} hosts asked, the lab holds at most {_MAX_MACHINES}")
    gateways = [n for n in hosts if group_of(n) == "gateway"]
    if len(gateways) > _MAX_GATEWAYS:
        raise LabError(
            f"{len(gateways)} gateway hosts asked, the outside network has room for "
            f"{_MAX_GATEWAYS}",
            hint="use fewer gw* hosts",
        )
    machines = []
    for index, name in enumerate(hosts):
        group = group_of(name)
        outside = None
        if group == "gateway":
            outside = f"{_OUTSIDE_BASE}{_FIRST_OUTSIDE_HOST + gateways.index(name)}"
        machines.append(Machine(name, group, f"{_SITE_BASE}{_FIRST_SITE_HOST + index}", outside))
    return LabPlan(tuple(machines))
