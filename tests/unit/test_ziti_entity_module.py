"""The installer's `ziti_entity` module against an in-memory controller (unit tier).

Every request it sends is checked against the published Edge Management API (with the
listed deviations); the lab tier runs it against the real controller.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.unit.edge_api_contract import check_request

INSTALLER = Path(__file__).resolve().parents[2] / "installer"


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Ansible puts the playbook's module_utils under ansible.module_utils when it runs a module.
ziti_api = _load("ansible.module_utils.ziti_api", INSTALLER / "module_utils/ziti_api.py")
ziti_entity = _load("ziti_entity", INSTALLER / "library/ziti_entity.py")


class Memory(ziti_api.Controller):  # type: ignore[misc,name-defined]
    """Just enough of the management API behind the real client's methods: objects by
    collection, every call checked against the published spec."""

    def __init__(self) -> None:  # no login: `call` below answers from memory
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []
        self.add("config-types", {"id": "ct-host", "name": "host.v1"})

    def add(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects.setdefault(collection, {})[obj["id"]] = obj
        return obj

    def call(self, method: str, path: str, body: object = None) -> Any:
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        check_request(method, "/edge/management/v1" + url.path, query, body)
        self.calls.append((method, url.path))
        parts = url.path.strip("/").split("/")
        collection = parts[0]
        found = self.objects.setdefault(collection, {})
        if method == "POST" and len(parts) == 1:
            assert isinstance(body, dict)
            obj = self.add(collection, {**body, "id": f"{collection}-{len(found) + 1}"})
            if collection == "edge-routers":
                obj["enrollmentJwt"] = f"jwt-{obj['name']}"
            return {"data": {"id": obj["id"]}}
        if method == "POST" and parts[-1] == "re-enroll":
            found[parts[1]].update(isVerified=False, enrollmentJwt=f"jwt-again-{parts[1]}")
            return {}
        if method == "PATCH":
            assert isinstance(body, dict)
            found[parts[1]].update(body)
            return {}
        if method == "DELETE":
            del found[parts[1]]
            return {}
        if len(parts) == 2:
            return {"data": found[parts[1]]}
        name = query["filter"].split('"')[1]
        return {"data": [o for o in found.values() if o["name"] == name]}


class Module:
    def __init__(self, check_mode: bool = False, **params: Any) -> None:
        self.check_mode = check_mode
        self.params = {"body": {}, "state": "present", "fresh_enrollment": False}
        self.params |= {"return_jwt": False, **params}


def test_an_absent_object_is_made_with_its_references_resolved() -> None:
    api = Memory()
    api.add("edge-routers", {"id": "r1", "name": "gpu1"})
    api.add("configs", {"id": "c1", "name": "vllm-host"})
    made = ziti_entity.ensure(
        Module(
            collection="service-policies",
            name="vllm-bind",
            body={
                "type": "Bind",
                "semantic": "AnyOf",
                "serviceRoles": ["#appliance"],
                "identityRoles": ["@edge-routers/gpu1"],
            },
        ),
        api,
    )
    assert made["changed"]
    assert api.objects["service-policies"][made["id"]]["identityRoles"] == ["@r1"]
    service = ziti_entity.ensure(
        Module(
            collection="services",
            name="vllm",
            body={"encryptionRequired": True, "configs": ["=configs/vllm-host"]},
        ),
        api,
    )
    assert api.objects["services"][service["id"]]["configs"] == ["c1"]


def test_a_matching_object_is_left_alone_and_a_different_one_patched() -> None:
    api = Memory()
    api.add(
        "services",
        {"id": "s1", "name": "vllm", "encryptionRequired": True, "roleAttributes": ["b", "a"]},
    )
    same = ziti_entity.ensure(
        Module(
            collection="services",
            name="vllm",
            body={"encryptionRequired": True, "roleAttributes": ["a", "b"]},
        ),
        api,
    )
    assert not same["changed"] and ("PATCH", "/services/s1") not in api.calls
    changed = ziti_entity.ensure(
        Module(collection="services", name="vllm", body={"roleAttributes": ["appliance"]}), api
    )
    assert changed["changed"] and changed["diff"]["after"] == {"roleAttributes": ["appliance"]}
    assert api.objects["services"]["s1"]["roleAttributes"] == ["appliance"]


def test_an_identity_type_answered_as_a_reference_is_not_a_change() -> None:
    api = Memory()
    api.add(
        "identities",
        {"id": "i1", "name": "probe", "type": {"id": "Device", "name": "Device"}, "isAdmin": False},
    )
    kept = ziti_entity.ensure(
        Module(collection="identities", name="probe", body={"type": "Device", "isAdmin": False}),
        api,
    )
    assert not kept["changed"]


def test_check_mode_changes_nothing() -> None:
    api = Memory()
    made = ziti_entity.ensure(
        Module(check_mode=True, collection="edge-routers", name="gw1", body={"cost": 0}), api
    )
    assert made == {"changed": True}
    assert "edge-routers" not in api.objects or not api.objects["edge-routers"]


def test_enrollment_tokens_come_back_only_when_asked() -> None:
    api = Memory()
    quiet = ziti_entity.ensure(Module(collection="edge-routers", name="gw1"), api)
    assert "jwt" not in quiet
    pending = ziti_entity.ensure(
        Module(collection="edge-routers", name="gw1", fresh_enrollment=True, return_jwt=True),
        api,
    )
    # A router not yet enrolled keeps its token: no re-enrollment.
    assert (
        pending["jwt"] == "jwt-gw1"
        and ("POST", "/edge-routers/edge-routers-1/re-enroll") not in api.calls
    )
    api.objects["edge-routers"]["edge-routers-1"].update(isVerified=True, enrollmentJwt=None)
    again = ziti_entity.ensure(
        Module(collection="edge-routers", name="gw1", fresh_enrollment=True, return_jwt=True),
        api,
    )
    assert again["changed"] and again["jwt"] == "jwt-again-edge-routers-1"


def test_an_unknown_reference_is_named() -> None:
    with pytest.raises(RuntimeError, match="the controller has no configs named 'gone'"):
        ziti_entity.resolve(Memory(), {"configs": ["=configs/gone"]})
