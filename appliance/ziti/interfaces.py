"""What the appliance's services need from the controller, as typing Protocols.

:class:`appliance.ziti.ZitiClient` satisfies both; unit tests hand the services a fake
shaped like them instead (``tests/unit/fake_controller.py``). The services name these,
never the concrete client, so each says exactly which calls it makes:

* :class:`IdentityController`: identities, services and Dial policies, for enrollment
  and model grants (``appliance.admin.services.identities`` and ``.grants``);
* :class:`AccessController`: that and edge-router policies and the live circuits, for
  opening a vendor's access and cutting it again (``appliance.breakglass``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from appliance.ziti.models import Circuit, EnrollmentToken, Identity, Service

__all__ = ["AccessController", "IdentityController"]


class IdentityController(Protocol):
    """Identities, services and service policies: what enrollment and grants call."""

    def create_identity(
        self,
        name: str,
        *,
        type: str,
        role_attributes: Sequence[str],
        enrollment_minutes: int | None,
    ) -> EnrollmentToken: ...
    def delete_identity(self, id: str) -> None: ...
    def disable_identity(self, id: str, minutes: int | None) -> None: ...
    def enable_identity(self, id: str) -> None: ...
    def reissue_enrollment(self, id: str, minutes: int) -> EnrollmentToken: ...
    def list_identities(self, filter: str | None = None) -> list[Identity]: ...
    def list_services(self, filter: str | None = None) -> list[Service]: ...
    def create_service_policy(
        self,
        name: str,
        *,
        type: Literal["Dial", "Bind"],
        identity_roles: Sequence[str],
        service_roles: Sequence[str],
        semantic: Literal["AnyOf", "AllOf"] = "AnyOf",
    ) -> str: ...
    def delete_service_policy(self, id: str) -> None: ...


class AccessController(IdentityController, Protocol):
    """Besides identities and service policies: the edge-router policies that let an
    identity reach a router, and the circuits that show who is connected now."""

    def create_edge_router_policy(
        self,
        name: str,
        *,
        identity_roles: Sequence[str],
        edge_router_roles: Sequence[str],
        semantic: Literal["AnyOf", "AllOf"] = "AnyOf",
    ) -> str: ...
    def delete_edge_router_policy(self, id: str) -> None: ...
    def list_circuits(self) -> list[Circuit]: ...
