"""Tables of the admin service (SQLAlchemy 2 typed mappings)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from appliance.db.base import Base
from appliance.db.roles import Role

__all__ = [
    "AccessLimit",
    "ApiKey",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditHead",
    "BreakglassWindow",
    "Identity",
    "IdentityKind",
    "LoginFailure",
    "ModelGrant",
    "Role",
    "RoutingConfig",
    "UsageDaily",
    "User",
    "WebSession",
    "WindowState",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as UTC; always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class IdentityKind(enum.StrEnum):
    """What an overlay identity stands for."""

    user = "user"
    team = "team"
    device = "device"
    service = "service"
    router = "router"


class WindowState(enum.StrEnum):
    """Where a break-glass window is in its life (appliance.breakglass.window)."""

    requested = "requested"
    approved = "approved"
    active = "active"
    expired = "expired"
    revoked = "revoked"
    denied = "denied"
    withdrawn = "withdrawn"


class User(Base):
    """A local account of the admin service."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    must_change_password: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebSession(Base):
    """A logged-in browser or API client; only the token's sha256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """A failed login, kept for throttling by account and by client address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Identity(Base):
    """An overlay identity as the admin service knows it, kept in step with the controller."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[IdentityKind] = mapped_column(Enum(IdentityKind, native_enum=False, length=16))
    ziti_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    role_attributes: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(32), default="pending")
    enrollment_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ModelGrant(Base):
    """Access to a model service for an identity (``@name``) or an attribute (``#team``)."""

    __tablename__ = "model_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(130))
    model_service: Mapped[str] = mapped_column(String(128))
    ziti_policy_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A model-access key of one identity: shown once, stored as its sha256 only.

    Disabling or deleting the identity takes it out of the access policy (and deleting
    the identity deletes the row). A revoked key keeps its row, for the record.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    identity: Mapped[Identity] = relationship(lazy="joined")


class AccessLimit(Base):
    """Budgets and rates for an identity (``@name``) or a group (``#attribute``);
    a None field is no limit of that kind."""

    __tablename__ = "access_limits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(130), unique=True)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_week: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    concurrent_requests: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageDaily(Base):
    """Usage counted by one gateway host for an identity, a model and a day (site
    timezone): absolute totals as the gateway's access proxy last reported them."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("gateway", "identity", "model", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(128))
    identity: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    day: Mapped[str] = mapped_column(String(10), index=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    #: Refusals by limit name (and "key", "model"): counts.
    refused: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoutingConfig(Base):
    """One change of the site's llm-gateway routing: the whole routing document, or None
    for "routing off". The newest row (highest id) is in force; older rows are kept for
    the record (appliance.admin.services.routing)."""

    __tablename__ = "routing_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """One audit record, hash-chained to the one before (format in appliance.audit.format)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The log's single head row: appenders lock it, so sequence numbers never race."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed Merkle tree head over records 1..tree_size (RFC 9162 style)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class BreakglassWindow(Base):
    """A time-boxed grant of overlay access to named vendor engineers.

    ``ends_at`` is the wall-clock end; ``boot_id`` and ``deadline_boottime`` hold the same
    end on the kernel's boot-time clock, which moving the wall clock does not change.
    ``ziti_objects`` holds the controller ids made at activation (identities by engineer,
    policies) so that ending deletes exactly them, and the hashes of the engineers' vendor
    shell secrets (``shell_secrets``, appliance.breakglass.shell.logins). An extension is
    its own window row (``extends_id``) that moves its parent's end once approved.
    """

    __tablename__ = "breakglass_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[WindowState] = mapped_column(
        Enum(WindowState, native_enum=False, length=16), index=True
    )
    requester: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str] = mapped_column(String(128))
    scope: Mapped[list[str]] = mapped_column(JSON, default=list)
    engineers: Mapped[list[str]] = mapped_column(JSON, default=list)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    extends_id: Mapped[int | None] = mapped_column(
        ForeignKey("breakglass_windows.id", ondelete="RESTRICT"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    decision_note: Mapped[str] = mapped_column(Text, default="")
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    boot_id: Mapped[str | None] = mapped_column(String(64), default=None)
    deadline_boottime: Mapped[float | None] = mapped_column(Float, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_by: Mapped[str | None] = mapped_column(String(64), default=None)
    end_reason: Mapped[str] = mapped_column(String(64), default="")
    cleanup_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ziti_objects: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
