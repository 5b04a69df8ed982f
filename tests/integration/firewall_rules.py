"""The firewall role's ruleset rendered as Ansible would (minus Ansible) and loaded into a
test namespace, so the integration tier runs the very rules the appliance installs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).resolve().parents[2] / "roles/firewall/templates/firewall.nft.j2"


def load_appliance_firewall(
    nft: Sequence[str],
    *,
    site_networks: Sequence[str],
    vendor_interfaces: Sequence[str] = (),
    vendor_ports: Sequence[int] = (),
    edge_ports: Sequence[int] = (),
    overlay_peers: Sequence[str] = (),
) -> None:
    """Render the role's template with these inputs and load it with ``nft``."""
    # An nft ruleset, not HTML: nothing to escape.
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    environment.filters["to_json"] = json.dumps
    rules = environment.from_string(TEMPLATE.read_text()).render(
        ansible_managed="test",
        firewall_ssh_from=["192.0.2.1"],
        firewall_site_networks=list(site_networks),
        firewall_edge_ports=list(edge_ports),
        firewall_overlay_peers=list(overlay_peers),
        firewall_vendor_interfaces=list(vendor_interfaces),
        firewall_vendor_ports=list(vendor_ports),
    )
    subprocess.run((*nft, "-f", "-"), input=rules, text=True, check=True)
