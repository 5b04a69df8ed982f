"""Model-access keys: one identity each, shown once, stored as their SHA-256 only.

A key is ``sk-site-`` and 32 random bytes (URL-safe). The database keeps its hash and its
first 16 characters (``prefix``, to tell keys apart in lists and the audit log); nothing
here can give a key back. Rotation makes a new key and lets the old one live on for a
stated overlap; revoking keeps the row, with ``revoked_at``. Every change is audited
(``key.create``, ``key.rotate``, ``key.revoke``) with the prefix, never the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.security import hash_token, new_token
from appliance.admin.services.access_errors import (
    AccessConflictError,
    AccessError,
    AccessNotFoundError,
)
from appliance.audit.record import record_event
from appliance.db.models import ApiKey, Identity, utcnow

__all__ = [
    "KEY_PREFIX",
    "MAX_OVERLAP_MINUTES",
    "NewKey",
    "create_key",
    "identity_by_id",
    "key_by_id",
    "list_keys",
    "revoke_key",
    "rotate_key",
]

KEY_PREFIX = "sk-site-"
#: The longest an old key may live on after a rotation: 7 days.
MAX_OVERLAP_MINUTES = 7 * 24 * 60
_PREFIX_LENGTH = 16


@dataclass(frozen=True)
class NewKey:
    """A key just made: its row and the key itself (shown once, never stored)."""

    row: ApiKey
    api_key: str


def identity_by_id(db: Session, identity_id: int) -> Identity:
    """The identity with that row id, or AccessNotFoundError (404)."""
    row = db.get(Identity, identity_id)
    if row is None:
        raise AccessNotFoundError(f"no identity with id {identity_id}")
    return row


def key_by_id(db: Session, key_id: int) -> ApiKey:
    """The key with that row id, or AccessNotFoundError (404)."""
    row = db.get(ApiKey, key_id)
    if row is None:
        raise AccessNotFoundError(f"no key with id {key_id}")
    return row


def list_keys(db: Session, identity: Identity) -> list[ApiKey]:
    """Every key of ``identity``, revoked ones included, oldest first."""
    return list(
        db.scalars(select(ApiKey).where(ApiKey.identity_id == identity.id).order_by(ApiKey.id))
    )


def create_key(
    db: Session,
    identity: Identity,
    *,
    expires_at: datetime | None,
    actor: str,
    client: str,
    now: datetime | None = None,
) -> NewKey:
    """A new key for ``identity``, in force once the access proxies fetch the policy."""
    now = now or utcnow()
    _check_expiry(expires_at, now)
    made = _add_key(db, identity, expires_at=expires_at, actor=actor)
    record_event(
        db,
        actor=actor,
        action="key.create",
        target=identity.name,
        client=client,
        details={
            "key_id": made.row.id,
            "prefix": made.row.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return made


def rotate_key(
    db: Session,
    key: ApiKey,
    *,
    overlap_minutes: int,
    actor: str,
    client: str,
    now: datetime | None = None,
) -> NewKey:
    """A new key for the same identity with the same expiry; the old key's expiry becomes
    the earlier of its own and ``now + overlap_minutes`` (0: at once)."""
    now = now or utcnow()
    if not 0 <= overlap_minutes <= MAX_OVERLAP_MINUTES:
        raise AccessError(
            f"overlap_minutes: expected 0 to {MAX_OVERLAP_MINUTES}, found {overlap_minutes}"
        )
    if key.revoked_at is not None:
        raise AccessConflictError(
            f"key {key.id} ({key.prefix}…) was revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC: "
            "expected a live key to rotate; make a new key instead"
        )
    if key.expires_at is not None and key.expires_at <= now:
        raise AccessConflictError(
            f"key {key.id} ({key.prefix}…) expired at {key.expires_at:%Y-%m-%d %H:%M} UTC: "
            "expected a live key to rotate; make a new key instead"
        )
    made = _add_key(db, key.identity, expires_at=key.expires_at, actor=actor)
    old_end = now + timedelta(minutes=overlap_minutes)
    key.expires_at = old_end if key.expires_at is None else min(key.expires_at, old_end)
    record_event(
        db,
        actor=actor,
        action="key.rotate",
        target=key.identity.name,
        client=client,
        details={
            "old_key_id": key.id,
            "old_prefix": key.prefix,
            "old_expires_at": key.expires_at.isoformat(),
            "overlap_minutes": overlap_minutes,
            "key_id": made.row.id,
            "prefix": made.row.prefix,
            "expires_at": made.row.expires_at.isoformat() if made.row.expires_at else None,
        },
    )
    return made


def revoke_key(
    db: Session, key: ApiKey, *, actor: str, client: str, now: datetime | None = None
) -> None:
    """Refuse ``key`` from now on (the row stays, for the record); a key already revoked
    is left as it is, with no second record."""
    if key.revoked_at is not None:
        return
    key.revoked_at = now or utcnow()
    record_event(
        db,
        actor=actor,
        action="key.revoke",
        target=key.identity.name,
        client=client,
        details={"key_id": key.id, "prefix": key.prefix},
    )


def _add_key(db: Session, identity: Identity, *, expires_at: datetime | None, actor: str) -> NewKey:
    secret = f"{KEY_PREFIX}{new_token()}"
    row = ApiKey(
        identity=identity,
        identity_id=identity.id,
        key_hash=hash_token(secret),
        prefix=secret[:_PREFIX_LENGTH],
        created_by=actor,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    return NewKey(row, secret)


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise AccessError(
            f"expires_at: expected a time with its timezone (2026-12-31T18:00:00+01:00), "
            f"found {expires_at.isoformat()}"
        )
    if expires_at <= now:
        raise AccessError(
            f"expires_at: expected a time in the future, found {expires_at.isoformat()} "
            f"(now is {now.isoformat(timespec='seconds')})"
        )
