"""The kernel's half of fail-closed: an nftables gate on the vendor access path.

The vendor reaches the site only through the vendor access router's edge listener. The gate
lets packets to and from that listener through only while a window is open, by two
conditions that both live in the kernel and need no appliance process:

* ``meta time < END``: the window's wall-clock end, in seconds since the epoch;
* ``tcp dport @open``: the ports are elements of a set with a timeout. Element timeouts run
  on the kernel's own timer, not the wall clock, so setting the clock back does not keep
  the gate open.

A packet the gate lets in carries a mark (``PASSED_MARK``, one bit of the packet mark); the
appliance's firewall opens the vendor leg only to marked packets, so before the reaper has
first set the gate (or with the gate's table deleted) the vendor leg is shut, not open.

Once either condition fails, every packet from the vendor is answered with a TCP reset and
every packet to the vendor but a reset is dropped, so an established connection dies on
its next packet. The table is replaced atomically (declared, deleted, declared in one transaction);
the appliance's own firewall table is not touched. Without any window, the gate is closed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.errors import ApplianceError

__all__ = [
    "PASSED_MARK",
    "TABLE",
    "GateConfig",
    "GateError",
    "GateState",
    "apply_gate",
    "render_gate",
]

TABLE = "appliance_breakglass"
#: The bit the gate sets on a vendor packet it lets in; the firewall role's vendor rule
#: (roles/firewall/templates/firewall.nft.j2) accepts only packets carrying it.
PASSED_MARK = 0x00100000


class GateError(ApplianceError):
    """The gate's rules could not be written."""


@dataclass(frozen=True)
class GateConfig:
    """Where the gate sits: the vendor-facing interfaces and the edge listener's ports."""

    interfaces: tuple[str, ...]
    ports: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.interfaces or not self.ports:
            raise GateError("the break-glass gate needs at least one interface and one port")
        for name in self.interfaces:
            if not name or len(name) > 15 or not all(c.isalnum() or c in "-_." for c in name):
                raise GateError(f"interface name {name!r} is not a Linux interface name")
        for port in self.ports:
            if not 1 <= port <= 65535:
                raise GateError(f"port {port} is not a TCP port")


@dataclass(frozen=True)
class GateState:
    """Open until ``until`` (wall clock) and for at most ``seconds`` more; closed if None."""

    until: datetime | None = None
    seconds: float = 0.0

    @property
    def open(self) -> bool:
        """Whether the gate lets the vendor in at all."""
        return self.until is not None and self.seconds > 0


def render_gate(config: GateConfig, state: GateState) -> str:
    """The nft script that puts the gate in ``state``."""
    ifaces = ", ".join(f'"{i}"' for i in config.interfaces)
    ports = ", ".join(str(p) for p in config.ports)
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "\tset open {",
        "\t\ttype inet_service; flags timeout;",
    ]
    if state.open and state.until is not None:
        # Whole milliseconds, rounded down: the gate never outlives the window.
        millis = max(1, math.floor(state.seconds * 1000))
        elements = ", ".join(f"{p} timeout {millis}ms" for p in config.ports)
        lines.append(f"\t\telements = {{ {elements} }}")
    lines.append("\t}")
    for chain, hook, match, end in (
        ("vendor_in", "input", "iifname", "reject with tcp reset"),
        ("vendor_out", "output", "oifname", "drop"),
    ):
        port = "dport" if hook == "input" else "sport"
        lines += [
            f"\tchain {chain} {{",
            f"\t\ttype filter hook {hook} priority filter - 10; policy accept;",
        ]
        if state.open and state.until is not None:
            lines.append(
                f"\t\t{match} {{ {ifaces} }} tcp {port} {{ {ports} }} "
                f"meta time < {math.floor(state.until.timestamp())} tcp {port} @open "
                + (f"meta mark set meta mark or {PASSED_MARK:#010x} " if hook == "input" else "")
                + "accept"
            )
        if hook == "output":
            # The resets the input chain sends back leave through here: let them go, or the
            # vendor's side would hang until its own timeout instead of failing at once.
            lines.append(
                f"\t\t{match} {{ {ifaces} }} tcp {port} {{ {ports} }} tcp flags rst accept"
            )
        lines += [f"\t\t{match} {{ {ifaces} }} tcp {port} {{ {ports} }} counter {end}", "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply_gate(config: GateConfig, state: GateState, *, nft: Sequence[str] = ("nft",)) -> None:
    """Load the gate's rules in one nft transaction (``nft`` may be prefixed, e.g. by
    ``ip netns exec``)."""
    if shutil.which(nft[0]) is None:
        raise GateError(
            f"{nft[0]} is not installed: the break-glass gate cannot be set",
            hint="install nftables on the vendor access host (the firewall role does)",
        )
    try:
        done = subprocess.run(
            [*nft, "-f", "-"],
            input=render_gate(config, state),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GateError("nft did not finish within 30 s while setting the gate") from exc
    if done.returncode != 0:
        raise GateError(
            f"nft refused the break-glass gate: {done.stderr.strip()[:500]}",
            hint="the gate needs CAP_NET_ADMIN (the reaper's unit grants it)",
        )
