#!/usr/bin/python3
"""Ansible module: one named object of the OpenZiti Edge Management API, made to match.

Runs on a controller host against the management API on its loopback. The roles describe
the overlay's own objects (routers, services, configs, policies, the gateway's backend
identity) with it; the admin service owns everything else (people's identities, grants,
break-glass). Standard library only: it runs with the host's python3.

References inside ``body`` are written by name and resolved to ids here:
``"@identities/gw1"`` → ``"@<id>"`` (a role) and ``"=configs/vllm-host"`` → ``"<id>"``.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ziti_api import Controller

DOCUMENTATION = r"""
module: ziti_entity
short_description: Make one named OpenZiti management object match a description
options:
  controller: {type: str, required: true, description: Management API base URL.}
  ca: {type: path, required: true, description: The controller's root CA certificate.}
  username: {type: str, default: admin}
  password_file: {type: path, required: true, description: Root-only file with the password.}
  collection: {type: str, required: true, description: "e.g. services, configs, edge-routers"}
  name: {type: str, required: true}
  body: {type: dict, default: {}, description: Fields to create with and keep equal.}
  state: {type: str, choices: [present, absent], default: present}
  fresh_enrollment:
    type: bool
    default: false
    description: >-
      The enrolled copy is gone from its host: return a new one-time enrollment token
      (an edge router is re-enrolled, an identity made again).
  return_jwt:
    type: bool
    default: false
    description: Return the pending enrollment token as C(jwt) (a secret; use no_log).
"""

#: Collections whose objects are enrolled with a one-time token the module returns.
_ENROLLMENT_COLLECTIONS = ("edge-routers", "identities")


def resolve(controller: Controller, value: Any) -> Any:
    """Name references → ids, through lists and dicts."""
    if isinstance(value, list):
        return [resolve(controller, v) for v in value]
    if isinstance(value, dict):
        return {k: resolve(controller, v) for k, v in value.items()}
    if isinstance(value, str) and value[:1] in ("@", "=") and "/" in value[1:]:
        collection, name = value[1:].split("/", 1)
        found = controller.find(collection, name)
        if found is None:
            raise RuntimeError(f"{value}: the controller has no {collection} named {name!r}")
        return ("@" if value[0] == "@" else "") + found["id"]
    return value


def differing(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The wanted fields whose current value is different (lists of roles as sets)."""
    changed = {}
    for key, value in wanted.items():
        have = current.get(key)
        if key == "configs":
            # A service's config list comes back as ids; order does not matter.
            if sorted(have or []) != sorted(value):
                changed[key] = value
        elif isinstance(value, list) and isinstance(have, list):
            if sorted(map(str, have)) != sorted(map(str, value)):
                changed[key] = value
        elif isinstance(have, dict) and isinstance(value, str):
            # A reference the API answers as {id, name, …} (an identity's type).
            if value not in (have.get("id"), have.get("name")):
                changed[key] = value
        elif have != value:
            changed[key] = value
    return changed


def enrollment_jwt(controller: Controller, collection: str, entity: dict[str, Any]) -> str:
    """The entity's pending one-time token, or ''."""
    fresh = controller.call("GET", f"/{collection}/{entity['id']}")["data"]
    if collection == "edge-routers":
        return str(fresh.get("enrollmentJwt") or "")
    ott = (fresh.get("enrollment") or {}).get("ott") or {}
    return str(ott.get("jwt") or "")


def ensure(module: AnsibleModule, controller: Controller) -> dict[str, Any]:
    p = module.params
    collection, name = p["collection"], p["name"]
    current = controller.find(collection, name)
    if p["state"] == "absent":
        if current is not None and not module.check_mode:
            controller.call("DELETE", f"/{collection}/{current['id']}")
        return {"changed": current is not None}
    wanted = {**resolve(controller, p["body"]), "name": name}
    result: dict[str, Any] = {"changed": False}
    if (
        current is not None
        and p["fresh_enrollment"]
        and collection == "identities"
        and not enrollment_jwt(controller, collection, current)
    ):
        # The appliance's own identity lost its enrolled copy: make it again (a pending
        # token, from a run killed before the enrollment, is used as it is).
        if not module.check_mode:
            controller.call("DELETE", f"/identities/{current['id']}")
        current = None
    if current is None:
        result["changed"] = True
        if module.check_mode:
            return result
        if collection == "identities":
            wanted.setdefault("enrollment", {"ott": True})
        created = controller.call("POST", f"/{collection}", wanted)
        current = {"id": created["data"]["id"]}
    else:
        change = differing(current, wanted)
        if change:
            result["changed"] = True
            result["diff"] = {"before": {k: current.get(k) for k in change}, "after": change}
            if not module.check_mode:
                controller.call("PATCH", f"/{collection}/{current['id']}", change)
        stale = current.get("isVerified") or not current.get("enrollmentJwt")
        if p["fresh_enrollment"] and collection == "edge-routers" and stale:
            result["changed"] = True
            if not module.check_mode:
                controller.call("POST", f"/edge-routers/{current['id']}/re-enroll")
    result["id"] = current["id"]
    if p["return_jwt"] and collection in _ENROLLMENT_COLLECTIONS and not module.check_mode:
        result["jwt"] = enrollment_jwt(controller, collection, current)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "controller": {"type": "str", "required": True},
            "ca": {"type": "path", "required": True},
            "username": {"type": "str", "default": "admin"},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "collection": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "body": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "fresh_enrollment": {"type": "bool", "default": False},
            "return_jwt": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        controller = Controller.login(p["controller"], p["ca"], p["username"], p["password_file"])
        result = ensure(module, controller)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        module.fail_json(msg=f"{p['collection']}/{p['name']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
