"""Small frozen views of the controller's entities, parsed from its JSON.

Each ``from_api`` takes one element of an envelope's ``data`` (a JSON object) and keeps
only what the appliance uses. Secrets the controller returns to an admin (API session
and service session tokens) are deliberately not kept; the one-time enrollment JWT is
kept where the appliance needs it and hidden from ``repr``.

Field names follow the Edge Management API (``identityDetail``, ``servicePolicyDetail``…)
and the Fabric API (``circuitDetail``); see the package docstring for the spec version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

__all__ = [
    "ApiSession",
    "Circuit",
    "ControllerVersion",
    "EdgeRouterPolicy",
    "EnrollmentToken",
    "Identity",
    "IdentityState",
    "OttEnrollment",
    "ResponseShapeError",
    "Service",
    "ServicePolicy",
    "Session",
    "identity_state",
]

#: What :func:`identity_state` returns.
IdentityState = Literal["pending", "enrolled", "token expired", "disabled"]

_E = TypeVar("_E")


class ResponseShapeError(ValueError):
    """A JSON object from the controller lacks a field or has the wrong type.

    The client turns it into ``ControllerResponseError`` with the request named.
    """


# --- field readers: each names the field and what it found ----------------------------


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ResponseShapeError(f"expected {what} to be a JSON object, found {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _req_str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ResponseShapeError(
            f"expected {what}.{key} to be a non-empty string, found {_kind(value)}"
        )
    return value


def _opt_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResponseShapeError(f"expected {what}.{key} to be a string, found {_kind(value)}")
    return value


def _bool(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ResponseShapeError(f"expected {what}.{key} to be a boolean, found {_kind(value)}")
    return value


def _strs(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResponseShapeError(
            f"expected {what}.{key} to be an array of strings, found {_kind(value)}"
        )
    return tuple(value)


def _time(obj: Mapping[str, Any], key: str, what: str) -> datetime | None:
    """An RFC 3339 date-time; Go's zero time (year 1) and absence both read as None."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ResponseShapeError(
            f"expected {what}.{key} to be an RFC 3339 date-time, found {_kind(value)}"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ResponseShapeError(
            f"expected {what}.{key} to be an RFC 3339 date-time, found {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year <= 1:
        return None
    return parsed


def _ref(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    """An ``entityRef`` ({id, name, entity, _links}); absent reads as empty."""
    value = obj.get(key)
    if value is None:
        return {}
    return _obj(value, f"{what}.{key}")


#: The reader for each field type the entities use (annotations are strings here).
_READERS = {
    "str": _req_str,
    "str | None": _opt_str,
    "bool": _bool,
    "tuple[str, ...]": _strs,
    "datetime | None": _time,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _parse(cls: type[_E], obj: Mapping[str, Any], what: str, **given: object) -> _E:
    """Build ``cls`` reading each field not ``given`` from its camelCase key by its type.

    The API names every field of these entities as the dataclass does, in camelCase, so
    one reader per type replaces a hand-written constructor call per entity.
    """
    values = dict(given)
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name not in values:
            values[item.name] = _READERS[str(item.type)](obj, _camel(item.name), what)
    return cls(**values)


# --- entities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerVersion:
    """``GET /version``: the controller build (``version`` definition)."""

    version: str
    revision: str | None
    build_date: str | None
    runtime_version: str | None
    capabilities: tuple[str, ...]

    @classmethod
    def from_api(cls, data: object) -> ControllerVersion:
        """Parse the ``data`` of a ``listVersionEnvelope``."""
        return _parse(cls, _obj(data, "version"), "version")


@dataclass(frozen=True)
class OttEnrollment:
    """An outstanding one-time-token enrollment (``identityEnrollments.ott``)."""

    id: str
    expires_at: datetime | None
    #: The enrollment JWT: a bearer secret until used or expired, so kept out of repr.
    jwt: str = field(repr=False)


@dataclass(frozen=True)
class Identity:
    """One ``identityDetail``."""

    id: str
    name: str
    #: ``type.name``; a v2 controller stores every non-router identity as "Default".
    type_name: str | None
    role_attributes: tuple[str, ...]
    is_admin: bool
    #: The controller's own verdict: set while ``disabledAt`` is set and
    #: ``disabledUntil`` is absent or in the future.
    disabled: bool
    disabled_at: datetime | None
    disabled_until: datetime | None
    has_cert_authenticator: bool
    has_updb_authenticator: bool
    ott: OttEnrollment | None
    has_api_session: bool
    has_edge_router_connection: bool
    created_at: datetime | None

    @property
    def enrolled(self) -> bool:
        """True once the identity holds a credential (a certificate or a password)."""
        return self.has_cert_authenticator or self.has_updb_authenticator

    @classmethod
    def from_api(cls, data: object) -> Identity:
        """Parse one ``identityDetail``."""
        what = "identity"
        obj = _obj(data, what)
        auth = _obj(obj.get("authenticators") or {}, f"{what}.authenticators")
        enrollment = _obj(obj.get("enrollment") or {}, f"{what}.enrollment")
        ott: OttEnrollment | None = None
        if enrollment.get("ott") is not None:
            ott_obj = _obj(enrollment["ott"], f"{what}.enrollment.ott")
            ott = OttEnrollment(
                id=_req_str(ott_obj, "id", f"{what}.enrollment.ott"),
                expires_at=_time(ott_obj, "expiresAt", f"{what}.enrollment.ott"),
                jwt=_req_str(ott_obj, "jwt", f"{what}.enrollment.ott"),
            )
        return _parse(
            cls,
            obj,
            what,
            type_name=_opt_str(_ref(obj, "type", what), "name", f"{what}.type"),
            has_cert_authenticator=auth.get("cert") is not None,
            has_updb_authenticator=auth.get("updb") is not None,
            ott=ott,
        )


@dataclass(frozen=True)
class EnrollmentToken:
    """What an operator hands to the holder of a new identity: the one-time JWT."""

    identity_id: str
    enrollment_id: str
    expires_at: datetime
    jwt: str = field(repr=False)


def identity_state(identity: Identity, *, now: datetime | None = None) -> IdentityState:
    """Classify an identity as "disabled", "enrolled", "pending" or "token expired".

    Order matters: a disabled identity is "disabled" whatever its enrollment; an identity
    holding a credential is "enrolled"; one with an OTT enrollment that expires after
    ``now`` is "pending"; anything else cannot enroll any more (its token expired, or it
    has neither a credential nor an enrollment) and reads as "token expired", which a
    reissue of its enrollment repairs.
    """
    if identity.disabled:
        return "disabled"
    if identity.enrolled:
        return "enrolled"
    moment = now if now is not None else datetime.now(UTC)
    expires_at = identity.ott.expires_at if identity.ott is not None else None
    if expires_at is not None and expires_at > moment:
        return "pending"
    return "token expired"


@dataclass(frozen=True)
class Service:
    """One ``serviceDetail``."""

    id: str
    name: str
    role_attributes: tuple[str, ...]
    configs: tuple[str, ...]
    encryption_required: bool
    terminator_strategy: str | None

    @classmethod
    def from_api(cls, data: object) -> Service:
        """Parse one ``serviceDetail``."""
        return _parse(cls, _obj(data, "service"), "service")


@dataclass(frozen=True)
class ServicePolicy:
    """One ``servicePolicyDetail``."""

    id: str
    name: str
    type: str
    semantic: str
    identity_roles: tuple[str, ...]
    service_roles: tuple[str, ...]
    posture_check_roles: tuple[str, ...]

    @classmethod
    def from_api(cls, data: object) -> ServicePolicy:
        """Parse one ``servicePolicyDetail``."""
        return _parse(cls, _obj(data, "service policy"), "service policy")


@dataclass(frozen=True)
class EdgeRouterPolicy:
    """One ``edgeRouterPolicyDetail``."""

    id: str
    name: str
    semantic: str
    identity_roles: tuple[str, ...]
    edge_router_roles: tuple[str, ...]
    is_system: bool

    @classmethod
    def from_api(cls, data: object) -> EdgeRouterPolicy:
        """Parse one ``edgeRouterPolicyDetail``."""
        return _parse(cls, _obj(data, "edge router policy"), "edge router policy")


@dataclass(frozen=True)
class ApiSession:
    """One ``apiSessionDetail`` (its bearer ``token`` is deliberately dropped)."""

    id: str
    identity_id: str
    identity_name: str | None
    ip_address: str | None
    created_at: datetime | None
    last_activity_at: datetime | None

    @classmethod
    def from_api(cls, data: object) -> ApiSession:
        """Parse one ``apiSessionDetail``."""
        what = "api session"
        obj = _obj(data, what)
        return _parse(
            cls,
            obj,
            what,
            identity_name=_opt_str(_ref(obj, "identity", what), "name", f"{what}.identity"),
        )


@dataclass(frozen=True)
class Session:
    """One ``sessionManagementDetail`` (a legacy service session; ``token`` dropped)."""

    id: str
    type: str
    identity_id: str
    api_session_id: str
    service_id: str
    service_name: str | None
    created_at: datetime | None

    @classmethod
    def from_api(cls, data: object) -> Session:
        """Parse one ``sessionManagementDetail``."""
        what = "session"
        obj = _obj(data, what)
        return _parse(
            cls,
            obj,
            what,
            service_name=_opt_str(_ref(obj, "service", what), "name", f"{what}.service"),
        )


@dataclass(frozen=True)
class Circuit:
    """One fabric ``circuitDetail``."""

    id: str
    client_id: str | None
    service_id: str | None
    service_name: str | None
    terminator_id: str | None
    #: Names of the routers on the circuit's path, in order.
    path_routers: tuple[str, ...]
    created_at: datetime | None

    @classmethod
    def from_api(cls, data: object) -> Circuit:
        """Parse one ``circuitDetail``."""
        what = "circuit"
        obj = _obj(data, what)
        service = _ref(obj, "service", what)
        path = _ref(obj, "path", what)
        nodes = path.get("nodes") or []
        if not isinstance(nodes, list):
            raise ResponseShapeError(
                f"expected {what}.path.nodes to be an array, found {_kind(nodes)}"
            )
        routers = []
        for node in nodes:
            ref = _obj(node, f"{what}.path.nodes[]")
            routers.append(
                _opt_str(ref, "name", f"{what}.path.nodes[]")
                or _req_str(ref, "id", f"{what}.path.nodes[]")
            )
        return _parse(
            cls,
            obj,
            what,
            service_id=_opt_str(service, "id", f"{what}.service"),
            service_name=_opt_str(service, "name", f"{what}.service"),
            terminator_id=_opt_str(_ref(obj, "terminator", what), "id", f"{what}.terminator"),
            path_routers=tuple(routers),
        )
