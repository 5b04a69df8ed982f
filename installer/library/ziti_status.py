#!/usr/bin/python3
"""Ansible module: the overlay's state for the health checks, read-only.

Every controller of the cluster and every edge router (online or not), and every service
with the terminators its hosts have registered: the router of each, and whether its
tunneler's health check marked it failed (precedence "failed": new circuits go to the
others). Read from the management API on the first controller host's loopback.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ziti_api import Controller

DOCUMENTATION = r"""
module: ziti_status
short_description: Read the overlay's routers and services for the health checks
options:
  controller: {type: str, required: true, description: Management API base URL.}
  ca: {type: path, required: true, description: The controller's root CA certificate.}
  username: {type: str, default: admin}
  password_file: {type: path, required: true, description: Root-only file with the password.}
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "controller": {"type": "str", "required": True},
            "ca": {"type": "path", "required": True},
            "username": {"type": "str", "default": "admin"},
            "password_file": {"type": "path", "required": True, "no_log": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        controller = Controller.login(p["controller"], p["ca"], p["username"], p["password_file"])
        routers = [
            {"name": r["name"], "online": bool(r.get("isOnline"))}
            for r in controller.all("edge-routers")
        ]
        controllers = [
            {"name": c.get("name") or c["id"], "online": bool(c.get("isOnline"))}
            for c in controller.all("controllers")
        ]
        services = []
        for service in controller.all("services"):
            terminators = controller.call("GET", f"/services/{service['id']}/terminators")
            hosts = [
                {
                    "router": (t.get("router") or {}).get("name") or t.get("routerId", "?"),
                    "failed": t.get("precedence") == "failed",
                }
                for t in terminators["data"]
            ]
            services.append({"name": service["name"], "terminators": len(hosts), "hosts": hosts})
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        module.fail_json(msg=f"the controller's management API: {exc}")
    module.exit_json(changed=False, controllers=controllers, routers=routers, services=services)


if __name__ == "__main__":
    main()
