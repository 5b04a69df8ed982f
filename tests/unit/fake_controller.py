"""A stand-in for the OpenZiti controller, for unit tests only (the real one cannot be built
here; integration tests never use this)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.ziti.errors import ControllerUnreachableError, NotFoundError
from appliance.ziti.models import Circuit, EnrollmentToken, OttEnrollment, Service
from appliance.ziti.models import Identity as ZitiIdentity

EXPIRES = datetime(2026, 11, 23, tzinfo=UTC)


class FakeController:
    """Records calls; behaves like the controller for the calls the service makes."""

    def __init__(self) -> None:
        self.identities: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.router_policies: dict[str, dict[str, Any]] = {}
        #: Open circuits: circuit id -> (client identity id, service name).
        self.circuits: dict[str, tuple[str, str]] = {}
        #: Services by name (ids "svc-NAME"); "tiny" is the model service.
        self.services = ["tiny"]
        #: Circuits that outlive their identity's deletion for this many list calls.
        self.lingering_lists = 0
        self.calls: list[str] = []
        self.down = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ControllerUnreachableError(
                "cannot reach https://ctrl.test:1280", url="https://ctrl.test:1280"
            )

    def create_identity(
        self,
        name: str,
        *,
        type: str,
        role_attributes: Sequence[str],
        enrollment_minutes: int | None,
    ) -> EnrollmentToken:
        self._call("create_identity")
        ident = f"z{len(self.identities) + 1}"
        self.identities[ident] = {
            "name": name,
            "type": type,
            "attrs": list(role_attributes),
            "disabled": False,
            "enrolled": False,
        }
        return EnrollmentToken(ident, f"e-{ident}", EXPIRES, jwt=f"jwt-for-{name}")

    def delete_identity(self, id: str) -> None:
        self._call("delete_identity")
        if id not in self.identities:
            raise NotFoundError(
                "no such identity",
                status=404,
                code="NOT_FOUND",
                api_message="",
                method="DELETE",
                path=f"/identities/{id}",
            )
        del self.identities[id]
        if self.lingering_lists == 0:
            self._drop_circuits(id)

    def _drop_circuits(self, identity_id: str) -> None:
        for cid, (client, _) in list(self.circuits.items()):
            if client == identity_id:
                del self.circuits[cid]

    def disable_identity(self, id: str, minutes: int | None) -> None:
        self._call("disable_identity")
        self.identities[id]["disabled"] = True

    def enable_identity(self, id: str) -> None:
        self._call("enable_identity")
        self.identities[id]["disabled"] = False

    def reissue_enrollment(self, id: str, minutes: int) -> EnrollmentToken:
        self._call("reissue_enrollment")
        return EnrollmentToken(id, f"e2-{id}", EXPIRES + timedelta(minutes=minutes), jwt="jwt2")

    def list_identities(self, filter: str | None = None) -> list[ZitiIdentity]:
        self._call("list_identities")
        return [
            ZitiIdentity(
                id=i,
                name=v["name"],
                type_name="Default",
                role_attributes=tuple(v["attrs"]),
                is_admin=False,
                disabled=v["disabled"],
                disabled_at=None,
                disabled_until=None,
                has_cert_authenticator=v["enrolled"],
                has_updb_authenticator=False,
                ott=None if v["enrolled"] else OttEnrollment(f"e-{i}", EXPIRES, "jwt"),
                has_api_session=False,
                has_edge_router_connection=False,
                created_at=None,
            )
            for i, v in self.identities.items()
        ]

    def list_services(self, filter: str | None = None) -> list[Service]:
        self._call("list_services")
        return [
            Service(
                id=f"svc-{name}",
                name=name,
                role_attributes=(),
                configs=(),
                encryption_required=False,
                terminator_strategy="smartrouting",
            )
            for name in self.services
            if filter in (None, f'name="{name}"')
        ]

    def create_service_policy(
        self,
        name: str,
        *,
        type: str,
        identity_roles: Sequence[str],
        service_roles: Sequence[str],
        semantic: str = "AnyOf",
    ) -> str:
        self._call("create_service_policy")
        pid = f"p{len(self.policies) + 1}"
        self.policies[pid] = {
            "name": name,
            "type": type,
            "identity_roles": list(identity_roles),
            "service_roles": list(service_roles),
        }
        return pid

    def delete_service_policy(self, id: str) -> None:
        self._call("delete_service_policy")
        self.policies.pop(id)

    def create_edge_router_policy(
        self,
        name: str,
        *,
        identity_roles: Sequence[str],
        edge_router_roles: Sequence[str],
        semantic: str = "AnyOf",
    ) -> str:
        self._call("create_edge_router_policy")
        pid = f"r{len(self.router_policies) + 1}"
        self.router_policies[pid] = {
            "name": name,
            "identity_roles": list(identity_roles),
            "edge_router_roles": list(edge_router_roles),
        }
        return pid

    def delete_edge_router_policy(self, id: str) -> None:
        self._call("delete_edge_router_policy")
        self.router_policies.pop(id)

    def list_circuits(self) -> list[Circuit]:
        self._call("list_circuits")
        if self.lingering_lists > 0:
            self.lingering_lists -= 1
            if self.lingering_lists == 0:
                for cid, (client, _) in list(self.circuits.items()):
                    if client not in self.identities:
                        del self.circuits[cid]
        return [
            Circuit(
                id=cid,
                client_id=client,
                service_id=f"svc-{service}",
                service_name=service,
                terminator_id=None,
                path_routers=("vendor-router",),
                created_at=EXPIRES,
            )
            for cid, (client, service) in self.circuits.items()
        ]
