"""The lab's address plan: which lab, which machines, which namespaces, links and addresses.

Pure data, no I/O: everything else in ``appliance.lab`` (network, machines, inventory)
derives its names and addresses from one ``LabPlan``, so they can never disagree.

Several labs can be up on one host side by side (the demo's ``default`` beside the test
tier's ``test``). Each holds a number k from 0 to 9 on the host, and every name and
address that is global to the host derives from that number, so no two labs share one:

Name prefix                            ``apl-`` (k = 0), ``apl<k>-`` (``apl1-`` … ``apl9-``)
Site network (the customer's LAN)      10.231.(2k).0/24 on bridge ``<prefix>site0``
    the workstation (installer)        10.231.(2k).1   (address of the bridge itself)
    machine number i (0-based)         10.231.(2k).(10+i), interface eth0
Outside network (the vendor's side)    10.231.(2k+1).0/24 on bridge ``<prefix>ext0``
    gateway host number j (0-based)    10.231.(2k+1).(2+j), interface eth1
    the vendor access host             10.231.(2k+1).9, interface eth1: the first controller,
                                       where the admin service's reaper keeps the gate
    the vendor                         10.231.(2k+1).10, namespace ``<prefix>vendor``,
                                       routed to the access host's site address through
                                       the access host's outside leg
Firewall table                         ``inet appliance_lab`` (k = 0), ``inet appliance_lab<k>``

The ``default`` lab always holds number 0, so the demo's addresses never change; another
lab takes the lowest number free when it comes up (``appliance.lab.labs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.errors import LabError

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_LAB",
    "MAX_LABS",
    "LabPlan",
    "Machine",
    "Slot",
    "Vendor",
    "check_lab_name",
    "group_of",
    "index_of_link",
    "index_of_table",
    "plan_lab",
]

DEFAULT_HOSTS = ("ctrl1", "gw1", "gpu1")
#: The demo's lab (``make demo``, ``appliance lab up`` without a name): always number 0.
DEFAULT_LAB = "default"
#: Labs one host can hold at once: numbers 0 to 9 (one digit in every link name).
MAX_LABS = 10
PREFIX_LENGTH = 24

#: Every network namespace and link a lab makes starts with its prefix, and nothing else
#: on the host may: it is how `lab down` finds what a killed `lab up` left behind.
_LAB_LINK = re.compile(r"^apl([1-9]?)-")
_LAB_TABLE = re.compile(r"^appliance_lab([1-9]?)$")
_FIRST_SITE_HOST = 10
_FIRST_OUTSIDE_HOST = 2
_VENDOR_ACCESS_HOST = 9
_VENDOR_HOST = 10
# Outside addresses .2 up to .8: .9 is the vendor access host's, .10 the vendor's.
_MAX_GATEWAYS = 7
_MAX_MACHINES = 200
# "apl9-s-" + name must fit Linux's 15-character interface names.
_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_RESERVED_HOSTS = {"vendor", "site0", "ext0"}
# A lab's name is on its bridge's alias and names its default state directory, which sits
# beside the cached root filesystems (<cache>/lab/rootfs).
_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_RESERVED_LABS = {"rootfs"}

#: Inventory group of each name prefix; a name matching none goes to "other".
_GROUP_PREFIXES = (("ctrl", "controller"), ("gw", "gateway"), ("gpu", "gpu"))


@dataclass(frozen=True)
class Slot:
    """A lab's number on the host and every global name and address it gives the lab."""

    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_LABS:
            raise LabError(f"lab number {self.index} is out of range: expected 0 to {MAX_LABS - 1}")

    @property
    def prefix(self) -> str:
        """Start of every namespace and link name of this lab."""
        return "apl-" if self.index == 0 else f"apl{self.index}-"

    @property
    def site_bridge(self) -> str:
        """The site LAN's bridge; the workstation's address is on it."""
        return f"{self.prefix}site0"

    @property
    def ext_bridge(self) -> str:
        """The outside network's bridge (no address on the workstation)."""
        return f"{self.prefix}ext0"

    @property
    def nft_table(self) -> str:
        """Name of the lab's own table (family ``inet``) in the workstation's firewall."""
        return "appliance_lab" if self.index == 0 else f"appliance_lab{self.index}"

    @property
    def site_network(self) -> str:
        """The site LAN, CIDR."""
        return f"{self._site_base}0/{PREFIX_LENGTH}"

    @property
    def outside_network(self) -> str:
        """The outside network, CIDR."""
        return f"{self._outside_base}0/{PREFIX_LENGTH}"

    @property
    def installer_address(self) -> str:
        """The workstation's address on the site LAN."""
        return f"{self._site_base}1"

    @property
    def vendor_address(self) -> str:
        """The vendor's address on the outside network."""
        return f"{self._outside_base}{_VENDOR_HOST}"

    @property
    def vendor_access_address(self) -> str:
        """The vendor access host's address on the outside network."""
        return f"{self._outside_base}{_VENDOR_ACCESS_HOST}"

    def site_address(self, number: int) -> str:
        """Site address of machine ``number`` (0-based, in host order)."""
        return f"{self._site_base}{_FIRST_SITE_HOST + number}"

    def outside_address(self, number: int) -> str:
        """Outside address of gateway host ``number`` (0-based, among gateways)."""
        return f"{self._outside_base}{_FIRST_OUTSIDE_HOST + number}"

    @property
    def _site_base(self) -> str:
        return f"10.231.{2 * self.index}."

    @property
    def _outside_base(self) -> str:
        return f"10.231.{2 * self.index + 1}."


