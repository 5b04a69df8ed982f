"""The gateway host's units and configurations as the roles render them (issue 24): the
access proxy in front of llm-gateway, llm-gateway's two slots that take turns (ADR 0017),
and the admin service's side of the access policy. Rendered with Ansible's own templating."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"


def _role_vars(role: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        path = ROLES / role / part / "main.yml"
        if path.exists():
            found.update(yaml.safe_load(path.read_text()) or {})
    return found


def render(role: str, template: str, **given: Any) -> str:
    variables = {
        "ansible_managed": "managed",
        "inventory_hostname": "gw1",
        **_role_vars(role),
        **given,
    }
    # Ansible trusts what its roles' variable files say (templates in them are rendered).
    variables = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in variables.items()}
    templar = Templar(loader=DataLoader(), variables=variables)
    source = (ROLES / role / "templates" / template).read_text()
    return str(templar.template(trust_as_template(source)))


GATEWAY: dict[str, Any] = {
    "llm_gateway_image": "localhost/appliance/llm-gateway:0.1.4",
    "llm_gateway_ziti_image": "localhost/appliance/ziti-router:2.1.0",
    "llm_gateway_access_image": "localhost/appliance/appliance-admin:0.2.0",
}


def test_the_access_proxys_config_is_the_one_the_spec_names() -> None:
    digest = hashlib.sha256(b"health-key").hexdigest()
    static = [{"name": "appliance-health", "sha256": digest, "models": ["tiny"]}]
    config = yaml.safe_load(
        render("llm_gateway", "access.yaml.j2", **GATEWAY, llm_gateway_static_keys=static)
    )
    assert config == {
        "listen": "127.0.0.1:8080",
        "backend_listen": "127.0.0.1:8082",
        "gateway_slots": [
            {
                "name": "a",
                "listen": "127.0.0.1:8081",
                "config": "/var/lib/appliance-access/gateway/a/config.yaml",
            },
            {
                "name": "b",
                "listen": "127.0.0.1:8083",
                "config": "/var/lib/appliance-access/gateway/b/config.yaml",
            },
        ],
        "backend_url": "http://127.0.0.1:18000",
        "admin_url": "https://127.0.0.1:8443",
        "admin_ca": "/etc/appliance-access/admin-tls.cert",
        "admin_token_file": "/etc/appliance-access/admin-token",
        "data_dir": "/var/lib/appliance-access",
        "gateway_name": "gw1",
        "static_keys": static,
    }


def _exec_start(unit: str) -> str:
    lines = unit.split("ExecStart=", 1)[1].splitlines()
    command = []
    for line in lines:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command)


def test_the_access_proxy_unit_runs_the_admin_image_after_the_gateway_and_its_proxy() -> None:
    unit = render("llm_gateway", "appliance-access.service.j2", **GATEWAY)
    command = _exec_start(unit)
    assert command.startswith("/usr/bin/podman run --name appliance-access --rm --pull never")
    assert "--network host" in command
    assert "--volume /etc/appliance-access:/etc/appliance-access:ro" in command
    assert "--volume /var/lib/appliance-access:/var/lib/appliance-access " in command
    assert command.endswith(
        "localhost/appliance/appliance-admin:0.2.0 access serve "
        "--config /etc/appliance-access/config.yaml"
    )
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert "appliance-llm-gateway-backend.service" in after.removeprefix("After=").split()
    # Streams in flight may finish when it stops; systemd waits longer than podman does.
    assert "ExecStop=/usr/bin/podman stop --time 30 appliance-access" in unit
    assert "TimeoutStopSec=60" in unit
    assert "Restart=on-failure" in unit


@pytest.mark.parametrize(("admin_proxy", "services"), [(True, 2), (False, 1)])
def test_one_backend_proxy_dials_vllm_and_the_admin_service(
    admin_proxy: bool, services: int
) -> None:
    unit = render(
        "llm_gateway",
        "appliance-llm-gateway-backend.service.j2",
        **GATEWAY,
        llm_gateway_admin_proxy=admin_proxy,
    )
    command = _exec_start(unit)
    wanted = ["vllm:18000", "appliance-admin:8443"][:services]
    assert command.endswith(f"tunnel proxy {' '.join(wanted)} -i /etc/ziti/backend.json")


def test_each_slot_runs_llm_gateway_on_the_file_the_access_proxy_writes() -> None:
    slot = {"name": "b", "port": 8083}
    unit = render("llm_gateway", "appliance-llm-gateway-slot.service.j2", **GATEWAY, slot=slot)
    assert "127.0.0.1:8083" in unit
    # Skipped, not failed, until the access proxy has written its file.
    assert "ConditionPathExists=/var/lib/appliance-access/gateway/b/config.yaml" in unit
    command = _exec_start(unit)
    # The folder is mounted, not the file: a file renamed into place is seen at restart.
    assert "--volume /var/lib/appliance-access/gateway/b:/etc/llm-gateway:ro" in command
    assert command.endswith(
        "localhost/appliance/llm-gateway:0.1.4 run /etc/llm-gateway/config.yaml"
    )


def test_a_slots_new_file_restarts_that_slot_only() -> None:
    slot = {"name": "a", "port": 8081}
    path = render("llm_gateway", "appliance-llm-gateway-slot.path.j2", **GATEWAY, slot=slot)
    assert "PathChanged=/var/lib/appliance-access/gateway/a/config.yaml" in path
    assert "Unit=appliance-llm-gateway-a-restart.service" in path
    restart = render(
        "llm_gateway", "appliance-llm-gateway-slot-restart.service.j2", **GATEWAY, slot=slot
    )
    assert "ExecStart=/usr/bin/systemctl restart appliance-llm-gateway-a.service" in restart
    assert "Type=oneshot" in restart


def test_the_access_proxy_writes_its_slot_files_where_the_slots_read_them(tmp_path: Path) -> None:
    from appliance.access.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(render("llm_gateway", "access.yaml.j2", **GATEWAY, llm_gateway_static_keys=[]))
    config = load_config(path)
    for slot in config.gateway_slots:
        unit = render(
            "llm_gateway",
            "appliance-llm-gateway-slot.service.j2",
            **GATEWAY,
            slot={"name": slot.name, "port": int(slot.listen.rsplit(":", 1)[1])},
        )
        assert f"--volume {slot.config.parent}:/etc/llm-gateway:ro" in _exec_start(unit)
        assert slot.listen in unit


def test_the_admin_service_is_told_the_token_file_timezone_and_context_size() -> None:
    config = yaml.safe_load(
        render(
            "appliance_admin",
            "config.yaml.j2",
            appliance_admin_image="localhost/appliance/appliance-admin:0.2.0",
            appliance_admin_site_timezone="Europe/Berlin",
            appliance_admin_gateway_context_tokens="256",
        )
    )
    assert config["access_token_file"] == "/etc/appliance-admin/access-token"
    assert config["site_timezone"] == "Europe/Berlin"
    assert config["gateway_context_tokens"] == 256
    assert _role_vars("appliance_admin")["appliance_admin_access_token"] == (
        "{{ appliance_admin_config_dir }}/access-token"
    )


def test_the_site_playbook_hands_over_no_keys_any_more() -> None:
    site = (REPO / "installer/site.yml").read_text()
    assert "gateway-keys" not in site
    assert "hash('sha256')" in site  # the health probe key, by its hash only


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir()))
def test_every_role_variable_is_typed_and_described_with_its_default(role: str) -> None:
    specs = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults_file = ROLES / role / "defaults/main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    assert set(defaults or {}) <= set(options), "defaults without an argument spec"
    for name, option in options.items():
        assert {"type", "description"} <= set(option), name
        if "default" in option:
            assert (defaults or {}).get(name) == option["default"], name


def test_the_access_proxy_loads_the_config_the_role_writes(tmp_path: Path) -> None:
    from appliance.access.config import load_config

    digest = hashlib.sha256(b"health-key").hexdigest()
    static = [{"name": "appliance-health", "sha256": digest, "models": ["tiny"]}]
    path = tmp_path / "config.yaml"
    path.write_text(
        render("llm_gateway", "access.yaml.j2", **GATEWAY, llm_gateway_static_keys=static)
    )
    config = load_config(path)
    assert config.address("listen") == ("127.0.0.1", 8080)
    assert config.address("backend_listen") == ("127.0.0.1", 8082)
    assert config.gateway_key_file is None and len(config.gateway_slots) == 2
    assert [(k.name, k.sha256, k.models) for k in config.static_keys] == [
        ("appliance-health", digest, ["tiny"])
    ]


def test_the_admin_service_loads_the_settings_the_role_writes(tmp_path: Path) -> None:
    from appliance.admin.settings import load_settings

    path = tmp_path / "config.yaml"
    path.write_text(
        render(
            "appliance_admin",
            "config.yaml.j2",
            appliance_admin_image="localhost/appliance/appliance-admin:0.2.0",
            appliance_admin_profile="lab",
            appliance_admin_site_timezone="Europe/Berlin",
            appliance_admin_gateway_context_tokens=256,
        )
    )
    settings = load_settings(path)
    assert settings.access_token_file == Path("/etc/appliance-admin/access-token")
    assert (settings.site_timezone, settings.gateway_context_tokens) == ("Europe/Berlin", 256)
