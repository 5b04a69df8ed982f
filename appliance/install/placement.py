"""Which components run on which inventory group, and the loopback ports they take.

The one place that says so: the installer hands it to the site playbook as variables,
and preflight uses it to size each host's disk and check its ports.
"""

from __future__ import annotations

__all__ = [
    "EDGE_COMPONENT",
    "EDGE_PORTS",
    "GROUPS",
    "ON_DEMAND_UNITS",
    "PLACEMENT",
    "PORTS",
    "SECOND_PORTS",
    "SNAPSHOT_PATHS",
    "STATEFUL_UNITS",
    "components_for",
    "edge_ports_for",
    "loopback_ports_for",
    "ports_for",
    "service_units",
]

#: Inventory groups a site inventory may use (DESIGN.md "The lab" names the lab's hosts).
GROUPS = ("controller", "gateway", "gpu", "admin", "vendor_access")

#: Components each group receives; a component missing from the bundle is skipped.
PLACEMENT: dict[str, tuple[str, ...]] = {
    "controller": ("ziti-controller",),
    # The gateway host's access proxy (keys, limits, usage: ADR 0016) runs from the admin
    # image: it receives the image, not the admin service (that is group admin's).
    "gateway": ("ziti-router", "llm-gateway", "appliance-admin"),
    "gpu": ("ziti-router", "vllm", "tiny-model"),
    # The admin host's private router offers the admin service to remote admins.
    "admin": ("appliance-admin", "ziti-router"),
    # The admin host again: a second router, the vendor's way in during break-glass windows.
    "vendor_access": ("ziti-router",),
}

#: Loopback ports the appliance's own systemd units bind on a host of the group: one per
#: unit, the one the installer hands to the roles (a unit's further ports: SECOND_PORTS).
PORTS: dict[str, dict[str, int]] = {
    "controller": {"appliance-ziti-controller": 1281},  # the management API
    "gateway": {
        # The access proxy's front: the llm-gateway overlay service's target (ADR 0016).
        "appliance-access": 8080,
        # llm-gateway's two slots that take turns (ADR 0017): only the access proxy calls them.
        "appliance-llm-gateway-a": 8081,
        "appliance-llm-gateway-b": 8083,
        "appliance-llm-gateway-backend": 18000,  # the loopback ziti proxy to vLLM
    },
    "gpu": {"appliance-vllm": 8000},
    "admin": {"appliance-admin": 8443},
}

#: Further loopback ports of units that PORTS names, port → unit (the roles' defaults
#: agree, tests/unit/test_install_placement.py): the access proxy's backend listener, which
#: is llm-gateway's provider URL, and the backend ziti proxy's listener for the admin
#: service's overlay service (its proxy.v1 port), through which the access proxy fetches
#: its policy. A host of group admin has the admin service itself on 8443 instead.
SECOND_PORTS: dict[str, dict[int, str]] = {
    "gateway": {8082: "appliance-access", 8443: "appliance-llm-gateway-backend"},
}

#: The overlay's edge listeners by group: the only ports, besides SSH from the installer,
#: that the firewall opens (to the site network) and the health check allows beyond
#: loopback. The controller's one port carries the routers' control plane and the
#: clients' API (TLS, told apart by ALPN); the gateway host's public router takes clients
#: and the other routers' links on its one port. Private routers listen on loopback only.
EDGE_PORTS: dict[str, tuple[int, ...]] = {
    "controller": (1280,),
    "gateway": (3022,),
    # On the vendor-facing leg only, behind the break-glass gate (never to the site).
    "vendor_access": (3023,),
}

#: The component whose presence in a bundle makes each group's edge ports real.
EDGE_COMPONENT = {
    "controller": "ziti-controller",
    "gateway": "ziti-router",
    "vendor_access": "ziti-router",
}


#: What an upgrade saves on every host before it changes anything, and a rollback puts
#: back (relative to /): configuration, databases and the appliance's unit files. Images
#: and model weights are kept by version on the hosts and are not copied.
SNAPSHOT_PATHS = (
    "etc/appliance",
    "etc/appliance-admin",
    "var/lib/appliance-admin",
    "etc/ziti-controller",
    "var/lib/ziti-controller",  # PKI, raft database, event log
    "etc/ziti-router*",  # the host's router and, on the admin host, the vendor access router
    "var/lib/ziti-router*",
    "etc/llm-gateway",
    "etc/appliance-access",  # the gateway host's access proxy: its config and secrets
    "var/lib/appliance-access",  # its usage journal and last known policy
    "etc/systemd/system/appliance-*.service",
)

#: Units that write databases: stopped while a snapshot is taken.
STATEFUL_UNITS = (
    "appliance-access.service",  # its usage journal
    "appliance-admin.service",
    "appliance-breakglass-reaper.service",
    "appliance-ziti-controller.service",
)

#: Units that PORTS does not name (no loopback port of their own to check).
PORTLESS_UNITS = (
    "appliance-breakglass-reaper.service",
    "appliance-ziti-router.service",
    "appliance-ziti-router-vendor.service",
)


#: Units that run only on demand, so "inactive" is their rest: the llm-gateway slots start
#: when the access proxy first writes their file, and the one-shots that restart a slot
#: run only then (ADR 0017). "failed" is a failure for them as for any unit.
ON_DEMAND_UNITS = (
    "appliance-llm-gateway-a.service",
    "appliance-llm-gateway-b.service",
    "appliance-llm-gateway-a-restart.service",
    "appliance-llm-gateway-b-restart.service",
)


def service_units() -> list[str]:
    """Every unit of the appliance that runs a component (not the firewall)."""
    return sorted(
        {f"{unit}.service" for ports in PORTS.values() for unit in ports} | set(PORTLESS_UNITS)
    )


def edge_ports_for(groups: list[str]) -> list[int]:
    """Edge listener ports a host in ``groups`` opens, sorted."""
    return sorted({port for group in groups for port in EDGE_PORTS.get(group, ())})


def components_for(groups: list[str]) -> list[str]:
    """Every component a host in ``groups`` receives, in a stable order."""
    found: list[str] = []
    for group in GROUPS:
        if group in groups:
            found += [c for c in PLACEMENT[group] if c not in found]
    return found


def ports_for(groups: list[str]) -> dict[str, int]:
    """Unit → loopback port for a host in ``groups`` (each unit's port of PORTS)."""
    ports: dict[str, int] = {}
    for group in groups:
        ports.update(PORTS.get(group, {}))
    return ports


def loopback_ports_for(groups: list[str]) -> dict[int, str]:
    """Every loopback port the appliance's units bind on a host in ``groups`` → its unit.

    A port of PORTS wins over the same port in SECOND_PORTS: on a host that is both the
    admin and a gateway host, 8443 is the admin service's own.
    """
    ports = {port: unit for unit, port in ports_for(groups).items()}
    for group in groups:
        for port, unit in SECOND_PORTS.get(group, {}).items():
            ports.setdefault(port, unit)
    return dict(sorted(ports.items()))