@dataclass(frozen=True)
class Machine:
    """One lab host: an nspawn machine in its own network namespace."""

    name: str
    group: str
    site_address: str
    #: The second leg on the outside bridge (eth1): gateway hosts and the vendor access host.
    outside_address: str | None
    #: The lab's name prefix (``Slot.prefix``).
    prefix: str = "apl-"

    @property
    def namespace(self) -> str:
        """Name of the machine's network namespace (``ip netns``); also its nspawn name."""
        return f"{self.prefix}{self.name}"

    @property
    def site_veth(self) -> str:
        """Root-namespace end of the veth pair whose other end is the machine's eth0."""
        return f"{self.prefix}s-{self.name}"

    @property
    def outside_veth(self) -> str:
        """Root-namespace end of the veth pair whose other end is the machine's eth1."""
        return f"{self.prefix}x-{self.name}"


@dataclass(frozen=True)
class Vendor:
    """The vendor's engineers: a bare namespace outside the site, on the outside bridge."""

    namespace: str
    address: str
    veth: str


@dataclass(frozen=True)
class LabPlan:
    """All machines and the vendor, with every name and address the lab uses."""

    machines: tuple[Machine, ...]
    slot: Slot = Slot(0)

    @property
    def vendor(self) -> Vendor:
        """The vendor's namespace, address and link."""
        prefix = self.slot.prefix
        return Vendor(f"{prefix}vendor", self.slot.vendor_address, f"{prefix}x-vendor")

    @property
    def vendor_access(self) -> Machine | None:
        """The vendor access host: the first controller (the admin service's host, where the
        break-glass reaper keeps its gate), with a leg on the outside network; None if the
        lab has no controller (or was made before controllers had that leg)."""
        first = next((m for m in self.machines if m.group == "controller"), None)
        return first if first is not None and first.outside_address else None

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


def index_of_link(name: str) -> int | None:
    """The lab number a namespace or link name belongs to; None if it is no lab's."""
    found = _LAB_LINK.match(name)
    return None if found is None else int(found.group(1) or 0)


def index_of_table(name: str) -> int | None:
    """The lab number an ``inet`` table name belongs to; None if it is no lab's."""
    found = _LAB_TABLE.match(name)
    return None if found is None else int(found.group(1) or 0)


def check_lab_name(name: str) -> str:
    """Return ``name`` if it can name a lab; LabError saying what a name must be if not."""
    if not _LAB_NAME.match(name) or name in _RESERVED_LABS:
        raise LabError(
            f"{name!r} cannot name a lab: expected a lowercase letter then up to 15 lowercase "
            f"letters, digits or dashes, and not one of {sorted(_RESERVED_LABS)}",
            hint=f"name labs like {DEFAULT_LAB}, test, mine2",
        )
    return name


def plan_lab(hosts: list[str] | tuple[str, ...], index: int = 0) -> LabPlan:
    """Give each named host its namespace and addresses in lab number ``index``.

    LabError for a bad list of names.
    """
    slot = Slot(index)
    if not hosts:
        raise LabError("the lab needs at least one host", hint="e.g. --hosts ctrl1,gw1,gpu1")
    seen: set[str] = set()
    for name in hosts:
        if not _HOST_NAME.match(name) or name in _RESERVED_HOSTS:
            raise LabError(
                f"{name!r} cannot name a lab host: expected a lowercase letter then up to 7 "
                f"lowercase letters or digits, and not one of {sorted(_RESERVED_HOSTS)}",
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
    controllers = [n for n in hosts if group_of(n) == "controller"]
    machines = []
    for number, name in enumerate(hosts):
        group = group_of(name)
        outside = None
        if group == "gateway":
            outside = slot.outside_address(gateways.index(name))
        elif controllers and name == controllers[0]:
            outside = slot.vendor_access_address
        machines.append(Machine(name, group, slot.site_address(number), outside, slot.prefix))
    return LabPlan(tuple(machines), slot)
