"""Where components run and which loopback ports they take (appliance/install/placement.py),
and that the roles' defaults say the same."""

from __future__ import annotations

from pathlib import Path

import yaml

from appliance.install import placement

REPO = Path(__file__).resolve().parents[2]


def test_a_gateway_host_receives_the_admin_image_for_its_access_proxy() -> None:
    # Issue 24: the access proxy runs on each gateway host from the admin image.
    assert placement.components_for(["gateway"]) == [
        "ziti-router",
        "llm-gateway",
        "appliance-admin",
    ]
    # The image only: the admin service's unit and port stay group admin's.
    assert "appliance-admin" not in placement.ports_for(["gateway"])
    assert placement.ports_for(["admin"]) == {"appliance-admin": 8443}


def test_the_gateway_hosts_loopback_ports() -> None:
    assert placement.PORTS["gateway"] == {
        "appliance-access": 8080,
        "appliance-llm-gateway-a": 8081,
        "appliance-llm-gateway-b": 8083,
        "appliance-llm-gateway-backend": 18000,
    }
    assert placement.loopback_ports_for(["gateway"]) == {
        8080: "appliance-access",
        8081: "appliance-llm-gateway-a",
        8082: "appliance-access",
        8083: "appliance-llm-gateway-b",
        8443: "appliance-llm-gateway-backend",
        18000: "appliance-llm-gateway-backend",
    }


def test_on_a_host_that_is_admin_and_gateway_8443_is_the_admin_services_own() -> None:
    ports = placement.loopback_ports_for(["gateway", "admin"])
    assert ports[8443] == "appliance-admin"
    assert ports[8082] == "appliance-access"


def test_the_access_proxys_state_is_snapshotted_and_its_unit_stopped_for_it() -> None:
    assert {"etc/appliance-access", "var/lib/appliance-access"} <= set(placement.SNAPSHOT_PATHS)
    assert "appliance-access.service" in placement.STATEFUL_UNITS
    assert "appliance-access.service" in placement.service_units()


def test_the_llm_gateway_roles_defaults_agree_with_the_placement() -> None:
    defaults = yaml.safe_load((REPO / "roles/llm_gateway/defaults/main.yml").read_text())
    second = {unit: port for port, unit in placement.SECOND_PORTS["gateway"].items()}
    assert defaults["llm_gateway_access_port"] == placement.PORTS["gateway"]["appliance-access"]
    assert {slot["name"]: slot["port"] for slot in defaults["llm_gateway_slots"]} == {
        "a": placement.PORTS["gateway"]["appliance-llm-gateway-a"],
        "b": placement.PORTS["gateway"]["appliance-llm-gateway-b"],
    }
    assert (
        defaults["llm_gateway_backend_port"]
        == placement.PORTS["gateway"]["appliance-llm-gateway-backend"]
    )
    assert defaults["llm_gateway_access_backend_port"] == second["appliance-access"]
    assert defaults["llm_gateway_admin_port"] == second["appliance-llm-gateway-backend"]
    assert defaults["llm_gateway_admin_port"] == placement.PORTS["admin"]["appliance-admin"]
